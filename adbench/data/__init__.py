"""The data layer: dataset readers -> `SampleIndex` -> `CategorySubset` -> `UnifiedDataModule`.

```python
index = load_index("mvtec", "/data/mvtec_anomaly_detection")
subset = CategorySubset(k=5, seed=0).apply(index)
datamodule = UnifiedDataModule(subset, image_size=256, batch_size=16)
```
Names are imported on first use, so ``adbench data`` commands and ``FORMATS`` do not pay for
importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "COLUMNS": "adbench.data.index",
    "SampleIndex": "adbench.data.index",
    "UnknownCategoryError": "adbench.data.index",
    "concat": "adbench.data.index",
    "FORMATS": "adbench.data.formats",
    "load_index": "adbench.data.formats",
    "make_synthetic": "adbench.data.formats",
    "CategorySubset": "adbench.data.subsets",
    "AnomalyDataset": "adbench.data.dataset",
    "UnifiedDataModule": "adbench.data.datamodule",
    "PrepareResult": "adbench.data.cache",
    "prepare_cache": "adbench.data.cache",
    "verify_cache": "adbench.data.cache",
    "CheckReport": "adbench.data.check",
    "check_dataset": "adbench.data.check",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'adbench.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
