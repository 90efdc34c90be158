"""One experiment path: method + data + training budget -> fit -> evaluate, for every entry point.

`adbench fit` (the CLI), a sweep cell (the runner) and a script that calls `run_experiment` all
build and run an experiment here, so the same seed, data and settings give the same numbers
from each. The pieces it composes are the Python API's verbs: `adbench.create` (or `build`)
seeds the initial weights, `adbench.fit` seeds the loop, `adbench.evaluate` scores the test
split; calling those three by hand with the same seed gives the same numbers too.

The training-budget rule lives here once (`cleared_budget`): a step budget given alone replaces
the method's epoch budget and an epoch budget given alone replaces its step budget.
"""

from __future__ import annotations

import dataclasses
import json
import time
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adbench.errors import ConfigError
from adbench.io import write_atomic
from adbench.protocol import AUPRO_FPR_LIMIT, protocol_card, write_protocol

if TYPE_CHECKING:
    import lightning as L

    from adbench.contract import AnomalyMethod
    from adbench.data import SampleIndex
    from adbench.metrics import MetricTable


def cleared_budget(user: Mapping[str, Any]) -> dict[str, Any]:
    """The method's budget fields that the user's training budget replaces.

    Args:
        user: Trainer settings given by the user (``max_epochs``, ``max_steps``, ...).

    Returns:
        ``{"max_epochs": None}`` for a step budget alone, ``{"max_steps": -1}`` for an epoch
        budget alone, else ``{}``.
    """
    steps = user.get("max_steps") not in (None, -1)
    epochs = user.get("max_epochs") is not None
    if steps and not epochs:
        return {"max_epochs": None}
    if epochs and not steps:
        return {"max_steps": -1}
    return {}


def has_field(cls: Any, dotted: str) -> bool:
    """Whether dataclass ``cls`` has the (nested) field ``dotted`` (``"data.image_size"``)."""
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cls):
            return False
        if part not in {f.name for f in dataclasses.fields(cls)}:
            return False
        cls = typing.get_type_hints(cls)[part]
    return True


def split_trainer_settings(
    settings: Mapping[str, Any], config_cls: type
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split Trainer settings into method-config overrides and remaining Trainer kwargs.

    A setting the method config has as ``trainer.<key>`` becomes a config override, so the
    resolved config records the value used; the budget the user's replaces is cleared there too.

    Args:
        settings: Trainer settings; None values are ignored.
        config_cls: the method's config dataclass.

    Returns:
        (dotted config overrides, Trainer keyword arguments).
    """
    given = {key: value for key, value in settings.items() if value is not None}
    overrides: dict[str, Any] = {}
    trainer: dict[str, Any] = {}
    for key, value in given.items():
        if has_field(config_cls, f"trainer.{key}"):
            overrides[f"trainer.{key}"] = value
        else:
            trainer[key] = value
    for key, value in cleared_budget(given).items():
        if has_field(config_cls, f"trainer.{key}"):
            overrides[f"trainer.{key}"] = value
    return overrides, trainer


def check_positive(name: str, value: int | None) -> int | None:
    """``value`` unless it is given and < 1 (an error naming the setting)."""
    if value is not None and value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")
    return value


# what the method decided at build time, rewritten after training with what it measured there
# (`AnomalyMethod.run_record`)
RUN_RECORD = "run_record.json"


@dataclass(frozen=True)
class Experiment:
    """Everything that decides an experiment's numbers.

    Attributes:
        method: registered method name.
        config: the method's resolved config (``num_classes`` filled from the data).
        index: the categories and samples to train and test on.
        seed: seeds the initial weights, the training loop and the data order.
        image_size: input side in pixels.
        batch_size: training and evaluation batch size.
        trainer: Trainer keyword arguments beyond ``config.trainer`` (accelerator, devices ...).
        evaluation: "streaming" or "exact" metrics.
        view_pooling: object score from view scores (Real-IAD): "max", "mean" or "topK".
        aupro_fpr_limit: upper FPR limit of AUPRO (0.3: MVTec AD; 0.05: MVTec AD 2).
        dataset: the dataset's name in the protocol card (default: the index's ``dataset``
            column).
    """

    method: str
    config: Any
    index: SampleIndex
    seed: int = 0
    image_size: int = 256
    batch_size: int = 16
    trainer: Mapping[str, Any] = field(default_factory=dict)
    evaluation: str = "streaming"
    view_pooling: str = "max"
    aupro_fpr_limit: float = AUPRO_FPR_LIMIT
    dataset: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.aupro_fpr_limit <= 1:
            raise ConfigError(f"aupro_fpr_limit must be in (0, 1], got {self.aupro_fpr_limit}")

    def protocol(self) -> dict[str, Any]:
        """The evaluation protocol card of this experiment (`adbench.protocol.protocol_card`)."""
        name = self.dataset or "+".join(sorted(map(str, self.index.frame["dataset"].unique())))
        return protocol_card(name, self.index, image_size=self.image_size,
                             evaluation=self.evaluation, view_pooling=self.view_pooling,
                             aupro_fpr_limit=self.aupro_fpr_limit, seeds=[self.seed],
                             map_smoothing=getattr(getattr(self.config, "scoring", None),
                                                   "sigma", None))


@dataclass
class Outcome:
    """What `run_experiment` returns.

    Attributes:
        method: the trained method.
        trainer: the Lightning Trainer that trained and evaluated it.
        table: metrics per category and their mean.
        times: ``setup_s``, ``train_s``, ``inference_s``, ``total_s`` (seconds).
        trainer_options: the Trainer settings in force (the method's defaults under the user's).
        protocol: the evaluation protocol card (`Experiment.protocol`).
    """

    method: AnomalyMethod
    trainer: L.Trainer
    table: MetricTable
    times: dict[str, float]
    trainer_options: dict[str, Any]
    protocol: dict[str, Any]


def run_experiment(
    experiment: Experiment,
    out: str | Path | None = None,
    *,
    num_workers: int = 0,
    checkpoints: bool = True,
    progress: bool = True,
) -> Outcome:
    """Build, train and evaluate ``experiment``.

    Args:
        experiment: what to run.
        out: folder for logs, the checkpoint, `RUN_RECORD` and ``protocol.yaml``; nothing is
            written when None.
        num_workers: DataLoader worker processes (does not change the numbers).
        checkpoints: keep Lightning's checkpoint in ``out``.
        progress: show Lightning's progress bar.
    """
    from adbench.data import UnifiedDataModule
    from adbench.engine import evaluate, fit, trainer_kwargs
    from adbench.registry import build

    started = time.perf_counter()
    datamodule = UnifiedDataModule(
        experiment.index,
        image_size=experiment.image_size,
        batch_size=experiment.batch_size,
        num_workers=num_workers,
        seed=experiment.seed,
    )
    method = build(experiment.method, experiment.config, seed=experiment.seed)
    options = {
        **experiment.trainer,
        "enable_checkpointing": checkpoints and out is not None,
        "enable_progress_bar": progress,
    }
    _write_run_record(method, out)
    fitted = time.perf_counter()
    trainer = fit(method, datamodule, seed=experiment.seed, default_root_dir=out, **options)
    trained = time.perf_counter()
    if trainer.is_global_zero:
        _write_run_record(method, out)
    table = evaluate(method, datamodule, mode=experiment.evaluation, trainer=trainer,
                     view_pooling=experiment.view_pooling, fpr_limit=experiment.aupro_fpr_limit)
    inferred = time.perf_counter()
    times = {"setup_s": fitted - started, "train_s": trained - fitted,
             "inference_s": inferred - trained, "total_s": inferred - started}
    protocol = experiment.protocol()
    if out is not None and trainer.is_global_zero:
        write_protocol(out, protocol)
    return Outcome(method, trainer, table, times, trainer_kwargs(method, **options), protocol)


def _write_run_record(method: AnomalyMethod, out: str | Path | None) -> None:
    """Write `RUN_RECORD` under ``out`` (nothing when the record is empty or ``out`` is None)."""
    record = method.run_record()
    if record and out is not None:
        write_atomic(Path(out) / RUN_RECORD, json.dumps(record, indent=1, default=str))
