"""Leaderboards, rendered as Markdown, LaTeX or CSV.

Per dataset, methods x metrics (mean over seeds with the spread) and per-category breakdowns,
the best value in bold.

Values are shown in percent. The spread is the sample standard deviation over seeds (shown
only with two or more seeds). A dataset's table uses its largest category count ``k`` unless
another ``k`` is asked for. The cost columns of `adbench.runner.costs` (mean over seeds, never
bold) follow the metrics, by default in Markdown only. The per-GPU-hour view (`cost_ranking`)
ranks methods by a metric's mean (in %) divided by the mean device-hours of training.

Published reference rows (`adbench.runner.reference.load_reference`) are the numbers papers
report. With ``reference=`` they are shown in their own table under each measured dataset's
table, each method marked "(published)" with its protocol and source; they are never ranked and
never bold. A measured method is shown beside its published row, with the difference, only
under the same protocol, dataset and k (`adbench.runner.reference_compare`).

With ``stats=True`` (CLI ``--stats``) each cell also shows a 95 % bootstrap interval, and paired
tests, degradation slopes and average ranks follow (`adbench.runner.stats`). The text tables
themselves are made in `adbench.runner.tables`.

A method measured with a preset that redesigns it for the CPU is labelled so in every table
(`adbench.runner.variants`), and a row whose mean of the ranked metric is below the naive
detector's at the same k is marked (`adbench.runner.floor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from adbench.errors import ConfigError, unknown_name
from adbench.runner.costs import COSTS, DEVICE_HOURS, cost_results, device_unit, memory_column
from adbench.runner.floor import floor_check, marked, note, with_floor
from adbench.runner.reference import load_reference
from adbench.runner.reference_compare import reference_blocks
from adbench.runner.stats import confidence_intervals
from adbench.runner.store import check_protocols, load_cells, load_results
from adbench.runner.tables import (
    PUBLISHED,
    RENDERERS,
    Renderer,
    format_cells,
    metric_order,
    pivot,
    rank_table,
    ranking_tables,
    significant,
    stats_tables,
    with_intervals,
)
from adbench.runner.variants import with_variants

FORMATS = ("md", "latex", "csv")
MEAN = "mean"
RANKING_COLUMNS = (
    "dataset",
    "k",
    "method",
    "metric",
    "value",
    "device_hours",
    "per_device_hour",
    "unit",
    "n_seeds",
)


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
            raise ConfigError(
                f"dataset '{dataset}' has no results for k={k}; available: "
                f"{', '.join(map(str, available))}"
            )
        parts.append(rows[rows["k"] == chosen])
    kept = pd.concat(parts)
    grouped = kept.groupby(["dataset", "k", "method", "category", "metric"], sort=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    summary["std"] = summary["std"].where(summary["n_seeds"] > 1)
    return summary


def cost_ranking(
    summary: pd.DataFrame, cells: pd.DataFrame, metric: str = "I-AUROC"
) -> pd.DataFrame:
    """Methods ranked by ``metric`` per device-hour of training, per dataset.

    ``per_device_hour`` = (mean over seeds of the metric's mean row, in %) / (mean over seeds of
    the training device-hours, wall-clock hours x processes); NaN when no training time was
    recorded. ``unit`` is "GPU" when every finished cell of the dataset trained on CUDA devices,
    else "device".

    Args:
        summary: `summarize` of the results together with `cost_results`.
        cells: the `load_cells` table.
        metric: the accuracy metric.

    Returns:
        Columns `RANKING_COLUMNS`, best first within each dataset.
    """
    means = summary[summary["category"] == MEAN]
    known = [m for m in metric_order() if m in set(means["metric"])]
    if metric not in known:
        raise unknown_name("metric", metric, known)
    parts = []
    for dataset, rows in means.groupby("dataset", sort=False):
        wide = rows.pivot(index="method", columns="metric", values="mean")
        seeds = rows[rows["metric"] == metric].set_index("method")["n_seeds"]
        frame = pd.DataFrame(
            {
                "dataset": dataset,
                "k": int(rows["k"].iloc[0]),
                "metric": metric,
                "value": 100 * wide[metric],
                "device_hours": wide[DEVICE_HOURS],
            }
        )
        frame["per_device_hour"] = frame["value"] / frame["device_hours"].where(
            frame["device_hours"] > 0
        )
        frame["unit"] = device_unit(cells[cells["dataset"] == dataset])
        frame["n_seeds"] = seeds.reindex(frame.index)
        parts.append(
            frame.rename_axis("method")
            .reset_index()
            .sort_values("per_device_hour", ascending=False, kind="stable")
        )
    return pd.concat(parts, ignore_index=True)[list(RANKING_COLUMNS)]


def leaderboard(
    source: str | Path | pd.DataFrame,
    fmt: str = "md",
    k: int | None = None,
    per_category: Sequence[str] = ("I-AUROC", "P-AUROC"),
    digits: int = 1,
    cost: bool | None = None,
    cells: pd.DataFrame | None = None,
    per_gpu_hour: str | None = None,
    reference: str | Path | pd.DataFrame | bool | None = None,
    stats: bool = False,
    split_protocols: bool = False,
) -> str:
    """Render the leaderboard of a run directory (or of a `load_results` table).

    Args:
        source: run directory, or the tidy results table.
        fmt: "md", "latex" or "csv" (the `summarize` table, with the floor check's column
            ``below_naive``: `adbench.runner.floor.with_floor`).
        k: category count to tabulate (default: each dataset's largest).
        per_category: metrics that also get a category x method breakdown.
        digits: decimals of the percentages.
        cost: show the cost columns ``train h, img/s, peak GB, params M`` (in CSV: add their
            rows); default: in Markdown only.
        cells: the `load_cells` table, needed for costs when ``source`` is a results table.
        per_gpu_hour: render only the ranking of methods by this metric per GPU-hour (per
            device-hour for runs not on GPUs) of training, see `cost_ranking`.
        reference: published rows to show under each measured dataset's table (marked
            "(published)", with their protocols and sources, never ranked; beside a measured
            method with the difference only under the same protocol, dataset and k): a YAML
            file or folder, a `load_reference` table, or True for the rows shipped with adbench.
            In CSV they are appended with ``category = mean``, ``published = True``,
            ``protocol``, ``setting`` and ``source``.
        stats: add a 95 % bootstrap interval to each cell (`confidence_intervals`), a paired
            Wilcoxon test of the leader against every other method, the degradation slope per
            doubling of k where a dataset has 2 or more k values, and the average ranks over
            (dataset, k) blocks with the Friedman test and critical difference
            (`adbench.runner.stats`). In CSV: the columns ``ci_low, ci_high``.
        split_protocols: rank cells measured under different evaluation protocols in separate
            tables (named by the differing fields) instead of refusing (`check_protocols`).
    """
    from adbench.metrics import SUMMARY

    if fmt not in FORMATS:
        raise unknown_name("leaderboard format", fmt, FORMATS)
    results, cells, show_cost = _measured(source, fmt, cost, cells, per_gpu_hour, split_protocols)
    summary = summarize(results, k)
    published = _published(reference)
    if per_gpu_hour is not None:
        ranking = cost_ranking(summary, cells, per_gpu_hour)
        return (
            ranking.to_csv(index=False)
            if fmt == "csv"
            else ranking_tables(ranking, digits, RENDERERS[fmt])
        )
    intervals = confidence_intervals(results, k) if stats else None
    if fmt == "csv":
        return _csv(with_floor(summary, results, metric_order()), intervals, published)
    order = metric_order()
    for metric in per_category:
        if metric not in order:
            raise unknown_name("metric", metric, order)
    board = _Board(
        results, cells, intervals, published, tuple(per_category), digits, show_cost, RENDERERS[fmt]
    )
    blocks = []
    for dataset, rows in summary.groupby("dataset", sort=False):
        blocks += _dataset_blocks(board, str(dataset), rows)
    if stats:
        blocks += rank_table(
            results, SUMMARY if SUMMARY in set(results["metric"]) else order[0], board.render
        )
    return "\n\n".join(blocks) + "\n"


def _measured(
    source: str | Path | pd.DataFrame,
    fmt: str,
    cost: bool | None,
    cells: pd.DataFrame | None,
    per_gpu_hour: str | None,
    split_protocols: bool,
) -> tuple[pd.DataFrame, pd.DataFrame | None, bool]:
    """The checked results, the cells table and whether the cost columns are shown.

    The results include the cost rows when costs are needed; CPU variants are labelled so.
    """
    results = source if isinstance(source, pd.DataFrame) else load_results(source)
    results = with_variants(check_protocols(results, split=split_protocols))
    show_cost = fmt == "md" if cost is None else cost
    if (show_cost or per_gpu_hour is not None) and cells is None:
        if not isinstance(source, pd.DataFrame):
            cells = load_cells(source)
        elif cost is None and per_gpu_hour is None:
            show_cost = False  # the default for a bare results table: no costs to show
        else:
            raise ConfigError(
                "cost columns and the per-GPU-hour view need the cells table: "
                "pass a run directory, or cells=load_cells(DIR)"
            )
    if cells is not None:
        cells = with_variants(cells)
        if show_cost or per_gpu_hour is not None:
            results = pd.concat([results, cost_results(cells)], ignore_index=True)
    return results, cells, show_cost


def _published(reference: str | Path | pd.DataFrame | bool | None) -> pd.DataFrame | None:
    """The published rows asked for by ``reference`` (see `leaderboard`), or None."""
    if reference is None or reference is False:
        return None
    if isinstance(reference, pd.DataFrame):
        return reference
    return load_reference(None if reference is True else reference)


def _csv(
    summary: pd.DataFrame, intervals: pd.DataFrame | None, published: pd.DataFrame | None
) -> str:
    """The `summarize` table as CSV, with the interval columns and the published rows."""
    if intervals is not None:
        bounds = intervals[["dataset", "k", "method", "metric", "ci_low", "ci_high"]]
        summary = summary.merge(
            bounds.assign(category=MEAN),
            how="left",
            on=["dataset", "k", "method", "category", "metric"],
        )
    if published is None:
        return summary.to_csv(index=False)
    rows = published.rename(columns={"value": "mean"}).assign(
        category=MEAN, std=np.nan, n_seeds=np.nan, published=True
    )
    rows["method"] = rows["method"] + PUBLISHED
    extra = ["protocol", "setting", "source"]
    measured = summary.assign(published=False, **dict.fromkeys(extra, np.nan))
    both = pd.concat([measured, rows], ignore_index=True)
    return both[[*summary.columns, "published", *extra]].to_csv(index=False)


@dataclass(frozen=True)
class _Board:
    """What the Markdown or LaTeX tables of every dataset are made from.

    Attributes:
        results: the checked results, with the cost rows when costs are shown.
        cells: the `load_cells` table (None when no costs are shown).
        intervals: `confidence_intervals` of the results; None without ``stats``.
        published: the published reference rows, or None.
        per_category: metrics with a category x method breakdown.
        digits: decimals of the percentages.
        show_cost: whether the cost columns follow the metrics.
        render: `adbench.runner.tables.markdown` or `adbench.runner.tables.latex`.
    """

    results: pd.DataFrame
    cells: pd.DataFrame | None
    intervals: pd.DataFrame | None
    published: pd.DataFrame | None
    per_category: tuple[str, ...]
    digits: int
    show_cost: bool
    render: Renderer


def _dataset_blocks(board: _Board, dataset: str, rows: pd.DataFrame) -> list[str]:
    """The tables of one dataset.

    The measured one, the published rows, the statistics and the per-category breakdowns.
    """
    from adbench.metrics import SUMMARY

    means = rows[rows["category"] == MEAN]
    table = pivot(
        means, "method", "metric", [m for m in metric_order() if m in set(means["metric"])]
    )
    ranked_by = SUMMARY if SUMMARY in table["mean"] else table["mean"].columns[-1]
    table = table.sort_values(("mean", ranked_by), ascending=False)
    methods = list(table.index)
    k_used = int(rows["k"].iloc[0])
    blocks = [_measured_table(board, dataset, rows, table, ranked_by)]
    if board.published is not None:
        means = table["mean"]
        blocks += reference_blocks(
            board.published, board.results, dataset, k_used, means, board.digits, board.render
        )
    if board.intervals is not None:  # stats=True
        blocks += stats_tables(board.results, dataset, k_used, methods, ranked_by, board.render)
    for metric in board.per_category:
        per = rows[(rows["category"] != MEAN) & (rows["metric"] == metric)]
        if per.empty:
            continue
        breakdown = pivot(per, "category", "method", methods)
        blocks.append(
            board.render(
                f"{dataset}: {metric} per category (%)",
                format_cells(breakdown, board.digits, best_by="row", spread=False),
                "category",
            )
        )
    return blocks


def _measured_table(
    board: _Board, dataset: str, rows: pd.DataFrame, table: pd.DataFrame, ranked_by: str
) -> str:
    """The methods x metrics table of one dataset, best first, with intervals and costs.

    Rows below the naive detector's mean of ``ranked_by`` are marked (`adbench.runner.floor`).
    """
    k_used, seeds = int(rows["k"].iloc[0]), int(rows["n_seeds"].max())
    title = f"{dataset}: k = {k_used} categories; values in %, " + (
        f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
    )
    text = format_cells(table, board.digits, best_by="column")
    if board.intervals is not None:
        text = with_intervals(
            text, board.intervals[board.intervals["dataset"] == dataset], board.digits
        )
        title += "; [95 % bootstrap interval over seeds x categories]"
    if board.show_cost:
        means = rows[rows["category"] == MEAN]
        costs = means[means["metric"].isin(COSTS)].pivot(
            index="method", columns="metric", values="mean"
        )
        text = text.join(costs.reindex(index=table.index, columns=list(COSTS)).map(significant))
        gpu = memory_column(board.cells[board.cells["dataset"] == dataset]) == "peak_gpu_mb"
        title += f"; costs: mean over seeds, peak GB of {'GPU' if gpu else 'CPU'} memory"
    check = floor_check(board.results, ranked_by)
    check = check[(check["dataset"] == dataset) & (check["k"] == k_used)]
    text.index = marked(text.index, check)
    return board.render(f"{title}; {note(check, ranked_by)}", text, "method")
