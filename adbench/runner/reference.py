"""Published reference rows: the numbers papers report, to show next to a measured leaderboard.

The rows shipped with adbench are package data, ``adbench/runner/published/*.yaml``, found with
`importlib.resources` (so an installed wheel has them too). Each file holds ``rows:``, a list of
mappings, each checked by `adbench.config.from_dict` against `ReferenceRow`::

    rows:
      - method: Dinomaly
        dataset: mvtec
        k: 15
        protocol: dinomaly          # a name of adbench.protocols.PROTOCOLS, or null
        setting: multi-class unified, ViT-B/14 DINOv2-R, 392 px crop of 448
        metrics: {I-AUROC: 99.6, P-AUROC: 98.4, AUPRO: 94.8}
        authors: [Jia Guo, Shuai Lu, Weihang Zhang, Fang Chen, Huiqi Li, Hongen Liao]
        venue: CVPR 2025
        arxiv: "2405.14325v5"       # quoted: 2503.02424 alone would read as a number
        table: Table 1
        seeds: null                 # not stated by the paper
        notes: ...                  # optional

`adbench.runner.reference_compare` shows a row beside the measured numbers of the same method,
with the difference, where the protocol, the dataset and k agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from adbench.config import from_dict
from adbench.errors import ConfigError, InvalidInputError, unknown_name
from adbench.protocols import PROTOCOLS
from adbench.runner.tables import metric_order

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PACKAGE_DATA = "published"  # the folder of shipped rows inside the adbench.runner package
REFERENCE_COLUMNS = (
    "dataset",
    "k",
    "method",
    "metric",
    "value",
    "protocol",
    "setting",
    "source",
)
ARXIV_ID = re.compile(r"\d{4}\.\d{4,5}(v\d+)?")  # e.g. 2405.14325v5 (the version where known)


@dataclass(frozen=True)
class ReferenceRow:
    """One published result.

    Attributes:
        method: the method's name as its paper prints it (e.g. ``Dinomaly``).
        dataset: the adbench dataset name the row belongs to (``mvtec``, ``visa``, ...).
        k: the number of categories of the unified model.
        protocol: the name of the evaluation protocol the paper's numbers follow (a key of
            `adbench.protocols.PROTOCOLS`), or None when it is not known.
        setting: how the paper trained and tested (setting, backbone, resolution), free text.
        metrics: metric name (one of `adbench.runner.tables.metric_order`) -> value in %.
        authors: the paper's authors, in its order.
        venue: where it was published, with the year (``CVPR 2025``).
        table: the paper's table the values come from (``Table 1``).
        arxiv: the arXiv identifier, with its version where known (``2405.14325v5``).
        seeds: the seeds the paper reports over; None when it does not state them.
        notes: anything a reader of the numbers should know.
    """

    method: str
    dataset: str
    k: int
    protocol: str | None
    setting: str
    metrics: dict[str, float]
    authors: tuple[str, ...]
    venue: str
    table: str
    arxiv: str | None = None
    seeds: tuple[int, ...] | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        # `from_dict` re-raises these as a ConfigError naming the file and row
        if self.k < 1:
            raise InvalidInputError(f"k must be a positive number of categories, got {self.k}")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise InvalidInputError(str(unknown_name("protocol", self.protocol, PROTOCOLS)))
        if not self.metrics:
            raise InvalidInputError("'metrics' must map metric names to values in %")
        for key in ("method", "dataset", "setting", "venue", "table"):
            if not getattr(self, key).strip():
                raise InvalidInputError(f"'{key}' must not be empty")
        if not self.authors or not all(name.strip() for name in self.authors):
            raise InvalidInputError("'authors' must list the paper's authors")
        if self.arxiv is not None and not ARXIV_ID.fullmatch(self.arxiv):
            raise InvalidInputError(
                f"arxiv = {self.arxiv!r} is not an arXiv identifier such as 2405.14325v5"
            )
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

    @property
    def source(self) -> str:
        """The short citation: ``Guo et al., CVPR 2025, arXiv:2405.14325v5, Table 1``."""
        surnames = [name.split()[-1] for name in self.authors]
        who = surnames[0] + (
            "" if len(surnames) == 1 else f" and {surnames[1]}" if len(surnames) == 2 else " et al."
        )
        arxiv = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f"{who}, {self.venue}{arxiv}, {self.table}"


def shipped_reference() -> Traversable:
    """The folder of published rows shipped inside the adbench package."""
    return resources.files("adbench.runner").joinpath(PACKAGE_DATA)


def load_reference(source: str | Path | None = None) -> pd.DataFrame:
    """Published reference rows from a YAML file or a folder of them.

    The default is the shipped ones (`shipped_reference`).

    Returns:
        Columns `REFERENCE_COLUMNS`, one row per (row, metric); ``value`` is a fraction (as in the
        measured results), ``protocol`` a protocol name or None, ``source`` the row's citation.

    Raises:
        ConfigError: a missing file or folder, a file without rows, a missing or unknown key, an
            unknown protocol or metric, or a value outside [0, 100], naming the file and row.
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
                    "setting": row.setting,
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
