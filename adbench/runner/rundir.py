"""Run-directory layout, per-cell locks, atomic JSON files, environment and peak-memory capture.

Layout of a sweep's output folder ``DIR``::

    DIR/sweep.yaml                 the last sweep run into DIR (validated)
    DIR/results.parquet|csv        one row per (cell, category, metric)   (see store.py)
    DIR/cells.parquet|csv          one row per cell: status, timings, memory
    DIR/protocol.yaml              the evaluation protocol of each (dataset, k)  (adbench.protocol)
    DIR/cells/<id>/cell.json       the cell (identity + resolved config), written before it runs
    DIR/cells/<id>/config.yaml     the resolved config, readable
    DIR/cells/<id>/index.parquet   the sample index the cell used
    DIR/cells/<id>/environment.json  versions, python, platform, CPU, GPUs
    DIR/cells/<id>/run.log         log records and warnings of the cell
    DIR/cells/<id>/logs/           Lightning CSV logs and the checkpoint
    DIR/cells/<id>/metrics.csv     per-category metrics
    DIR/cells/<id>/protocol.yaml   the cell's evaluation protocol card
    DIR/cells/<id>/run_record.json what the method decided at build time and measured in training
    DIR/cells/<id>/result.json     metrics, timings, memory: written last; its presence = finished
    DIR/cells/<id>/error.json      the error and traceback of a failed attempt
    DIR/cells/<id>/.lock           held while a runner works on the cell
    DIR/cells/<id>/job.json        the cluster job submitted for the cell (slurm launcher)

Every file is written atomically (temp file, fsync, rename), so a ``kill -9`` leaves either the
old or the new version, and a cell without ``result.json`` is simply run again.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import shutil
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from adbench.io import write_atomic

RESULT = "result.json"
ERROR = "error.json"
CELL = "cell.json"
LOCK = ".lock"
JOB = "job.json"  # the cluster job that runs the cell (slurm launcher); kept across attempts
HEARTBEAT_S = 30.0  # the lock holder touches the lock this often
STALE_AFTER_S = 600.0  # a lock not touched for this long is stale, whoever holds it
PACKAGES = ("adbench-uad", "torch", "torchvision", "lightning", "timm", "torchmetrics", "anomalib",
            "diffusers", "pot", "numpy", "pandas")


def cells_dir(out: str | Path) -> Path:
    """``DIR/cells``."""
    return Path(out) / "cells"


def cell_dir(out: str | Path, cell_id: str) -> Path:
    """``DIR/cells/<id>``."""
    return cells_dir(out) / cell_id


def is_finished(folder: Path) -> bool:
    """A cell is finished when its ``result.json`` exists."""
    return (folder / RESULT).is_file()


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as JSON (NaN/inf become null)."""
    write_atomic(path, json.dumps(_finite(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by `write_json`."""
    return json.loads(Path(path).read_text())


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def clear(folder: Path) -> None:
    """Remove what an unfinished attempt left in ``folder`` (all but the lock and job record)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name in (LOCK, JOB):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


# -- locks ----------------------------------------------------------------------------------------
class CellLock:
    """An exclusive, crash-tolerant claim on one cell directory, shared safely across hosts.

    The lock is a file created with ``O_CREAT | O_EXCL`` holding the owner's host, pid and a
    token; a background thread refreshes its mtime every `HEARTBEAT_S`. A lock is stale when its
    owner is a dead process on this host, or when it has not been refreshed for `STALE_AFTER_S`
    (an owner on another host that died). Breaking a stale lock renames it away first, so of two
    runners that both see it stale only one wins.

    Args:
        folder: the cell directory.
        stale_after: seconds without a heartbeat after which any lock counts as stale.
    """

    def __init__(self, folder: Path, stale_after: float = STALE_AFTER_S) -> None:
        self.path = folder / LOCK
        self.stale_after = stale_after
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another live runner holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._break_if_stale():
                    return False
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(self.owner, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
            return True
        return False

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if this runner still owns it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if _read_owner(self.path) == self.owner:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> CellLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def _break_if_stale(self) -> bool:
        owner, age = _read_owner(self.path), _age(self.path)
        if age is None:
            return True  # vanished meanwhile: try again
        if not is_stale(owner, age, self.stale_after):
            return False
        grave = self.path.with_name(f"{LOCK}.stale.{self.owner['token']}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return True
        if _read_owner(grave) != owner:  # another runner took the lock in between: give it back
            with contextlib.suppress(FileExistsError):
                os.link(grave, self.path)
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        return True


def lock_holder(folder: Path, stale_after: float = STALE_AFTER_S) -> dict[str, Any] | None:
    """The live owner of a cell's lock (host, pid), or None when it is free or stale."""
    path = folder / LOCK
    owner, age = _read_owner(path), _age(path)
    if age is None or is_stale(owner, age, stale_after):
        return None
    return owner or {}


def is_stale(owner: dict[str, Any] | None, age: float, stale_after: float) -> bool:
    """The stale rule (see `CellLock`); ``owner`` None is a lock still being written."""
    if age > stale_after:
        return True
    if owner and owner.get("host") == socket.gethostname():
        return not _pid_alive(int(owner.get("pid", -1)))
    return False


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- environment and memory -----------------------------------------------------------------------
def environment() -> dict[str, Any]:
    """Versions, interpreter, platform, CPU and GPUs of this process (``environment.json``)."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "packages": _versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "gpus": gpus,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class PeakMemory:
    """Peak CPU resident memory and peak GPU memory of this process over a ``with`` block.

    On Linux the resident-set high-water mark is reset at the start (``/proc/self/clear_refs``),
    so the peak belongs to the block; elsewhere it is the process's lifetime peak (``rss_scope``
    says which). ``start_rss_mb`` is the resident memory when the block starts, so a cell's own
    growth is ``peak_rss_mb - start_rss_mb``. GPU numbers are those of the current CUDA device.
    """

    def __init__(self) -> None:
        self.cpu_scope = "process"
        self.peak_rss_mb: float | None = None
        self.start_rss_mb: float | None = None
        self.peak_gpu_mb: float | None = None
        self.peak_gpu_reserved_mb: float | None = None

    def __enter__(self) -> PeakMemory:
        import torch

        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
            self.cpu_scope = "block"
        self.start_rss_mb = _current_rss_mb()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        self.peak_rss_mb = _peak_rss_mb()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
            self.peak_gpu_reserved_mb = torch.cuda.max_memory_reserved() / 2**20

    def as_dict(self) -> dict[str, Any]:
        """The measured numbers (MiB)."""
        return {"peak_rss_mb": self.peak_rss_mb, "start_rss_mb": self.start_rss_mb,
                "peak_gpu_mb": self.peak_gpu_mb,
                "peak_gpu_reserved_mb": self.peak_gpu_reserved_mb, "rss_scope": self.cpu_scope}


def _current_rss_mb() -> float | None:
    with contextlib.suppress(OSError):
        match = re.search(r"VmRSS:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    return None


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
