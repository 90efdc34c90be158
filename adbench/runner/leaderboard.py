"""Leaderboards: per dataset, methods x metrics (mean over seeds with the spread), per-category
breakdowns, the best value in bold; rendered as Markdown, LaTeX or CSV.

Values are shown in percent. The spread is the sample standard deviation over seeds (shown
only with two or more seeds). A dataset's table uses its largest category count ``k`` unless
another ``k`` is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from adbench.errors import ConfigError, unknown_name
from adbench.runner.store import load_results

FORMATS = ("md", "latex", "csv")
MEAN = "mean"


def _metric_order() -> list[str]:
    from adbench.metrics import COLUMNS

    return list(COLUMNS)


def summarize(results: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Mean, std and seed count per (dataset, k, method, category, metric).

    Args:
        results: the tidy table of `load_results`.
        k: the category count to keep; None keeps each dataset's largest.

    Returns:
        Columns ``dataset, k, method, category, metric, mean, std, n_seeds``.
    """
    if results.empty:
        raise ConfigError("no finished cells to summarise")
    parts = []
    for dataset, rows in results.groupby("dataset", sort=False):
        available = sorted(rows["k"].unique())
        chosen = max(available) if k is None else k
        if chosen not in available:
            raise ConfigError(f"dataset '{dataset}' has no results for k={k}; available: "
                              f"{', '.join(map(str, available))}")
        parts.append(rows[rows["k"] == chosen])
    kept = pd.concat(parts)
    grouped = kept.groupby(["dataset", "k", "method", "category", "metric"], sort=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    summary["std"] = summary["std"].where(summary["n_seeds"] > 1)
    return summary


def leaderboard(source: str | Path | pd.DataFrame, fmt: str = "md", k: int | None = None,
                per_category: Sequence[str] = ("I-AUROC", "P-AUROC"), digits: int = 1) -> str:
    """Render the leaderboard of a run directory (or of a `load_results` table).

    Args:
        source: run directory, or the tidy results table.
        fmt: "md", "latex" or "csv" (the `summarize` table).
        k: category count to tabulate (default: each dataset's largest).
        per_category: metrics that also get a category x method breakdown.
        digits: decimals of the percentages.
    """
    if fmt not in FORMATS:
        raise unknown_name("leaderboard format", fmt, FORMATS)
    results = source if isinstance(source, pd.DataFrame) else load_results(source)
    summary = summarize(results, k)
    if fmt == "csv":
        return summary.to_csv(index=False)
    order = _metric_order()
    for metric in per_category:
        if metric not in order:
            raise unknown_name("metric", metric, order)
    render = _markdown if fmt == "md" else _latex
    blocks = []
    for dataset, rows in summary.groupby("dataset", sort=False):
        k_used, seeds = int(rows["k"].iloc[0]), int(rows["n_seeds"].max())
        means = rows[rows["category"] == MEAN]
        table = _pivot(means, "method", "metric", [m for m in order if m in set(means["metric"])])
        table = table.sort_values(("mean", table["mean"].columns[-1]), ascending=False)
        title = (f"{dataset}: k = {k_used} categories; values in %, "
                 + (f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"))
        blocks.append(render(title, _cells(table, digits, best_by="column"), "method"))
        for metric in per_category:
            per = rows[(rows["category"] != MEAN) & (rows["metric"] == metric)]
            if per.empty:
                continue
            methods = list(table.index)
            breakdown = _pivot(per, "category", "method", methods)
            blocks.append(render(f"{dataset}: {metric} per category (%)",
                                 _cells(breakdown, digits, best_by="row", spread=False),
                                 "category"))
    return "\n\n".join(blocks) + "\n"


def _pivot(rows: pd.DataFrame, index: str, columns: str, order: list[str]) -> pd.DataFrame:
    wide = rows.pivot(index=index, columns=columns, values=["mean", "std"])
    wide = wide.reindex(list(dict.fromkeys(rows[index])))
    return wide.reindex(columns=pd.MultiIndex.from_product([["mean", "std"], order]))


def _cells(table: pd.DataFrame, digits: int, best_by: str, spread: bool = True) -> pd.DataFrame:
    """Formatted strings; the best (rounded) mean of each column or row is marked with ``**``
    (ties all marked; nothing is marked when there is only one value to compare)."""
    means = (100 * table["mean"].astype(float)).round(digits)
    stds = 100 * table["std"].astype(float)
    best = means.max(axis=0 if best_by == "column" else 1)
    is_best = means.eq(best, axis=1 if best_by == "column" else 0) & means.notna()
    if means.shape[0 if best_by == "column" else 1] < 2:  # nothing to compare with
        is_best[:] = False
    text = pd.DataFrame("-", index=means.index, columns=means.columns)
    for row in means.index:
        for column in means.columns:
            value = means.at[row, column]
            if np.isnan(value):
                continue
            cell = f"{value:.{digits}f}"
            if spread and not np.isnan(stds.at[row, column]):
                cell += f" ± {stds.at[row, column]:.{digits}f}"
            text.at[row, column] = f"**{cell}**" if is_best.at[row, column] else cell
    return text


def _markdown(title: str, text: pd.DataFrame, corner: str) -> str:
    header = [corner, *map(str, text.columns)]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join([":---", *["---:"] * len(text.columns)]) + "|"]
    lines += ["| " + " | ".join([str(index), *row]) + " |" for index, row in text.iterrows()]
    return "\n".join(lines)


def _latex(title: str, text: pd.DataFrame, corner: str) -> str:
    def escape(value: str) -> str:
        for char in ("\\", "&", "%", "_", "#"):
            value = value.replace(char, "\\" + char)
        return value

    def cell(value: str) -> str:
        bold = value.startswith("**")
        value = escape(value.strip("*")).replace("±", r"$\pm$")
        return rf"\textbf{{{value}}}" if bold else value

    lines = [rf"% {escape(title)}", r"\begin{tabular}{l" + "r" * len(text.columns) + "}",
             r"\toprule", " & ".join([escape(corner), *map(escape, map(str, text.columns))])
             + r" \\", r"\midrule"]
    lines += [" & ".join([escape(str(index)), *map(cell, row)]) + r" \\"
              for index, row in text.iterrows()]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)
