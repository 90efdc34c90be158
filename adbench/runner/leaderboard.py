"""Leaderboards: per dataset, methods x metrics (mean over seeds with the spread), per-category
breakdowns, the best value in bold; rendered as Markdown, LaTeX or CSV.

Values are shown in percent. The spread is the sample standard deviation over seeds (shown
only with two or more seeds). A dataset's table uses its largest category count ``k`` unless
another ``k`` is asked for. The cost columns of `adbench.runner.costs` (mean over seeds, never
bold) follow the metrics, by default in Markdown only. The per-GPU-hour view (`cost_ranking`)
ranks methods by a metric's mean (in %) divided by the mean device-hours of training.

Published reference rows (`load_reference`, ``benchmarks/reference/*.yaml``) are the numbers
papers report. With ``reference=`` they are shown in their own table under each measured
dataset's table, each method marked "(published)" with its source; they are never ranked, never
bold and never compared with the measured rows.

With ``stats=True`` (CLI ``--stats``) each cell also shows a 95 % bootstrap interval, and paired
tests, degradation slopes and average ranks follow (`adbench.runner.stats`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from adbench.errors import ConfigError, unknown_name
from adbench.protocol import RANKED_FIELDS, differing_fields
from adbench.runner.costs import COSTS, DEVICE_HOURS, cost_results, device_unit, memory_column
from adbench.runner.stats import (
    average_ranks,
    confidence_intervals,
    degradation_slopes,
    paired_test,
)
from adbench.runner.store import load_cells, load_results

FORMATS = ("md", "latex", "csv")
MEAN = "mean"
PUBLISHED = " (published)"
REFERENCE_COLUMNS = ("dataset", "k", "method", "metric", "value", "protocol", "source")
REFERENCE_KEYS = ("method", "dataset", "k", "protocol", "metrics", "source")
RANKING_COLUMNS = ("dataset", "k", "method", "metric", "value", "device_hours",
                   "per_device_hour", "unit", "n_seeds")


def _metric_order() -> list[str]:
    from adbench.metrics import COLUMNS, OBJECT_METRICS

    return [*COLUMNS, *OBJECT_METRICS]


def significant(value: float, figures: int = 3) -> str:
    """``value`` with ``figures`` significant digits in fixed-point notation (at most 8
    decimals); NaN -> ``-``."""
    if np.isnan(value):
        return "-"
    magnitude = int(np.floor(np.log10(abs(value)))) if value else 0
    return f"{value:.{min(max(figures - 1 - magnitude, 0), 8)}f}"


def default_reference_dir() -> Path:
    """``benchmarks/reference`` of the source checkout (the published rows shipped with adbench)."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "reference"


def load_reference(source: str | Path | None = None) -> pd.DataFrame:
    """Published reference rows from a YAML file or a folder of them (default: the shipped ones).

    Each file holds ``rows:``, a list of mappings with ``method, dataset, k, protocol, metrics``
    (metric name -> value in %) and ``source`` (paper and table).

    Returns:
        Columns `REFERENCE_COLUMNS`; ``value`` is a fraction (as in the measured results).

    Raises:
        ConfigError: missing file or folder, a missing or unknown key, an unknown metric or a
            value outside [0, 100], naming the file and row.
    """
    path = Path(source) if source is not None else default_reference_dir()
    if path.is_dir():
        files = sorted(path.glob("*.yaml"))
        if not files:
            raise ConfigError(f"reference folder {path} holds no *.yaml files")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"reference rows: {path} is neither a YAML file nor a folder")
    order = _metric_order()
    records = []
    for file in files:
        data = yaml.safe_load(file.read_text()) or {}
        rows = data.get("rows") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows:
            raise ConfigError(f"{file}: expected a non-empty list under 'rows:'")
        for i, row in enumerate(rows):
            where = f"{file} row {i}"
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: expected a mapping, got {type(row).__name__}")
            missing = [key for key in REFERENCE_KEYS if key not in row]
            if missing:
                raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
            extra = sorted(set(row) - set(REFERENCE_KEYS))
            if extra:
                raise unknown_name(f"key of {where}", extra[0], REFERENCE_KEYS)
            if not isinstance(row["metrics"], dict) or not row["metrics"]:
                raise ConfigError(f"{where}: 'metrics' must map metric names to values in %")
            if not str(row["source"]).strip():
                raise ConfigError(f"{where}: 'source' must name the paper and table")
            for metric, value in row["metrics"].items():
                if metric not in order:
                    raise unknown_name(f"metric of {where}", metric, order)
                if not isinstance(value, int | float) or not 0 <= value <= 100:
                    raise ConfigError(f"{where}: {metric} = {value!r} is not a percentage in "
                                      "[0, 100]")
                records.append({"dataset": str(row["dataset"]), "k": int(row["k"]),
                                "method": str(row["method"]), "metric": metric,
                                "value": float(value) / 100, "protocol": str(row["protocol"]),
                                "source": str(row["source"])})
    return pd.DataFrame.from_records(records, columns=list(REFERENCE_COLUMNS))


def check_protocols(results: pd.DataFrame, split: bool = False) -> pd.DataFrame:
    """Refuse to rank together the cells of a (dataset, k) measured under protocols that differ
    in a ranked field (`adbench.protocol.RANKED_FIELDS`), with an error naming the fields; with
    ``split``, rename each protocol's dataset ``"<dataset> (<field>=<value>, ...)"`` so that it
    gets a table of its own. Rows without a protocol (measured before cards) are not checked.
    """
    if "protocol" not in results.columns:
        return results
    keyed = results[results["protocol"].fillna("") != ""]
    renamed = results.copy()
    for (dataset, k), rows in keyed.groupby(["dataset", "k"], sort=False):
        keys = list(dict.fromkeys(rows["protocol"]))
        if len(keys) < 2:
            continue
        cards = [json.loads(key) for key in keys]
        fields = [f for f in RANKED_FIELDS if any(f in differing_fields(cards[0], c)
                                                  for c in cards[1:])]
        if not split:
            seen = "; ".join(", ".join(f"{f}={_short(c[f])}" for f in fields) for c in cards)
            raise ConfigError(
                f"dataset '{dataset}' at k={k} holds cells measured under different evaluation "
                f"protocols, which differ in {', '.join(fields)} ({seen}); they cannot be ranked "
                "together: rank them apart with split_protocols=True (CLI --split-protocols)")
        for key, card in zip(keys, cards, strict=True):
            where = ((renamed["dataset"] == dataset) & (renamed["k"] == k)
                     & (renamed["protocol"] == key))
            tag = ", ".join(f"{f}={_short(card[f])}" for f in fields)
            renamed.loc[where, "dataset"] = f"{dataset} ({tag})"
    return renamed


def _short(value: object) -> str:
    if isinstance(value, list):
        return f"[{len(value)} items]"
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."


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


def cost_ranking(summary: pd.DataFrame, cells: pd.DataFrame, metric: str = "I-AUROC"
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
    known = [m for m in _metric_order() if m in set(means["metric"])]
    if metric not in known:
        raise unknown_name("metric", metric, known)
    parts = []
    for dataset, rows in means.groupby("dataset", sort=False):
        wide = rows.pivot(index="method", columns="metric", values="mean")
        seeds = rows[rows["metric"] == metric].set_index("method")["n_seeds"]
        frame = pd.DataFrame({"dataset": dataset, "k": int(rows["k"].iloc[0]), "metric": metric,
                              "value": 100 * wide[metric], "device_hours": wide[DEVICE_HOURS]})
        frame["per_device_hour"] = frame["value"] / frame["device_hours"].where(
            frame["device_hours"] > 0)
        frame["unit"] = device_unit(cells[cells["dataset"] == dataset])
        frame["n_seeds"] = seeds.reindex(frame.index)
        parts.append(frame.rename_axis("method").reset_index()
                     .sort_values("per_device_hour", ascending=False, kind="stable"))
    return pd.concat(parts, ignore_index=True)[list(RANKING_COLUMNS)]


def leaderboard(source: str | Path | pd.DataFrame, fmt: str = "md", k: int | None = None,
                per_category: Sequence[str] = ("I-AUROC", "P-AUROC"), digits: int = 1,
                cost: bool | None = None, cells: pd.DataFrame | None = None,
                per_gpu_hour: str | None = None,
                reference: str | Path | pd.DataFrame | bool | None = None,
                stats: bool = False, split_protocols: bool = False) -> str:
    """Render the leaderboard of a run directory (or of a `load_results` table).

    Args:
        source: run directory, or the tidy results table.
        fmt: "md", "latex" or "csv" (the `summarize` table).
        k: category count to tabulate (default: each dataset's largest).
        per_category: metrics that also get a category x method breakdown.
        digits: decimals of the percentages.
        cost: show the cost columns ``train h, img/s, peak GB, params M`` (in CSV: add their
            rows); default: in Markdown only.
        cells: the `load_cells` table, needed for costs when ``source`` is a results table.
        per_gpu_hour: render only the ranking of methods by this metric per GPU-hour (per
            device-hour for runs not on GPUs) of training, see `cost_ranking`.
        reference: published rows to show under each measured dataset's table (marked
            "(published)", with their sources, never ranked): a YAML file or folder, a
            `load_reference` table, or True for the shipped ``benchmarks/reference``. In CSV
            they are appended with ``category = mean``, ``published = True`` and ``source``.
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
    results = source if isinstance(source, pd.DataFrame) else load_results(source)
    results = check_protocols(results, split=split_protocols)
    show_cost = fmt == "md" if cost is None else cost
    if (show_cost or per_gpu_hour is not None) and cells is None:
        if not isinstance(source, pd.DataFrame):
            cells = load_cells(source)
        elif cost is None and per_gpu_hour is None:
            show_cost = False  # the default for a bare results table: no costs to show
        else:
            raise ConfigError("cost columns and the per-GPU-hour view need the cells table: "
                              "pass a run directory, or cells=load_cells(DIR)")
    if cells is not None and (show_cost or per_gpu_hour is not None):
        results = pd.concat([results, cost_results(cells)], ignore_index=True)
    summary = summarize(results, k)
    intervals = confidence_intervals(results, k) if stats else None
    published = None
    if reference is not None and reference is not False:
        if isinstance(reference, pd.DataFrame):
            published = reference
        else:
            published = load_reference(None if reference is True else reference)
    if per_gpu_hour is not None:
        ranking = cost_ranking(summary, cells, per_gpu_hour)
        return ranking.to_csv(index=False) if fmt == "csv" else _ranking_text(ranking, fmt,
                                                                               digits)
    if fmt == "csv":
        if intervals is not None:
            bounds = intervals[["dataset", "k", "method", "metric", "ci_low", "ci_high"]]
            summary = summary.merge(bounds.assign(category=MEAN), how="left",
                                    on=["dataset", "k", "method", "category", "metric"])
        if published is None:
            return summary.to_csv(index=False)
        rows = published.rename(columns={"value": "mean"}).assign(
            category=MEAN, std=np.nan, n_seeds=np.nan, published=True)
        rows["method"] = rows["method"] + PUBLISHED
        both = pd.concat([summary.assign(published=False, protocol=np.nan, source=np.nan), rows],
                         ignore_index=True)
        return both[[*summary.columns, "published", "protocol", "source"]].to_csv(index=False)
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
        ranked_by = SUMMARY if SUMMARY in table["mean"] else table["mean"].columns[-1]
        table = table.sort_values(("mean", ranked_by), ascending=False)
        title = (f"{dataset}: k = {k_used} categories; values in %, "
                 + (f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"))
        text = _cells(table, digits, best_by="column")
        if intervals is not None:
            text = _with_intervals(text, intervals[intervals["dataset"] == dataset], digits)
            title += "; [95 % bootstrap interval over seeds x categories]"
        if show_cost:
            costs = means[means["metric"].isin(COSTS)].pivot(index="method", columns="metric",
                                                             values="mean")
            text = text.join(costs.reindex(index=table.index, columns=list(COSTS))
                             .map(significant))
            gpu = memory_column(cells[cells["dataset"] == dataset]) == "peak_gpu_mb"
            title += f"; costs: mean over seeds, peak GB of {'GPU' if gpu else 'CPU'} memory"
        blocks.append(render(title, text, "method"))
        if published is not None:
            block = _reference_block(published, str(dataset), list(table["mean"].columns),
                                     digits, render)
            if block:
                blocks.append(block)
        if stats:
            blocks += _stats_blocks(results, str(dataset), k_used, list(table.index),
                                    ranked_by, render)
        for metric in per_category:
            per = rows[(rows["category"] != MEAN) & (rows["metric"] == metric)]
            if per.empty:
                continue
            methods = list(table.index)
            breakdown = _pivot(per, "category", "method", methods)
            blocks.append(render(f"{dataset}: {metric} per category (%)",
                                 _cells(breakdown, digits, best_by="row", spread=False),
                                 "category"))
    if stats:
        blocks += _rank_block(results, SUMMARY if SUMMARY in set(results["metric"]) else
                              order[0], render)
    return "\n\n".join(blocks) + "\n"


def _with_intervals(text: pd.DataFrame, intervals: pd.DataFrame, digits: int) -> pd.DataFrame:
    """``text`` cells followed by `` [low, high]`` (in %) where an interval exists."""
    bounds = intervals.set_index(["method", "metric"])
    text = text.copy()
    for method in text.index:
        for metric in text.columns:
            if (method, metric) not in bounds.index or text.at[method, metric] == "-":
                continue
            low, high = bounds.loc[(method, metric), ["ci_low", "ci_high"]]
            if np.isfinite(low):
                text.at[method, metric] += f" [{100 * low:.{digits}f}, {100 * high:.{digits}f}]"
    return text


def _stats_blocks(results: pd.DataFrame, dataset: str, k: int, methods: list[str], metric: str,
                  render: Callable[[str, pd.DataFrame, str], str]) -> list[str]:
    """The paired tests of the leader against the others, and the degradation slopes."""
    blocks = []
    rows = results[results["dataset"] == dataset]
    tests = []
    for other in methods[1:]:
        try:
            tests.append(paired_test(rows, methods[0], other, metric, k=k))
        except ConfigError:  # too few pairs with a difference: no test to show
            continue
    if tests:
        text = pd.DataFrame({
            "pairs": [str(t["n_pairs"]) for t in tests],
            "median difference (points)": [f"{100 * t['median_difference']:+.2f}" for t in tests],
            "W": [f"{t['statistic']:.1f}" for t in tests],
            "p": [f"{t['p_value']:.3g}" for t in tests],
            "effect size r": [f"{t['effect_size']:+.2f}" for t in tests],
        }, index=[f"{methods[0]} vs {t['second']}" for t in tests])
        blocks.append(render(f"{dataset}: paired Wilcoxon signed-rank tests of {metric} over "
                             f"categories x seeds at k = {k} (r: rank-biserial, +1 = the leader "
                             "wins every pair)", text, "comparison"))
    if rows["k"].nunique() >= 2:
        slopes = degradation_slopes(rows, metric).set_index("method").reindex(methods)
        text = pd.DataFrame({
            "points per doubling of k": [_slope_text(row) for _, row in slopes.iterrows()],
            "k": [f"{row.k_min:.0f}-{row.k_max:.0f}" for _, row in slopes.iterrows()],
            "points": slopes["n_points"].map(lambda n: f"{n:.0f}"),
        }, index=slopes.index)
        blocks.append(render(f"{dataset}: degradation slope of {metric} (change in points per "
                             "doubling of k, least squares over seeds, [95 % interval])", text,
                             "method"))
    return blocks


def _slope_text(row: pd.Series) -> str:
    if not np.isfinite(row["slope"]):
        return "-"
    text = f"{100 * row['slope']:+.2f}"
    if np.isfinite(row["ci_low"]):
        text += f" [{100 * row['ci_low']:+.2f}, {100 * row['ci_high']:+.2f}]"
    return text


def _rank_block(results: pd.DataFrame, metric: str,
                render: Callable[[str, pd.DataFrame, str], str]) -> list[str]:
    """Average ranks over every (dataset, k) block, when there are two or more."""
    try:
        ranks, summary = average_ranks(results, metric)
    except ConfigError:
        return []
    if summary["n_blocks"] < 2:
        return []
    text = pd.DataFrame({"average rank": ranks["average_rank"].map(lambda v: f"{v:.2f}").values},
                        index=ranks["method"])
    friedman = ("" if np.isnan(summary["friedman_p"]) else
                f", Friedman p = {summary['friedman_p']:.3g}")
    return [render(f"average rank by {metric} over {summary['n_blocks']} (dataset, k) blocks "
                   f"(1 = best{friedman}, Nemenyi critical difference "
                   f"{summary['critical_difference']:.2f})", text, "method")]


def _reference_block(published: pd.DataFrame, dataset: str, metrics: list[str], digits: int,
                     render: Callable[[str, pd.DataFrame, str], str]) -> str:
    """The published rows of ``dataset`` as their own table (not ranked, nothing bold)."""
    rows = published[published["dataset"] == dataset]
    if rows.empty:
        return ""
    order = _metric_order()
    columns = list(dict.fromkeys([*metrics, *[m for m in order if m in set(rows["metric"])]]))
    columns = [m for m in order if m in columns]
    keys = ["method", "k", "source"]
    wide = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="first",
                            sort=False)
    text = pd.DataFrame("-", index=range(len(wide)), columns=[*columns, "k", "source"])
    names = []
    for i, ((method, k, source), values) in enumerate(wide.iterrows()):
        names.append(method + PUBLISHED)
        for metric in columns:
            value = values.get(metric, np.nan)
            if not np.isnan(value):
                text.at[i, metric] = f"{100 * value:.{digits}f}"
        text.at[i, "k"], text.at[i, "source"] = str(k), source
    text.index = names
    title = (f"{dataset}: published reference rows (reported by their papers, not measured "
             "here, not ranked); values in %")
    return render(title, text, "method")


def _ranking_text(ranking: pd.DataFrame, fmt: str, digits: int) -> str:
    """Markdown or LaTeX tables of `cost_ranking`, one per dataset."""
    render = _markdown if fmt == "md" else _latex
    blocks = []
    for dataset, rows in ranking.groupby("dataset", sort=False):
        metric, unit = rows["metric"].iloc[0], rows["unit"].iloc[0]
        seeds = int(rows["n_seeds"].max())
        per_hour = rows["per_device_hour"].map(significant)
        best = rows["per_device_hour"].notna() & (per_hour == per_hour.iloc[0]) & (len(rows) > 1)
        text = pd.DataFrame({
            f"{metric} (%)": rows["value"].map(lambda v: "-" if np.isnan(v) else f"{v:.{digits}f}"),
            f"train {unit}-h": rows["device_hours"].map(significant),
            f"{metric} per {unit}-h": per_hour.where(~best, "**" + per_hour + "**"),
        }).set_axis(rows["method"])  # fmt: skip
        title = (f"{dataset}: k = {int(rows['k'].iloc[0])} categories; {metric} (%) per "
                 f"{unit}-hour of training (hours x processes), mean over "
                 + (f"{seeds} seeds" if seeds > 1 else "1 seed"))
        blocks.append(render(title, text, "method"))
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
