"""Train and score one method with Lightning: the Trainer-settings rules and the API's two verbs.

The Trainer-settings rules live here once: `split_trainer_settings` moves a setting the method
config has (``trainer.max_epochs`` ...) into the config, so the resolved config records the value
used; `cleared_budget` lets a budget the user gives replace the method's; `trainer_kwargs` puts the
method's defaults under the user's settings. `fit` applies them to the settings it is given;
`adbench.experiment.run_experiment` applies them once per experiment and trains with `train`.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from fsspec.utils import get_protocol as url_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from adbench.config import check_num_classes, has_field
from adbench.contract import AnomalyMethod
from adbench.errors import ConfigError
from adbench.io import write_atomic
from adbench.protocols import DEFAULT_PROTOCOL, Protocol, get_protocol
from adbench.quiet import quiet_third_party

if TYPE_CHECKING:
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


def trainer_kwargs(config: Any, **user: Any) -> dict[str, Any]:
    """Trainer settings: the method's paper defaults (``config.trainer``) *under* the user's.

    Nothing is overridden silently: every key the user passes wins, and the method's defaults are
    visible in its resolved config. A budget the user gives replaces the method's
    (`cleared_budget`).
    """
    defaults = {**dataclasses.asdict(config.trainer), **cleared_budget(user)}
    return {**{key: value for key, value in defaults.items() if value is not None}, **user}


def check_image_size(config: Any, datamodule: L.LightningDataModule) -> None:
    """Refuse a datamodule whose images are not the size the method was built for.

    Methods size networks from ``config.data.image_size`` (GLAD, Reverse Distillation), so a
    mismatch either fails deep inside a layer or silently trains at another size.
    """
    from adbench.data.dataset import as_size

    given = getattr(datamodule, "image_size", None)
    if given is None:
        return
    built = config.data.image_size
    if as_size(built) != tuple(given):
        height, width = given
        raise ConfigError(
            f"the datamodule gives {height} x {width} px images but the method was built for "
            f"data.image_size={built}; build both at one size (UnifiedDataModule(..., "
            f"image_size={built}) or adbench.create(..., **{{'data.image_size': {height}}}))"
        )


def fit(
    method: AnomalyMethod,
    datamodule: L.LightningDataModule,
    *,
    seed: int | None = None,
    default_root_dir: str | Path | None = None,
    **trainer_options: Any,
) -> L.Trainer:
    """Train ``method`` on ``datamodule`` and return the Trainer.

    Args:
        method: an `AnomalyMethod` (e.g. from `adbench.create`).
        datamodule: usually a `UnifiedDataModule`; when it has ``categories``, class-aware parts
            of the method must be sized for exactly that many (`adbench.config.check_num_classes`),
            and when it has ``image_size`` it must be the method's ``data.image_size``.
        seed: seeds Python, NumPy, torch and the dataloader workers; None leaves the global random
            state as it is.
        default_root_dir: where logs (CSV) and the last checkpoint go; nothing is written if None.
        trainer_options: any `lightning.Trainer` argument (``max_epochs``, ``max_steps``,
            ``accelerator``, ``devices``, ``precision``, ...); they win over the method's defaults.
    """
    options = trainer_kwargs(method.config, **trainer_options)
    return train(method, datamodule, options, seed=seed, default_root_dir=default_root_dir)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing local files with `adbench.io.write_atomic`.

    A kill or a full disk then leaves no torn checkpoint (Lightning's own writer may stage the
    file elsewhere and copy it into place), and the `OSError` of a full disk names the file.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (remote paths: Lightning's writer)."""
        if storage_options is not None or url_protocol(str(path)) != "file":
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(path, buffer.getvalue())


def train(
    method: AnomalyMethod,
    datamodule: L.LightningDataModule,
    options: Mapping[str, Any],
    *,
    seed: int | None = None,
    default_root_dir: str | Path | None = None,
) -> L.Trainer:
    """Train with ``options`` as the final Trainer settings (`trainer_kwargs` already applied)."""
    quiet_third_party()
    categories = getattr(datamodule, "categories", None)
    if categories is not None:
        check_num_classes(method.config, len(categories))
    check_image_size(method.config, datamodule)
    if seed is not None:
        L.seed_everything(seed, workers=True, verbose=False)
    writes = default_root_dir is not None
    trainer = L.Trainer(
        **{
            "logger": L.pytorch.loggers.CSVLogger(default_root_dir, name="logs")
            if writes
            else False,
            "enable_checkpointing": writes,
            "plugins": [AtomicCheckpointIO()] if writes else None,
            "default_root_dir": default_root_dir,
            "num_sanity_val_steps": 0,
            "enable_model_summary": False,
            **options,
        }
    )
    trainer.fit(method, datamodule=datamodule)
    return trainer


def evaluate(
    method: AnomalyMethod,
    datamodule: L.LightningDataModule,
    mode: str | None = None,
    trainer: L.Trainer | None = None,
    view_pooling: str | None = None,
    fpr_limit: float | None = None,
    protocol: str | Protocol = DEFAULT_PROTOCOL,
    **trainer_options: Any,
) -> MetricTable:
    """Score the test split once (Lightning's predict loop) and compute every metric per category.

    Under DDP the predict loop's unrepeated sampler hands each test image to exactly one process,
    and the evaluator merges every process's states in ``compute()``.

    Args:
        method: a trained `AnomalyMethod`.
        datamodule: provides ``categories`` and the test split as ``predict_dataloader``; when it
            also has an ``index`` (`SampleIndex`) whose rows carry ``object_id`` and ``view``
            (Real-IAD), the table gains the object-level S-AUROC, S-AP and S-F1max.
        mode: "streaming" (histogram pixel metrics, bounded memory) or "exact" (sort-based);
            None: the protocol's default.
        trainer: reuse a Trainer (e.g. the one `fit` returned); otherwise a new one is made from
            ``trainer_options`` (``accelerator``, ``devices``, ``precision`` ...).
        view_pooling: object score from its view scores: "max", "mean" or "topK" (e.g. "top2");
            None: the protocol's.
        fpr_limit: upper FPR limit of AUPRO; None: the protocol's (0.3).
        protocol: the evaluation protocol, by name (`adbench.protocols.PROTOCOLS`) or object.
            The datamodule should load masks as the protocol says (``mask_load``).
        **trainer_options: `lightning.Trainer` arguments for the new Trainer when ``trainer``
            is None (they override the defaults: no logger, checkpoints or model summary).
    """
    from adbench.metrics import Evaluator

    quiet_third_party()
    index = getattr(datamodule, "index", None)
    objects = None if index is None else index.object_ids()
    rules = get_protocol(protocol, aupro_fpr_limit=fpr_limit, view_pooling=view_pooling)
    method.evaluator = Evaluator(
        list(datamodule.categories),
        mode=rules.check_evaluation(mode or rules.default_evaluation()),
        objects=objects,
        protocol=rules,
    )
    if trainer is None:
        options = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False}
        options.update(trainer_options)
        trainer = L.Trainer(**options)
    try:
        trainer.predict(method, datamodule=datamodule, return_predictions=False)
        return method.evaluator.compute()
    finally:
        method.evaluator = None
