"""The files a run leaves beside Lightning's logs: what goes into ``result.json`` and the record.

`adbench.experiment.run_experiment` writes them for ``adbench fit``, a sweep cell and a script
alike; `RESULT` is written last, so its presence marks a finished run.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adbench.io import write_atomic

if TYPE_CHECKING:
    import lightning as L

    from adbench.contract import AnomalyMethod
    from adbench.experiment import Experiment
    from adbench.metrics import MetricTable

# what the method decided at build time, rewritten after training with what it measured there
# (`AnomalyMethod.run_record`)
RUN_RECORD = "run_record.json"
RESULT = "result.json"  # written last: its presence marks a finished run


def result_record(
    experiment: Experiment,
    method: AnomalyMethod,
    trainer: L.Trainer,
    table: MetricTable,
    times: dict[str, float],
    options: Mapping[str, Any],
    folder: Path | None,
) -> dict[str, Any]:
    """The content of `RESULT` without its memory section: identity, metrics, costs, provenance."""
    frame = experiment.index.frame
    n_test = int((frame["split"] == "test").sum())
    checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    return {
        "label": experiment.label or experiment.method,
        "method": experiment.method,
        "preset": experiment.preset,
        "dataset": experiment.dataset_name,
        "k": len(experiment.index.categories),
        "seed": experiment.seed,
        "categories": [str(c) for c in experiment.index.categories],
        "random_weights": bool(method.config.random_weights),
        "metrics": {str(name): row.to_dict() for name, row in table.to_frame().iterrows()},
        "timings": {
            **times,
            "images_per_s": n_test / max(times["inference_s"], 1e-9),
            "n_train": int((frame["split"] == "train").sum()),
            "n_test": n_test,
        },
        "params": {
            "total": sum(p.numel() for p in method.parameters()),
            "trainable": sum(p.numel() for p in method.parameters() if p.requires_grad),
        },
        "trainer": {
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "world_size": trainer.world_size,
            "device": str(trainer.strategy.root_device),
            "kwargs": _plain({key: value for key, value in options.items() if key != "callbacks"}),
        },  # objects, not settings
        "run_record": _plain(method.run_record()),
        "protocol": experiment.card(),
        "checkpoint": os.path.relpath(checkpoint, folder) if checkpoint and folder else None,
        "finished_at": now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def write_run_record(method: AnomalyMethod, folder: Path | None) -> None:
    """Write `RUN_RECORD` under ``folder`` (nothing when the record is empty or no folder)."""
    record = method.run_record()
    if record and folder is not None:
        write_atomic(folder / RUN_RECORD, json.dumps(record, indent=1, default=str))


def now() -> str:
    """The current UTC time in ISO 8601, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
