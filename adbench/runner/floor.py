"""The floor check: the methods that score below the naive detector at the same dataset and k.

The naive detector (registry name `NAIVE`, `adbench.baselines.naive`: the distance to the
nearest per-category mean training image) learns nothing beyond the mean image. A method whose
mean over seeds of a metric (each seed's mean over categories) is below the naive detector's at
the same dataset and k did not learn to beat that floor. The leaderboard marks its row with
`MARK` (in CSV: the column ``below_naive``), the degradation-slope table lists the k at which it
is below, and the scaling figure draws those points hollow. With several naive rows at one
(dataset, k), the floor is the highest of their means; where there is none, the floor is not
checked and `note` says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from adbench.runner.costs import MEAN  # the category of a cell's mean over its categories

NAIVE = "naive"
MARK = "†"
KEYS = ["dataset", "k", "method"]


def floor_check(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (dataset, k, method): the mean over seeds of ``metric`` and whether it is below naive's.

    Args:
        results: a `load_results` table (``name`` is the registry name; without that column
            the label is taken as the name).
        metric: a metric where higher is better (every accuracy metric of adbench).

    Returns:
        Columns ``dataset, k, method, mean, floor, below``: ``floor`` is the naive detector's
        mean at that (dataset, k), NaN where it has no naive row (there ``below`` is False).
    """
    rows = results[(results["category"] == MEAN) & (results["metric"] == metric)]
    means = rows.groupby(KEYS, sort=False)["value"].mean().rename(MEAN).reset_index()
    naive = set(rows.loc[rows["name" if "name" in rows else "method"] == NAIVE, "method"])
    floors = means[means["method"].isin(naive)].groupby(["dataset", "k"])[MEAN].max()
    check = means.join(floors.rename("floor"), on=["dataset", "k"])
    check["below"] = check[MEAN] < check["floor"]
    return check


def note(check: pd.DataFrame, metric: str, mark: str = f"{MARK} =") -> str:
    """One line for a title or legend: what ``mark`` means, and the k not checked (no naive row).

    Args:
        check: `floor_check` rows of one dataset.
        metric: the metric checked.
        mark: the words before "mean <metric> below the naive detector's at the same k".
    """
    missing = sorted({int(k) for k in check.loc[check["floor"].isna(), "k"]})
    parts = []
    if len(missing) < check["k"].nunique():
        parts.append(f"{mark} mean {metric} below the naive detector's at the same k")
    if missing:
        parts.append(f"no naive row at k = {', '.join(map(str, missing))}: floor not checked")
    return "; ".join(parts)


def marked(labels: Iterable[str], check: pd.DataFrame) -> list[str]:
    """``labels`` with `MARK` after each method below the floor in ``check`` (one dataset, k)."""
    below = set(check.loc[check["below"], "method"])
    return [f"{label} {MARK}" if label in below else label for label in labels]


def below_k(check: pd.DataFrame, methods: Sequence[str]) -> list[str]:
    """Per method of ``methods``: the k at which it is below the floor (``"8, 16"``; ``"-"``)."""
    rows = check[check["below"]]
    return [
        ", ".join(map(str, sorted(rows.loc[rows["method"] == m, "k"].astype(int)))) or "-"
        for m in methods
    ]


def with_floor(
    summary: pd.DataFrame, results: pd.DataFrame, metrics: Iterable[str]
) -> pd.DataFrame:
    """``summary`` (`adbench.runner.leaderboard.summarize`) with the column ``below_naive``.

    True or False on the mean rows of ``metrics`` at a (dataset, k) with a naive row; empty on
    every other row.
    """
    checks = [floor_check(results, metric).assign(metric=metric) for metric in metrics]
    flags = pd.concat(checks, ignore_index=True).dropna(subset=["floor"])
    flags = flags.assign(category=MEAN).rename(columns={"below": "below_naive"})
    return summary.merge(
        flags[[*KEYS, "category", "metric", "below_naive"]],
        how="left",
        on=[*KEYS, "category", "metric"],
    )
