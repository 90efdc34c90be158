"""MetricTable: per-category metrics plus the mean row, as a tidy pandas table.

Values are fractions in [0, 1]. ``mAD`` is the arithmetic mean of the seven metrics of a row; it is
NaN when any of the seven is NaN, so a mAD is always an average of the same seven numbers. The
``mean`` row averages each metric over the categories where it is defined (NaN entries are skipped;
the Evaluator warns about each one), and its mAD is the mean of its seven averages, as the field's
papers compute it. Tables of multi-view datasets also hold the object-level `OBJECT_METRICS`
after mAD (NaN for a category without objects); they are not part of mAD.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from adbench.errors import InvalidInputError

METRICS = ("I-AUROC", "I-AP", "I-F1max", "P-AUROC", "P-AP", "P-F1max", "AUPRO")
SUMMARY = "mAD"
COLUMNS = (*METRICS, SUMMARY)
OBJECT_METRICS = ("S-AUROC", "S-AP", "S-F1max")
MEAN_ROW = "mean"


def _nan_mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


class MetricTable:
    """Per-category metric values with the derived mAD column and mean row.

    Build it with `from_values`, `from_frame` or `from_long`. (A plain class, not a dataclass:
    torchmetrics walks dataclasses returned by ``compute`` and cannot rebuild frozen ones.)

    Args:
        frame: rows = categories then ``"mean"``, columns = `COLUMNS` (then `OBJECT_METRICS` for
            multi-view datasets), index named ``category``, as `from_values` builds it.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    @property
    def frame(self) -> pd.DataFrame:
        """The wide table (not a copy; use `to_frame` for one)."""
        return self._frame

    @classmethod
    def from_values(cls, values: Mapping[str, Mapping[str, float]]) -> MetricTable:
        """Build the table from ``{category: {metric: value}}`` holding the seven `METRICS`.

        When any category also holds `OBJECT_METRICS`, they become columns after mAD (NaN for the
        categories without them).
        """
        objects = any(m in metrics for metrics in values.values() for m in OBJECT_METRICS)
        names = (*METRICS, *OBJECT_METRICS) if objects else METRICS
        rows = {}
        for category, metrics in values.items():
            missing = [m for m in METRICS if m not in metrics]
            if missing:
                raise InvalidInputError(
                    f"category '{category}' lacks the metrics {', '.join(missing)}; a MetricTable "
                    f"needs all of {', '.join(METRICS)}"
                )
            rows[str(category)] = [float(metrics.get(m, np.nan)) for m in names]
        if MEAN_ROW in rows:
            raise InvalidInputError(
                f"'{MEAN_ROW}' is reserved for the mean row; rename that category"
            )
        per_category = np.array(list(rows.values()), dtype=np.float64).reshape(-1, len(names))
        mean = np.array([_nan_mean(column) for column in per_category.T])
        table = np.vstack([per_category, mean])
        index = pd.Index([*rows, MEAN_ROW], name="category")
        frame = pd.DataFrame(table, index=index, columns=list(names))
        frame.insert(len(METRICS), SUMMARY, table[:, : len(METRICS)].mean(axis=1))  # NaN if any is
        return cls(frame)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> MetricTable:
        """Rebuild a table from a frame indexed by category with the seven metric columns.

        A ``mean`` row and a ``mAD`` column, if present, are derived values and are recomputed;
        `OBJECT_METRICS` columns are kept when present.
        """
        missing = [m for m in METRICS if m not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"frame lacks the metric columns {', '.join(missing)}; "
                f"expected {', '.join(COLUMNS)}"
            )
        rows = frame.drop(index=MEAN_ROW, errors="ignore")
        names = [*METRICS, *(m for m in OBJECT_METRICS if m in frame.columns)]
        return cls.from_values({str(k): row for k, row in rows[names].iterrows()})

    @classmethod
    def from_long(cls, long: pd.DataFrame) -> MetricTable:
        """Rebuild a table from the tidy layout of `to_long` (columns category, metric, value)."""
        missing = [c for c in ("category", "metric", "value") if c not in long.columns]
        if missing:
            raise InvalidInputError(
                f"long table lacks the columns {', '.join(missing)}; "
                "expected category, metric, value"
            )
        wide = long.pivot(index="category", columns="metric", values="value")
        order = list(dict.fromkeys(long["category"]))
        return cls.from_frame(wide.loc[order])

    @property
    def categories(self) -> tuple[str, ...]:
        """Category names in row order, without the mean row."""
        return tuple(self.frame.index[:-1])

    @property
    def mean(self) -> pd.Series:
        """The mean row: each metric averaged over categories, and its mAD."""
        return self.frame.loc[MEAN_ROW].copy()

    def to_frame(self) -> pd.DataFrame:
        """A copy of the wide table.

        Index = categories + ``"mean"``, columns = `COLUMNS` (and `OBJECT_METRICS` for
        multi-view datasets).
        """
        return self.frame.copy()

    def to_long(self) -> pd.DataFrame:
        """The tidy table, one row per (category, metric), mean row and mAD included."""
        long = self.frame.reset_index().melt(
            id_vars="category", var_name="metric", value_name="value"
        )
        order = {name: i for i, name in enumerate(self.frame.index)}
        long = long.sort_values("category", key=lambda s: s.map(order), kind="stable")
        return long.reset_index(drop=True)

    def to_markdown(self, digits: int = 1) -> str:
        """A Markdown table in percent with ``digits`` decimals; NaN shows as ``-``."""
        header = ["category", *map(str, self.frame.columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, row in self.frame.iterrows():
            cells = ["-" if np.isnan(v) else f"{100 * v:.{digits}f}" for v in row.to_numpy()]
            lines.append("| " + " | ".join([str(name), *cells]) + " |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        return f"MetricTable(categories={len(self.categories)}, mAD={self.mean[SUMMARY]:.4f})"

    def _repr_html_(self) -> str:
        return self.frame.to_html(float_format=lambda v: f"{100 * v:.1f}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricTable):
            return NotImplemented
        return self.frame.equals(other.frame)

    __hash__ = None  # type: ignore[assignment]
