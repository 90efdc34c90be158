"""Run-directory layout, per-cell locks and atomic JSON files.

Layout of a sweep's output folder ``DIR``::

    DIR/sweep.yaml                 the last sweep run into DIR (validated)
    DIR/results.parquet|csv        one row per (cell, category, metric)   (see store.py)
    DIR/cells.parquet|csv          one row per cell: status, timings, memory
    DIR/protocol.yaml              the evaluation protocol of each (dataset, k)  (adbench.protocols)
    DIR/cells/<id>/cell.json       the cell (identity + resolved config), written before it runs
    DIR/cells/<id>/config.yaml     the resolved config, readable
    DIR/cells/<id>/index.parquet   the sample index the cell used
    DIR/cells/<id>/environment.json  versions, python, platform, CPU, GPUs
    DIR/cells/<id>/run.log         log records and warnings of the cell
    DIR/cells/<id>/logs/           Lightning CSV logs and the checkpoint
    DIR/cells/<id>/metrics.csv     per-category metrics
    DIR/cells/<id>/protocol.yaml   the cell's evaluation protocol card
    DIR/cells/<id>/run_record.json what the method decided at build time and measured in training
    DIR/cells/<id>/result.json     metrics, timings, memory: written last; readable = finished
    DIR/cells/<id>/result.json.corrupt-<time>  an unreadable result, moved aside and kept
    DIR/cells/<id>/error.json      the error and traceback of a failed attempt
    DIR/cells/<id>/.lock           held while a runner works on the cell: its host, pid, token
    DIR/cells/<id>/job.json        the cluster job submitted for the cell (slurm launcher)

Every file is written atomically (temp file, fsync, rename), so a ``kill -9`` leaves either the
old or the new version, and a cell without a readable ``result.json`` is simply run again.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from adbench.errors import CorruptFileError
from adbench.io import read_json as read_json  # re-exported: the run folder's JSON files
from adbench.io import write_json as write_json
from adbench.run_files import RESULT as RESULT  # re-exported: the finished-cell marker

ERROR = "error.json"
CELL = "cell.json"
LOCK = ".lock"
JOB = "job.json"  # the cluster job that runs the cell (slurm launcher); kept across attempts
CORRUPT = f"{RESULT}.corrupt-"  # + UTC time: an unreadable result, moved aside and kept
KEPT = (LOCK, JOB, CORRUPT)  # what `clear` leaves: the lock (and its drafts), job, old results
# what `adbench.runner.store.ResultStore` reads from every result
RESULT_KEYS = (
    "cell_id",
    "label",
    "method",
    "preset",
    "dataset",
    "k",
    "seed",
    "metrics",
    "timings",
    "memory",
    "params",
    "trainer",
)
HEARTBEAT_S = 30.0  # the lock holder touches the lock this often
STALE_AFTER_S = 600.0  # a lock not touched for this long is stale, whoever holds it
WRITE_GRACE_S = 5.0  # an ownerless lock older than this is no lock being written: a kill left it
_log = logging.getLogger(__name__)


def cells_dir(out: str | Path) -> Path:
    """``DIR/cells``."""
    return Path(out) / "cells"


def cell_dir(out: str | Path, cell_id: str) -> Path:
    """``DIR/cells/<id>``."""
    return cells_dir(out) / cell_id


def is_finished(folder: Path) -> bool:
    """A cell is finished when it holds a readable result (see `read_result`)."""
    return read_result(folder) is not None


def read_result(folder: Path) -> dict[str, Any] | None:
    """The cell's ``result.json``, or None while the cell is unfinished.

    A result that is not UTF-8 JSON holding `RESULT_KEYS` (garbage bytes, a cut file) is moved
    aside to ``result.json.corrupt-<UTC time>`` and kept, with a warning naming it; the cell
    then counts as unfinished, so ``adbench run`` runs it again.
    """
    path = folder / RESULT
    try:
        result = read_json(path)
        missing = [key for key in RESULT_KEYS if not isinstance(result, dict) or key not in result]
        if missing:
            raise CorruptFileError(f"{path} holds no {', '.join(missing)}")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except CorruptFileError as err:
        _move_aside(path, err)
        return None
    return result


def _move_aside(path: Path, problem: CorruptFileError) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    kept = path.with_name(f"{CORRUPT}{stamp}")
    try:
        os.rename(path, kept)
        where = f"moved it to {kept.name}"
    except FileNotFoundError:
        return  # another reader moved it meanwhile, and warned
    except OSError as err:  # a read-only run directory: the file stays, the cell is skipped
        where = f"cannot move it aside ({err.strerror})"
    _log.warning("%s; %s, the cell counts as unfinished", problem, where)


def error_text(folder: Path) -> str:
    """``"<type>: <message>"`` of the cell's ``error.json``, or why that file cannot be read."""
    try:
        error = read_json(folder / ERROR)
    except CorruptFileError as err:
        return str(err)
    return f"{error['type']}: {error['message']}"


def clear(folder: Path) -> None:
    """Remove what an unfinished attempt left in ``folder`` (all but the names in `KEPT`)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(KEPT):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


# -- locks ----------------------------------------------------------------------------------------
class CellLock:
    """An exclusive, crash-tolerant claim on one cell directory, shared safely across hosts.

    The lock is a file holding the owner's host, pid and a token, written to a draft first and
    hard-linked into place, so it never appears empty; a background thread refreshes its mtime
    every `HEARTBEAT_S`. A lock is stale when its owner is a dead process on this host, when it
    names no owner (empty or unreadable, as a kill between creating and writing it leaves it)
    and is older than `WRITE_GRACE_S`, or when it has not been refreshed for `STALE_AFTER_S` (an
    owner on another host that died). Breaking a stale lock renames it away first, so of two
    runners that both see it stale only one wins; breaking an ownerless one is logged.

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
        draft = self.path.with_name(f"{LOCK}.{self.owner['token']}")
        with open(draft, "x") as handle:
            json.dump(self.owner, handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            for _ in range(3):
                try:
                    os.link(draft, self.path)
                except FileExistsError:
                    if not self._break_if_stale():
                        return False
                    continue
                self._thread = threading.Thread(target=self._beat, daemon=True)
                self._thread.start()
                return True
            return False
        finally:
            draft.unlink(missing_ok=True)

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
        if owner is None:
            _log.warning("broke the lock %s: it names no owner and is %.0f s old", self.path, age)
        return True


def lock_holder(folder: Path, stale_after: float = STALE_AFTER_S) -> dict[str, Any] | None:
    """The live owner of a cell's lock (host, pid), or None when it is free or stale."""
    path = folder / LOCK
    owner, age = _read_owner(path), _age(path)
    if age is None or is_stale(owner, age, stale_after):
        return None
    return owner or {}


def is_stale(owner: dict[str, Any] | None, age: float, stale_after: float) -> bool:
    """The stale rule (see `CellLock`); ``owner`` None is a lock that names no owner."""
    if age > stale_after:
        return True
    if owner is None:
        return age > WRITE_GRACE_S
    if owner["host"] == socket.gethostname():
        return not _pid_alive(owner["pid"])
    return False


def _read_owner(path: Path) -> dict[str, Any] | None:
    """The lock's owner; None when the file is gone, empty or names no host and pid."""
    try:
        owner = json.loads(path.read_bytes().decode())
    except (OSError, ValueError):
        return None
    named = (
        isinstance(owner, dict)
        and isinstance(owner.get("host"), str)
        and isinstance(owner.get("pid"), int)
    )
    return owner if named else None


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
