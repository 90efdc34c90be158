"""Run one cell: data + method + Trainer -> fit -> evaluate -> result files in the cell directory.

`run_cell` is what every launcher calls: it skips a finished cell, claims the cell's lock (or
reports it busy), clears a previous unfinished attempt, writes the cell's config, runs it in this
process or in a fresh worker process (needed for multi-GPU DDP, whose ranks re-run the worker's
command line), and records either ``result.json`` or ``error.json``.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import re
import socket
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from adbench.errors import AdbenchError
from adbench.io import write_atomic
from adbench.quiet import cell_logs
from adbench.run_files import now
from adbench.runner import rundir
from adbench.runner.schema import Cell
from adbench.runner.store import EXPORT_EVERY_S, ResultStore

FINISHED, SKIPPED, FAILED, BUSY = "finished", "skipped", "failed", "busy"
RUNTIME = "runtime.json"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """How cells run; none of it changes a cell's numbers, so none of it is in the cell id.

    Attributes:
        num_workers: DataLoader worker processes.
        checkpoints: keep Lightning's checkpoint of the trained method in the cell directory.
        plugins: modules or files to import first (they register methods).
        progress: show the cell's epoch and step (`adbench.runner.progress`): in ``callbacks``
            given by the launcher, or in a bar of its own in a worker process. Lightning's own
            progress bar is never shown in a sweep.
        verbose: show the cell's log messages (Lightning's, the method's) on the terminal too;
            they always go to its ``run.log`` (`adbench.quiet.cell_logs`).
        isolate: run each cell in a fresh worker process ("auto": only when it uses more than
            one device, since DDP ranks re-run the worker's command line).
        stale_after: seconds without a heartbeat after which another runner's lock is stale.
        callbacks: Lightning callbacks added to the Trainer of a cell run in this process (not
            passed on to worker processes or cluster jobs).
    """

    num_workers: int = 0
    checkpoints: bool = True
    plugins: tuple[str, ...] = ()
    progress: bool = True
    verbose: bool = False
    isolate: bool | str = "auto"
    stale_after: float = rundir.STALE_AFTER_S
    callbacks: tuple[Any, ...] = dataclasses.field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (without ``callbacks``)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "callbacks"
        } | {"plugins": list(self.plugins)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Runtime:
        """Inverse of `to_dict`."""
        return cls(**{**data, "plugins": tuple(data.get("plugins", ()))})


class CellFailed(AdbenchError):
    """A cell raised (re-raised with ``--fail-fast``); the cause is in its ``error.json``."""


def run_cell(out: str | Path, cell: Cell, runtime: Runtime, fail_fast: bool = False) -> str:
    """Run ``cell`` into ``out/cells/<id>`` unless it is finished or another runner holds it.

    Returns:
        "skipped" (already finished), "busy" (locked by a live runner), "finished" or "failed".
    """
    folder = rundir.cell_dir(out, cell.id)
    if rundir.is_finished(folder):
        return SKIPPED
    lock = rundir.CellLock(folder, stale_after=runtime.stale_after)
    if not lock.acquire():
        return BUSY
    with lock:
        if rundir.is_finished(folder):  # finished by another runner just before we took the lock
            return SKIPPED
        status = _attempt(cell, folder, runtime, fail_fast)
    ResultStore(out).refresh(EXPORT_EVERY_S)
    return status


def _attempt(cell: Cell, folder: Path, runtime: Runtime, fail_fast: bool) -> str:
    rundir.clear(folder)
    rundir.write_json(folder / rundir.CELL, cell.to_dict())
    rundir.write_json(folder / RUNTIME, runtime.to_dict())
    write_atomic(folder / "config.yaml", yaml.safe_dump(cell.config, sort_keys=False))
    if _isolate(cell, runtime):
        status = _run_worker(folder)
    else:
        status = _run_here(cell, folder, runtime)
    if status == FAILED:
        message = (
            f"cell {cell.id} ({cell.label}, {cell.dataset}, k={cell.k}, seed={cell.seed}) "
            f"failed: {rundir.error_text(folder)}"
        )
        if fail_fast:
            raise CellFailed(message)
        first, *more = message.splitlines()  # a message that lists problems: its first line
        _log.error("%s%s (traceback in %s)", first, " ..." if more else "", folder / rundir.ERROR)
    return status


def _run_here(cell: Cell, folder: Path, runtime: Runtime) -> str:
    try:
        execute(cell, folder, runtime)
    except Exception as err:  # recorded, and the sweep goes on
        try:
            record_error(folder, err)
        except OSError as lost:  # the disk is still full: stop the sweep, naming both files
            raise OSError(
                lost.errno, f"cell {cell.id} failed ({err}), and writing {lost.filename} failed too"
            ) from err
        return FAILED
    finally:
        _release_memory()
    return FINISHED


def _run_worker(folder: Path) -> str:
    command = [sys.executable, "-m", "adbench.runner.worker", str(folder)]
    process = subprocess.run(command, check=False)
    if rundir.is_finished(folder):
        return FINISHED
    if not (folder / rundir.ERROR).is_file():
        log = folder / "run.log"
        tail = log.read_text()[-4000:] if log.is_file() else ""
        reason = (
            f"killed by signal {-process.returncode}"
            if process.returncode < 0
            else f"exit code {process.returncode}"
        )
        _write_error(
            folder,
            "WorkerExited",
            f"the cell's worker process ended ({reason}) without a result",
            tail,
        )
    return FAILED


def record_error(folder: Path, err: BaseException) -> None:
    """Write ``error.json`` (type, message, traceback) for a failed attempt."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    _write_error(folder, type(err).__name__, error_message(err), text)


def error_message(err: BaseException) -> str:
    """``str(err)``, less the traceback that PyTorch wraps a DataLoader worker's error in.

    PyTorch re-raises it as ``Caught <Type> in DataLoader worker process N.`` followed by the
    worker's traceback, whose last line is ``<module>.<Type>: <message>``: that message is kept.
    """
    text = str(err)
    wrapped = re.match(r"Caught (\w+) .*?\.\nOriginal Traceback", text)
    if wrapped is None:
        return text
    last = list(re.finditer(rf"^(?:[\w.]+\.)?{wrapped[1]}: ", text, re.M))
    return text[last[-1].end() :].rstrip("\n") if last else text


def _write_error(folder: Path, kind: str, message: str, text: str) -> None:
    rundir.write_json(
        folder / rundir.ERROR,
        {
            "type": kind,
            "message": message,
            "traceback": text,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": now(),
        },
    )


def _release_memory() -> None:
    """Return the finished cell's GPU memory before the next cell starts.

    A full garbage collection costs about a second in a process holding torch and anomalib, so
    it runs only when CUDA is in use (where leftover cycles would hold GPU memory).
    """
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def _isolate(cell: Cell, runtime: Runtime) -> bool:
    if runtime.isolate != "auto":
        return bool(runtime.isolate)
    return device_count(cell.config["trainer"]) > 1


def device_count(trainer: dict[str, Any]) -> int:
    """How many processes Lightning will start for these Trainer settings (nodes x devices)."""
    import torch

    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", "auto")
    visible = 1 if accelerator == "cpu" else max(1, torch.cuda.device_count())
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, int):
        count = visible if devices == -1 else devices
    elif devices in ("auto", "-1"):
        count = visible
    else:
        parts = [p for p in str(devices).split(",") if p.strip()]
        count = int(parts[0]) if len(parts) == 1 else len(parts)
    return count * int(trainer.get("num_nodes", 1))


def global_rank() -> int:
    """This process's global rank, as Lightning reads it from the environment."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0))


def execute(cell: Cell, folder: Path, runtime: Runtime) -> dict[str, Any] | None:
    """Fit and evaluate ``cell``; on global rank 0 write its files and return its result.

    Its log messages and warnings, and the traceback of a failure, go to its ``run.log`` (and
    to the terminal only with ``runtime.verbose``).

    Raises whatever the data layer, the method or Lightning raise.
    """
    writes = global_rank() == 0
    with cell_logs(folder / "run.log" if writes else None, runtime.verbose):
        try:
            return _execute(cell, folder, runtime, writes)
        except Exception:
            _log.exception("cell %s failed", cell.id)
            raise


def _execute(cell: Cell, folder: Path, runtime: Runtime, writes: bool) -> dict[str, Any] | None:
    from adbench.experiment import Experiment, run_experiment
    from adbench.runner.datasets import load_dataset
    from adbench.runner.plugins import load_plugins

    load_plugins(runtime.plugins)
    index = load_dataset(cell.config["dataset"]).select(cell.categories)
    experiment = Experiment.from_record(cell.config, index, dataset=cell.dataset)
    outcome = run_experiment(
        experiment,
        folder,
        num_workers=runtime.num_workers,
        checkpoints=runtime.checkpoints,
        progress=False,
        callbacks=runtime.callbacks,
        record={"cell_id": cell.id},
    )
    return outcome.result if writes and outcome.trainer.is_global_zero else None
