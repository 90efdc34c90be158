"""The metric layer: per-category image, pixel and region metrics, exact or streaming.

``Evaluator`` is the torchmetrics module a method owns; ``evaluate`` is the functional entry point
for arrays; ``MetricTable`` is what both return (``evaluate`` as its DataFrame). The low-level
exact functions (``auroc``, ``average_precision``, ``f1_max``, ``aupro``) and the ``Curve`` they
share are exported for reuse. ``ViewPooling`` and ``OBJECT_METRICS`` belong to the object-level
(multi-view) protocol of Real-IAD.
"""

from __future__ import annotations

from adbench.metrics.aupro import Regions, aupro, label_regions
from adbench.metrics.bins import BinLayout
from adbench.metrics.evaluator import MODES, Evaluator, MetricWarning
from adbench.metrics.functional import evaluate
from adbench.metrics.objects import ViewPooling
from adbench.metrics.ranking import Curve, auroc, average_precision, f1_max, ranked_curve
from adbench.metrics.table import (
    COLUMNS,
    MEAN_ROW,
    METRICS,
    OBJECT_METRICS,
    SUMMARY,
    MetricTable,
)

__all__ = [
    "COLUMNS",
    "MEAN_ROW",
    "METRICS",
    "MODES",
    "OBJECT_METRICS",
    "SUMMARY",
    "BinLayout",
    "Curve",
    "Evaluator",
    "MetricTable",
    "MetricWarning",
    "Regions",
    "ViewPooling",
    "aupro",
    "auroc",
    "average_precision",
    "evaluate",
    "f1_max",
    "label_regions",
    "ranked_curve",
]
