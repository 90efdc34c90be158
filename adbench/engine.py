"""Fit and evaluate one method on one datamodule with Lightning (the Python API's two verbs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L

from adbench.config import check_num_classes
from adbench.contract import AnomalyMethod
from adbench.experiment import cleared_budget
from adbench.protocol import AUPRO_FPR_LIMIT
from adbench.quiet import quiet_third_party

if TYPE_CHECKING:
    from adbench.metrics import MetricTable


def trainer_kwargs(method: AnomalyMethod, **user: Any) -> dict[str, Any]:
    """Trainer settings: the method's paper defaults (``config.trainer``) *under* the user's.

    Nothing is overridden silently: every key the user passes wins, and the method's defaults are
    visible in its resolved config. A budget the user gives replaces the method's
    (`adbench.experiment.cleared_budget`).
    """
    defaults = {**dataclasses.asdict(method.config.trainer), **cleared_budget(user)}
    return {**{key: value for key, value in defaults.items() if value is not None}, **user}


def fit(
    method: AnomalyMethod,
    datamodule: L.LightningDataModule,
    *,
    seed: int = 0,
    default_root_dir: str | Path | None = None,
    **trainer_options: Any,
) -> L.Trainer:
    """Train ``method`` on ``datamodule`` and return the Trainer.

    Args:
        method: an `AnomalyMethod` (e.g. from `adbench.create`).
        datamodule: usually a `UnifiedDataModule`; when it has ``categories``, class-aware parts
            of the method must be sized for exactly that many (`adbench.config.check_num_classes`).
        seed: seeds Python, NumPy, torch and the dataloader workers.
        default_root_dir: where logs (CSV) and the last checkpoint go; nothing is written if None.
        trainer_options: any `lightning.Trainer` argument (``max_epochs``, ``max_steps``,
            ``accelerator``, ``devices``, ``precision``, ...); they win over the method's defaults.
    """
    quiet_third_party()
    categories = getattr(datamodule, "categories", None)
    if categories is not None:
        check_num_classes(method.config, len(categories))
    L.seed_everything(seed, workers=True, verbose=False)
    writes = default_root_dir is not None
    options = {
        "logger": L.pytorch.loggers.CSVLogger(default_root_dir, name="logs") if writes else False,
        "enable_checkpointing": writes,
        "default_root_dir": default_root_dir,
        "num_sanity_val_steps": 0,
        "enable_model_summary": False,
        **trainer_kwargs(method, **trainer_options),
    }
    trainer = L.Trainer(**options)
    trainer.fit(method, datamodule=datamodule)
    return trainer


def evaluate(
    method: AnomalyMethod,
    datamodule: L.LightningDataModule,
    mode: str = "streaming",
    trainer: L.Trainer | None = None,
    view_pooling: str = "max",
    fpr_limit: float = AUPRO_FPR_LIMIT,
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
        mode: "streaming" (histogram pixel metrics, bounded memory) or "exact" (sort-based).
        trainer: reuse a Trainer (e.g. the one `fit` returned); otherwise a new one is made from
            ``trainer_options`` (``accelerator``, ``devices``, ``precision`` ...).
        view_pooling: object score from its view scores: "max", "mean" or "topK" (e.g. "top2").
        fpr_limit: upper FPR limit of AUPRO (0.3, the MVTec AD definition; MVTec AD 2: 0.05).
    """
    from adbench.metrics import Evaluator

    quiet_third_party()
    index = getattr(datamodule, "index", None)
    objects = None if index is None else index.object_ids()
    method.evaluator = Evaluator(
        list(datamodule.categories), mode=mode, objects=objects, view_pooling=view_pooling,
        fpr_limit=fpr_limit,
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
