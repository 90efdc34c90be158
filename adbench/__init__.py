"""adbench: benchmark multi-class unsupervised visual anomaly detection as categories grow.

The public API is re-exported here and imported lazily, so ``import adbench`` and
``adbench.list_methods()`` stay fast and never import a method's heavy dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
DISTRIBUTION = "adbench-uad"  # the name on PyPI; ``adbench`` there is another project

_EXPORTS = {
    # registry and the method contract
    "create": "adbench.registry",
    "list_methods": "adbench.registry",
    "get_method_spec": "adbench.registry",
    "resolve_config": "adbench.registry",
    "method": "adbench.registry",
    "register_method": "adbench.registry",
    "MethodSpec": "adbench.registry",
    "AnomalyMethod": "adbench.contract",
    "MethodConfig": "adbench.contract",
    "Batch": "adbench.batch",
    "Sample": "adbench.batch",
    "AnomalyOutput": "adbench.batch",
    # data
    "load_index": "adbench.data",
    "make_synthetic": "adbench.data",
    "UnifiedDataModule": "adbench.data",
    "CategorySubset": "adbench.data",
    # training and evaluation
    "build": "adbench.registry",
    "Experiment": "adbench.experiment",
    "resolve": "adbench.experiment",
    "run_experiment": "adbench.experiment",
    "fit": "adbench.engine",
    "evaluate": "adbench.engine",
    "MetricTable": "adbench.metrics",
    # benchmark sweeps and their results
    "run_sweep": "adbench.runner",
    "load_results": "adbench.runner",
    "load_cells": "adbench.runner",
    "leaderboard": "adbench.runner",
    "plot_scaling": "adbench.runner",
    "plot_ranks": "adbench.runner.plots",
    # statistics over a sweep's results (DataFrames)
    "confidence_intervals": "adbench.runner.stats",
    "paired_test": "adbench.runner.stats",
    "average_ranks": "adbench.runner.stats",
    "degradation_slopes": "adbench.runner.stats",
}

__all__ = ["DISTRIBUTION", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adbench' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
