"""Cost columns: what a finished cell cost, in the units that tables and plots show.

Derived from the cells table (`load_cells`), one value per finished cell:

- ``train h``: wall-clock hours of ``fit`` (rank 0's clock).
- ``img/s``: test images per second of the evaluation pass (predict loop and metrics).
- ``peak GB``: peak memory in GiB: the GPU memory torch allocated on rank 0's device when any
  cell of the dataset ran on a GPU, else the process's peak resident (CPU) memory.
- ``params M``: parameters of the method, trainable or frozen, in millions.
- ``device h``: ``train h`` x processes (``world_size``), the device-hours of training; they
  are GPU-hours when every cell of the dataset trained on CUDA devices.

`cost_results` puts them in the tidy layout of `load_results` (category ``mean``), so the same
seed averaging, ``k`` selection and plotting code serves metrics and costs alike.
"""

from __future__ import annotations

import pandas as pd

from adbench.runner.store import IDENTITY

COSTS = ("train h", "img/s", "peak GB", "params M")
DEVICE_HOURS = "device h"
MEAN = "mean"


def memory_column(cells: pd.DataFrame) -> str:
    """``peak_gpu_mb`` when any of ``cells`` recorded GPU memory, else ``peak_rss_mb``."""
    return "peak_gpu_mb" if cells["peak_gpu_mb"].notna().any() else "peak_rss_mb"


def device_unit(cells: pd.DataFrame) -> str:
    """``"GPU"`` when every finished cell trained on CUDA devices, else ``"device"``."""
    finished = cells[cells["status"] == "finished"]
    on_gpu = not finished.empty and bool((finished["device_type"] == "cuda").all())
    return "GPU" if on_gpu else "device"


def cost_results(cells: pd.DataFrame) -> pd.DataFrame:
    """The costs of the finished cells as rows of the `load_results` layout.

    Args:
        cells: the table of `load_cells`.

    Returns:
        One row per (finished cell, cost) with the `load_results` columns; ``category`` is
        ``"mean"`` and ``metric`` one of `COSTS` or `DEVICE_HOURS`.
    """
    parts = []
    for _, rows in cells[cells["status"] == "finished"].groupby("dataset", sort=False):
        train_h = rows["train_s"].astype(float) / 3600
        values = pd.DataFrame({
            "train h": train_h,
            "img/s": rows["images_per_s"].astype(float),
            "peak GB": rows[memory_column(rows)].astype(float) / 1024,
            "params M": rows["params"].astype(float) / 1e6,
            DEVICE_HOURS: train_h * rows["world_size"].astype(float),
        })  # fmt: skip
        wide = pd.concat([rows[list(IDENTITY)], values], axis=1).assign(category=MEAN)
        parts.append(wide.melt(id_vars=[*IDENTITY, "category"], var_name="metric"))
    columns = [*IDENTITY, "category", "metric", "value"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]
