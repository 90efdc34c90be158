"""MetricTable: mAD, the NaN-aware mean row, layouts and round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adbench.errors import InvalidInputError
from adbench.metrics import COLUMNS, METRICS, MetricTable


def _values() -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(0)
    values = {name: dict(zip(METRICS, rng.random(7), strict=True)) for name in ("a", "b", "c")}
    values["c"]["I-AUROC"] = float("nan")
    return values


def test_columns_rows_and_mad() -> None:
    values = _values()
    frame = MetricTable.from_values(values).to_frame()
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame.index) == ["a", "b", "c", "mean"]
    assert frame.index.name == "category"
    assert frame.loc["a", "mAD"] == pytest.approx(np.mean(list(values["a"].values())))
    assert np.isnan(frame.loc["c", "mAD"])  # one undefined metric: no mAD for the row
    # the mean row averages each metric where it is defined, and its mAD is their mean
    assert frame.loc["mean", "I-AUROC"] == pytest.approx(
        (values["a"]["I-AUROC"] + values["b"]["I-AUROC"]) / 2
    )
    assert frame.loc["mean", "P-AP"] == pytest.approx(np.mean([v["P-AP"] for v in values.values()]))
    assert frame.loc["mean", "mAD"] == pytest.approx(frame.loc["mean", list(METRICS)].mean())


def test_metric_undefined_everywhere_stays_nan() -> None:
    values = _values()
    for row in values.values():
        row["AUPRO"] = float("nan")
    frame = MetricTable.from_values(values).to_frame()
    assert np.isnan(frame.loc["mean", "AUPRO"]) and np.isnan(frame.loc["mean", "mAD"])


def test_round_trips() -> None:
    table = MetricTable.from_values(_values())
    assert MetricTable.from_frame(table.to_frame()) == table
    assert MetricTable.from_long(table.to_long()) == table
    assert MetricTable.from_frame(table.to_frame().drop(columns="mAD").drop(index="mean")) == table
    long = table.to_long()
    assert list(long.columns) == ["category", "metric", "value"]
    assert len(long) == 4 * 8
    assert list(long["category"].unique()) == ["a", "b", "c", "mean"]


def test_to_frame_is_a_copy() -> None:
    table = MetricTable.from_values(_values())
    frame = table.to_frame()
    frame.loc["a", "AUPRO"] = -1.0
    assert table.frame.loc["a", "AUPRO"] != -1.0


def test_markdown_in_percent() -> None:
    text = MetricTable.from_values({"a": dict.fromkeys(METRICS, 0.98765)}).to_markdown()
    lines = text.splitlines()
    assert lines[0] == "| category | " + " | ".join(COLUMNS) + " |"
    assert lines[2] == "| a | " + " | ".join(["98.8"] * 8) + " |"
    nan = MetricTable.from_values({"a": dict.fromkeys(METRICS, float("nan"))}).to_markdown()
    assert "| a | - |" in nan
    assert str(MetricTable.from_values({"a": dict.fromkeys(METRICS, 0.5)})).startswith("| category")


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(InvalidInputError, match="'a' lacks the metrics AUPRO"):
        MetricTable.from_values({"a": {m: 0.5 for m in METRICS if m != "AUPRO"}})
    with pytest.raises(InvalidInputError, match="reserved"):
        MetricTable.from_values({"mean": dict.fromkeys(METRICS, 0.5)})
    with pytest.raises(InvalidInputError, match="P-AP"):
        MetricTable.from_frame(pd.DataFrame({"I-AUROC": [0.5]}))
    with pytest.raises(InvalidInputError, match="value"):
        MetricTable.from_long(pd.DataFrame({"category": ["a"], "metric": ["AUPRO"]}))
