"""Published reference rows: the numbers papers report, to show next to a measured leaderboard.

The rows shipped with adbench are package data, ``adbench/runner/published/*.yaml``, found with
`importlib.resources` (so an installed wheel has them too). Each file holds ``rows:``, a list of
mappings, each checked by `adbench.config.from_dict` against `ReferenceRow`::

    rows:
      - method: Dinomaly
        dataset: mvtec
        k: 15
        protocol: multi-class unified, 392 px centre crop, ViT-B/14 DINOv2-R
        metrics: {I-AUROC: 99.6, P-AUROC: 98.4, AUPRO: 94.8}
        source: Guo et al., CVPR 2025 (arXiv:2405.14325), MVTec AD multi-class table
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from adbench.config import from_dict
from adbench.errors import ConfigError, InvalidInputError, unknown_name
from adbench.runner.tables import metric_order

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PACKAGE_DATA = "published"  # the folder of shipped rows inside the adbench.runner package
REFERENCE_COLUMNS = ("dataset", "k", "method", "metric", "value", "protocol", "source")


@dataclass(frozen=True)
class ReferenceRow:
    """One published result.

    Attributes:
        method: the method's name as its paper prints it (e.g. ``Dinomaly``).
        dataset: the adbench dataset name the row belongs to (``mvtec``, ``visa``, ...).
        k: the number of categories of the unified model.
        protocol: how the paper evaluated (setting, resolution, backbone).
        metrics: metric name (one of `adbench.runner.tables.metric_order`) -> value in %.
        source: the paper and the table the values come from.
    """

    method: str
    dataset: str
    k: int
    protocol: str
    metrics: dict[str, float]
    source: str

    def __post_init__(self) -> None:
        # `from_dict` re-raises these as a ConfigError naming the file and row
        if self.k < 1:
            raise InvalidInputError(f"k must be a positive number of categories, got {self.k}")
        if not self.metrics:
            raise InvalidInputError("'metrics' must map metric names to values in %")
        if not self.source.strip():
            raise InvalidInputError("'source' must name the paper and table")
        order = metric_order()
        for metric, value in self.metrics.items():
            if metric not in order:
                raise InvalidInputError(str(unknown_name("metric", str(metric), order)))
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value <= 100
            ):
                raise InvalidInputError(f"{metric} = {value!r} is not a percentage in [0, 100]")


def shipped_reference() -> Traversable:
    """The folder of published rows shipped inside the adbench package."""
    return resources.files("adbench.runner").joinpath(PACKAGE_DATA)


def load_reference(source: str | Path | None = None) -> pd.DataFrame:
    """Published reference rows from a YAML file or a folder of them.

    The default is the shipped ones (`shipped_reference`).

    Returns:
        Columns `REFERENCE_COLUMNS`, one row per (row, metric); ``value`` is a fraction (as in the
        measured results).

    Raises:
        ConfigError: a missing file or folder, a file without rows, a missing or unknown key, an
            unknown metric or a value outside [0, 100], naming the file and row.
    """
    path = shipped_reference() if source is None else Path(source)
    if path.is_dir():
        files = sorted(
            (f for f in path.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name
        )
        if not files:
            raise ConfigError(f"reference folder {path} holds no *.yaml files")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"reference rows: {path} is neither a YAML file nor a folder")
    records = []
    for file in files:
        for row in _rows(file):
            records += [
                {
                    "dataset": row.dataset,
                    "k": row.k,
                    "method": row.method,
                    "metric": metric,
                    "value": float(value) / 100,
                    "protocol": row.protocol,
                    "source": row.source,
                }
                for metric, value in row.metrics.items()
            ]
    return pd.DataFrame.from_records(records, columns=list(REFERENCE_COLUMNS))


def _rows(file: Path | Traversable) -> list[ReferenceRow]:
    """The checked rows of one YAML file."""
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{file}: not valid YAML: {err}") from err
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{file}: expected a non-empty list under 'rows:'")
    return [from_dict(ReferenceRow, row, context=f"{file} row {i}") for i, row in enumerate(rows)]
