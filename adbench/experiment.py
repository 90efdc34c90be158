"""One experiment path: method + data + settings -> `resolve` -> `run_experiment` -> result files.

`resolve` is the only place that layers a method's preset, config files, the training settings
(budget, precision, image and batch size) and the user's overrides into an `Experiment`; `adbench
fit` (the CLI), a sweep cell (the runner) and a script all call it, and all run the result with
`run_experiment`, which writes the same files in each case (``result.json`` last). The pieces it
composes are the Python API's verbs: `adbench.create` (or `build`) seeds the initial weights,
`adbench.fit` seeds the loop, `adbench.evaluate` scores the test split; calling those three by hand
with the same seed gives the same numbers too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adbench.errors import ConfigError
from adbench.io import write_atomic, write_json
from adbench.protocols import (
    DEFAULT_PROTOCOL,
    EVALUATION_MODES,
    Protocol,
    get_protocol,
    protocol_card,
    write_protocol,
)
from adbench.run_files import RESULT, result_record, write_run_record

if TYPE_CHECKING:
    import lightning as L

    from adbench.contract import AnomalyMethod
    from adbench.data import SampleIndex
    from adbench.metrics import MetricTable

DATA_SETTINGS = ("image_size", "batch_size")  # settings that go to the config's ``data.*``


@dataclass(frozen=True)
class Experiment:
    """Everything that decides an experiment's numbers; build it with `resolve`.

    Attributes:
        method: registered method name.
        config: the method's resolved config (``num_classes`` filled from the data); its
            ``data.image_size`` and ``data.batch_size`` are the input side and the batch size.
        index: the categories and samples to train and test on.
        seed: seeds the initial weights, the training loop and the data order.
        trainer: Trainer keyword arguments beyond ``config.trainer`` (accelerator, devices ...).
        protocol: the evaluation protocol's name (`adbench.protocols.PROTOCOLS`).
        evaluation: "streaming" or "exact" metrics; None: the protocol's default.
        view_pooling: object score from view scores (Real-IAD): "max", "mean" or "topK"; None:
            the protocol's (None again for a protocol that scores views as images).
        aupro_fpr_limit: upper FPR limit of AUPRO; None: the protocol's (0.3).
        dataset: the dataset's name in results (default: the index's ``dataset`` column).
        preset: the preset the config was resolved from (recorded).
        label: the method's name in leaderboards (default: ``method``).
        overrides: the user's config overrides (recorded as given).
    """

    method: str
    config: Any
    index: SampleIndex
    seed: int = 0
    trainer: Mapping[str, Any] = field(default_factory=dict)
    protocol: str = DEFAULT_PROTOCOL
    evaluation: str | None = None
    view_pooling: str | None = None
    aupro_fpr_limit: float | None = None
    dataset: str | None = None
    preset: str | None = None
    label: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rules = get_protocol(
            self.protocol, aupro_fpr_limit=self.aupro_fpr_limit, view_pooling=self.view_pooling
        )
        if self.evaluation is not None and self.evaluation not in EVALUATION_MODES:
            raise ConfigError(
                f"evaluation must be one of {', '.join(EVALUATION_MODES)}, got {self.evaluation!r}"
            )
        evaluation = rules.check_evaluation(self.evaluation or rules.default_evaluation())
        object.__setattr__(self, "evaluation", evaluation)
        object.__setattr__(self, "view_pooling", rules.view_pooling)
        object.__setattr__(self, "aupro_fpr_limit", rules.aupro.fpr_limit)

    @property
    def rules(self) -> Protocol:
        """The evaluation protocol with this experiment's FPR limit and view pooling."""
        return get_protocol(
            self.protocol, aupro_fpr_limit=self.aupro_fpr_limit, view_pooling=self.view_pooling
        )

    @property
    def image_size(self) -> int:
        """Input side in pixels (``config.data.image_size``)."""
        return int(self.config.data.image_size)

    @property
    def batch_size(self) -> int:
        """Training and evaluation batch size (``config.data.batch_size``)."""
        return int(self.config.data.batch_size)

    @property
    def dataset_name(self) -> str:
        """``dataset``, else the index's dataset names joined by ``+``."""
        return self.dataset or "+".join(sorted(map(str, self.index.frame["dataset"].unique())))

    def card(self) -> dict[str, Any]:
        """The evaluation protocol card of this experiment (`adbench.protocols.protocol_card`)."""
        return protocol_card(
            self.dataset_name,
            self.index,
            image_size=self.image_size,
            evaluation=self.evaluation,
            protocol=self.rules,
            seeds=[self.seed],
            map_smoothing=getattr(getattr(self.config, "scoring", None), "sigma", None),
        )

    def to_record(self) -> dict[str, Any]:
        """The resolved settings as plain data (``config.yaml``; `from_record` reads them back)."""
        from adbench.config import to_dict

        return {
            "method": {
                "name": self.method,
                "preset": self.preset,
                "label": self.label or self.method,
                "set": dict(self.overrides),
                "config": to_dict(self.config),
            },
            "categories": [str(c) for c in self.index.categories],
            "seed": self.seed,
            "data": {"image_size": self.image_size, "batch_size": self.batch_size},
            "trainer": dict(self.trainer),
            "evaluation": self.evaluation,
            "view_pooling": self.view_pooling,
            "aupro_fpr_limit": self.aupro_fpr_limit,
            # absent for the default protocol, so that earlier cells keep their ids
            **({"protocol": self.protocol} if self.protocol != DEFAULT_PROTOCOL else {}),
        }

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], index: SampleIndex, dataset: str | None = None
    ) -> Experiment:
        """The experiment `to_record` wrote, on ``index`` (already subset to its categories)."""
        from adbench.config import from_dict
        from adbench.registry import get_method_spec

        method = record["method"]
        config = from_dict(
            get_method_spec(method["name"]).config,
            method["config"],
            context=method.get("label") or method["name"],
        )
        return cls(
            method["name"],
            config,
            index,
            seed=record["seed"],
            trainer=dict(record["trainer"]),
            evaluation=record["evaluation"],
            view_pooling=record["view_pooling"],
            aupro_fpr_limit=record["aupro_fpr_limit"],
            protocol=record.get("protocol", DEFAULT_PROTOCOL),
            dataset=dataset,
            preset=method.get("preset"),
            label=method.get("label"),
            overrides=dict(method.get("set") or {}),
        )


def layer_config(
    method: str,
    *,
    preset: str = "paper",
    files: Sequence[str | Path] = (),
    settings: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    random_weights: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Layer defaults <- preset <- ``files`` <- ``settings`` <- ``overrides`` (no data needed).

    Args:
        method: registered method name.
        preset: preset name.
        files: YAML config files applied in order after the preset.
        settings: training settings: ``image_size`` and ``batch_size`` (to ``data.*``) and any
            Trainer argument (``max_epochs``, ``precision``, ``accelerator`` ...); one the config
            has as ``trainer.<key>`` is recorded there, the rest stay Trainer arguments, and a
            budget given alone replaces the method's (`adbench.engine.split_trainer_settings`).
            None values are ignored.
        overrides: config keys, dotted or nested; they win over everything else.
        random_weights: mechanics mode (the full architecture with random weights).

    Returns:
        (the method's config, with ``num_classes: 0`` fields still unfilled; the Trainer
        arguments that are not config fields).
    """
    from adbench.config import has_field, merge, unflatten
    from adbench.engine import split_trainer_settings
    from adbench.registry import get_method_spec, resolve_config

    config_cls = get_method_spec(method).config
    given = {key: value for key, value in (settings or {}).items() if value is not None}
    data = {key: given.pop(key) for key in DATA_SETTINGS if key in given}
    layered, trainer = split_trainer_settings(given, config_cls)
    for key, value in data.items():
        if not has_field(config_cls, f"data.{key}"):
            raise ConfigError(f"method '{method}' has no data.{key}; it cannot take {key}")
        layered[f"data.{key}"] = value
    if random_weights:
        layered["random_weights"] = True
    layered = merge(unflatten(layered), unflatten(dict(overrides or {})))
    return resolve_config(method, preset, layered, files=tuple(files)), trainer


def resolve(
    method: str,
    index: SampleIndex,
    *,
    preset: str = "paper",
    files: Sequence[str | Path] = (),
    settings: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    random_weights: bool = False,
    seed: int = 0,
    protocol: str = DEFAULT_PROTOCOL,
    evaluation: str | None = None,
    view_pooling: str | None = None,
    aupro_fpr_limit: float | None = None,
    dataset: str | None = None,
    label: str | None = None,
) -> Experiment:
    """The `Experiment` of ``method`` on ``index``: `layer_config`, then ``num_classes`` filled.

    Args:
        method: registered method name.
        index: the categories and samples (``num_classes: 0`` fields get their count).
        preset: as in `layer_config`.
        files: as in `layer_config`.
        settings: as in `layer_config`.
        overrides: as in `layer_config`.
        random_weights: as in `layer_config`.
        seed: the `Experiment` field.
        protocol: the `Experiment` field; a protocol with its own map smoothing sets the
            method's ``scoring.sigma`` to 0 (recorded in the config), so maps are smoothed once.
        evaluation: the `Experiment` field.
        view_pooling: the `Experiment` field.
        aupro_fpr_limit: the `Experiment` field.
        dataset: the `Experiment` field.
        label: the `Experiment` field.
    """
    from adbench.config import fill_num_classes, has_field
    from adbench.registry import get_method_spec

    layered = dict(overrides or {})
    if get_protocol(protocol).smooths and has_field(
        get_method_spec(method).config, "scoring.sigma"
    ):
        layered = {**layered, "scoring.sigma": 0.0}
    config, trainer = layer_config(
        method,
        preset=preset,
        files=files,
        settings=settings,
        overrides=layered,
        random_weights=random_weights,
    )
    config = fill_num_classes(config, len(index.categories))
    return Experiment(
        method,
        config,
        index,
        seed=seed,
        trainer=trainer,
        protocol=protocol,
        evaluation=evaluation,
        view_pooling=view_pooling,
        aupro_fpr_limit=aupro_fpr_limit,
        dataset=dataset,
        preset=preset,
        label=label,
        overrides=dict(overrides or {}),
    )


@dataclass
class Outcome:
    """What `run_experiment` returns.

    Attributes:
        method: the trained method.
        trainer: the Lightning Trainer that trained and evaluated it.
        table: metrics per category and their mean.
        result: the content of ``result.json`` (metrics, timings, memory, provenance).
    """

    method: AnomalyMethod
    trainer: L.Trainer
    table: MetricTable
    result: dict[str, Any]


def run_experiment(
    experiment: Experiment,
    out: str | Path | None = None,
    *,
    num_workers: int = 0,
    checkpoints: bool = True,
    progress: bool = True,
    callbacks: Sequence[L.Callback] = (),
    record: Mapping[str, Any] | None = None,
) -> Outcome:
    """Build, train and evaluate ``experiment``; with ``out``, write its files there.

    Files (global rank 0): ``index.parquet`` and ``environment.json`` first, then
    ``run_record.json``, ``protocol.yaml``, ``metrics.csv`` and ``result.json`` (written last;
    `adbench.run_files`), plus Lightning's logs and, with ``checkpoints``, its checkpoint.

    Args:
        experiment: what to run (`resolve`).
        out: the run folder; nothing is written when None.
        num_workers: DataLoader worker processes (does not change the numbers).
        checkpoints: keep Lightning's checkpoint in ``out``.
        progress: show Lightning's progress bar.
        callbacks: Lightning callbacks added to the Trainer (e.g. a progress display).
        record: extra fields of ``result.json`` (e.g. the sweep's ``cell_id``).
    """
    from lightning.pytorch.utilities import rank_zero_only

    from adbench.data import UnifiedDataModule
    from adbench.engine import evaluate, train, trainer_kwargs
    from adbench.provenance import PeakMemory, environment
    from adbench.registry import build

    folder = None if out is None or rank_zero_only.rank != 0 else Path(out)
    if folder is not None:
        write_atomic(folder / "index.parquet", experiment.index.frame.to_parquet(index=False))
        write_json(folder / "environment.json", environment())
    with PeakMemory() as memory:
        started = time.perf_counter()
        datamodule = UnifiedDataModule.for_config(
            experiment.index,
            experiment.config,
            num_workers=num_workers,
            seed=experiment.seed,
            mask_load=experiment.rules.mask_load,
        )
        method = build(experiment.method, experiment.config, seed=experiment.seed)
        options = trainer_kwargs(
            experiment.config,
            **experiment.trainer,
            enable_checkpointing=checkpoints and out is not None,
            enable_progress_bar=progress,
            **({"callbacks": list(callbacks)} if callbacks else {}),
        )
        write_run_record(method, folder)
        fitted = time.perf_counter()
        trainer = train(method, datamodule, options, seed=experiment.seed, default_root_dir=out)
        trained = time.perf_counter()
        write_run_record(method, folder)
        table = evaluate(
            method,
            datamodule,
            mode=experiment.evaluation,
            trainer=trainer,
            protocol=experiment.rules,
        )
        inferred = time.perf_counter()
    times = {
        "setup_s": fitted - started,
        "train_s": trained - fitted,
        "inference_s": inferred - trained,
        "total_s": inferred - started,
    }
    result = result_record(experiment, method, trainer, table, times, options, folder)
    result.update(record or {})
    result["memory"] = memory.as_dict()
    if folder is not None and trainer.is_global_zero:
        write_protocol(folder, result["protocol"])
        write_atomic(folder / "metrics.csv", table.to_frame().to_csv())
        write_json(folder / RESULT, result)
    return Outcome(method, trainer, table, result)
