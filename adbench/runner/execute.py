"""Run one cell: data + method + Trainer -> fit -> evaluate -> result files in the cell directory.

`run_cell` is what every launcher calls: it skips a finished cell, claims the cell's lock (or
reports it busy), clears a previous unfinished attempt, writes the cell's config, runs it in this
process or in a fresh worker process (needed for multi-GPU DDP, whose ranks re-run the worker's
command line), and records either ``result.json`` or ``error.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import logging
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from adbench.errors import AdbenchError
from adbench.io import write_atomic
from adbench.runner import rundir
from adbench.runner.schema import Cell

FINISHED, SKIPPED, FAILED, BUSY = "finished", "skipped", "failed", "busy"
RUNTIME = "runtime.json"


@dataclass(frozen=True)
class Runtime:
    """How cells run; none of it changes a cell's numbers, so none of it is in the cell id.

    Attributes:
        num_workers: DataLoader worker processes.
        checkpoints: keep Lightning's checkpoint of the trained method in the cell directory.
        plugins: modules or files to import first (they register methods).
        progress: show Lightning's progress bar.
        isolate: run each cell in a fresh worker process ("auto": only when it uses more than
            one device, since DDP ranks re-run the worker's command line).
        stale_after: seconds without a heartbeat after which another runner's lock is stale.
    """

    num_workers: int = 0
    checkpoints: bool = True
    plugins: tuple[str, ...] = ()
    progress: bool = True
    isolate: bool | str = "auto"
    stale_after: float = rundir.STALE_AFTER_S

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {**dataclasses.asdict(self), "plugins": list(self.plugins)}

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
        return _attempt(cell, folder, runtime, fail_fast)


def _attempt(cell: Cell, folder: Path, runtime: Runtime, fail_fast: bool) -> str:
    rundir.clear(folder)
    rundir.write_json(folder / rundir.CELL, cell.to_dict())
    rundir.write_json(folder / RUNTIME, runtime.to_dict())
    write_atomic(folder / "config.yaml", yaml.safe_dump(cell.config, sort_keys=False))
    if _isolate(cell, runtime):
        status = _run_worker(folder)
    else:
        status = _run_here(cell, folder, runtime)
    if status == FAILED and fail_fast:
        error = rundir.read_json(folder / rundir.ERROR)
        raise CellFailed(f"cell {cell.id} ({cell.label}, {cell.dataset}, k={cell.k}, "
                         f"seed={cell.seed}) failed: {error['type']}: {error['message']}")
    return status


def _run_here(cell: Cell, folder: Path, runtime: Runtime) -> str:
    try:
        execute(cell, folder, runtime)
    except Exception as err:  # recorded, and the sweep goes on
        record_error(folder, err)
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
        reason = (f"killed by signal {-process.returncode}" if process.returncode < 0
                  else f"exit code {process.returncode}")
        _write_error(folder, "WorkerExited", f"the cell's worker process ended ({reason}) "
                     "without a result", tail)
    return FAILED


def record_error(folder: Path, err: BaseException) -> None:
    """Write ``error.json`` (type, message, traceback) for a failed attempt."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    logging.getLogger("adbench.runner").error("cell failed:\n%s", text)
    _write_error(folder, type(err).__name__, str(err), text)


def _write_error(folder: Path, kind: str, message: str, text: str) -> None:
    rundir.write_json(folder / rundir.ERROR, {
        "type": kind, "message": message, "traceback": text, "host": socket.gethostname(),
        "pid": os.getpid(), "time": _now(),
    })


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


@contextlib.contextmanager
def capture_logs(path: Path) -> Iterator[None]:
    """Send log records and warnings of the block to ``path`` (``run.log``)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(), logging.getLogger("lightning.pytorch"),
               logging.getLogger("lightning.fabric")]
    for logger in loggers:
        logger.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


def execute(cell: Cell, folder: Path, runtime: Runtime) -> dict[str, Any] | None:
    """Fit and evaluate ``cell``; on global rank 0 write its files and return its result.

    Raises whatever the data layer, the method or Lightning raise.
    """
    writes = global_rank() == 0
    with capture_logs(folder / "run.log") if writes else contextlib.nullcontext():
        return _execute(cell, folder, runtime, writes)


def _execute(cell: Cell, folder: Path, runtime: Runtime, writes: bool) -> dict[str, Any] | None:
    from adbench.config import from_dict
    from adbench.experiment import Experiment, run_experiment
    from adbench.registry import get_method_spec
    from adbench.runner.datasets import load_dataset
    from adbench.runner.plugins import load_plugins

    load_plugins(runtime.plugins)
    spec = get_method_spec(cell.method)
    config = from_dict(spec.config, cell.config["method"]["config"], context=cell.label)
    index = load_dataset(cell.config["dataset"]).select(cell.categories)
    if writes:
        index.to_parquet(folder / "index.parquet")
        rundir.write_json(folder / "environment.json", rundir.environment())
    data = cell.config["data"]
    experiment = Experiment(cell.method, config, index, seed=cell.seed,
                            image_size=data["image_size"], batch_size=data["batch_size"],
                            trainer=cell.config["trainer"], evaluation=cell.config["evaluation"],
                            view_pooling=cell.config["view_pooling"],
                            aupro_fpr_limit=cell.config["aupro_fpr_limit"],
                            dataset=cell.dataset)
    with rundir.PeakMemory() as memory:
        outcome = run_experiment(experiment, folder, num_workers=runtime.num_workers,
                                 checkpoints=runtime.checkpoints, progress=runtime.progress)
    if not (writes and outcome.trainer.is_global_zero):
        return None
    metrics = outcome.table.to_frame()
    write_atomic(folder / "metrics.csv", metrics.to_csv())
    result = _record(cell, folder, outcome, metrics, index.frame)
    result["memory"] = memory.as_dict()
    rundir.write_json(folder / rundir.RESULT, result)
    return result


def _record(cell: Cell, folder: Path, outcome: Any, metrics: Any, frame: Any) -> dict[str, Any]:
    """The content of ``result.json`` (without the memory section)."""
    trainer, method, times = outcome.trainer, outcome.method, outcome.times
    n_test = int((frame["split"] == "test").sum())
    checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    return {
        **{key: getattr(cell, key) for key in ("label", "method", "preset", "dataset", "k",
                                               "seed")},
        "cell_id": cell.id,
        "categories": list(cell.categories),
        "random_weights": bool(method.config.random_weights),
        "metrics": {str(name): row.to_dict() for name, row in metrics.iterrows()},
        "timings": {**times, "images_per_s": n_test / max(times["inference_s"], 1e-9),
                    "n_train": int((frame["split"] == "train").sum()), "n_test": n_test},
        "params": {"total": sum(p.numel() for p in method.parameters()),
                   "trainable": sum(p.numel() for p in method.parameters() if p.requires_grad)},
        "trainer": {"epochs": trainer.current_epoch, "global_step": trainer.global_step,
                    "world_size": trainer.world_size,
                    "device": str(trainer.strategy.root_device),
                    "kwargs": _plain(outcome.trainer_options)},
        "run_record": _plain(method.run_record()),
        "protocol": outcome.protocol,
        "checkpoint": os.path.relpath(checkpoint, folder) if checkpoint else None,
        "finished_at": _now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
