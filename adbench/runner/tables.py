"""Text tables of a leaderboard.

Formatted cells (best value in bold) rendered as Markdown or LaTeX, and the blocks built from
them (statistics, the per-GPU-hour ranking; the published rows are
`adbench.runner.reference_compare`'s).

A table is a DataFrame of strings: its index holds the row names, its columns the column
headers; a renderer (`markdown`, `latex`) turns it, a title and the corner header into text.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from adbench.errors import ConfigError
from adbench.runner.floor import MARK, below_k, floor_check, note
from adbench.runner.stats import average_ranks, degradation_slopes, paired_test

PUBLISHED = " (published)"

Renderer = Callable[[str, pd.DataFrame, str], str]


def metric_order() -> list[str]:
    """Every metric name in table order: `adbench.metrics.COLUMNS`, then the object-level ones."""
    from adbench.metrics import COLUMNS, OBJECT_METRICS

    return [*COLUMNS, *OBJECT_METRICS]


def significant(value: float, figures: int = 3) -> str:
    """``value`` with ``figures`` significant digits in fixed-point notation.

    At most 8 decimals; NaN -> ``-``.
    """
    if np.isnan(value):
        return "-"
    magnitude = int(np.floor(np.log10(abs(value)))) if value else 0
    return f"{value:.{min(max(figures - 1 - magnitude, 0), 8)}f}"


def pivot(rows: pd.DataFrame, index: str, columns: str, order: list[str]) -> pd.DataFrame:
    """``mean`` and ``std`` of `summarize` rows as a wide table.

    Columns (``mean``/``std``, x) for x in ``order``, rows in their order of appearance.
    """
    wide = rows.pivot(index=index, columns=columns, values=["mean", "std"])
    wide = wide.reindex(list(dict.fromkeys(rows[index])))
    return wide.reindex(columns=pd.MultiIndex.from_product([["mean", "std"], order]))


def format_cells(
    table: pd.DataFrame, digits: int, best_by: str, spread: bool = True
) -> pd.DataFrame:
    """Formatted strings of a `pivot` table in %.

    The best (rounded) mean of each column (``best_by="column"``) or row (``"row"``) is marked
    with ``**`` (ties all marked; nothing is marked when there is only one value to compare).
    """
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


def with_intervals(text: pd.DataFrame, intervals: pd.DataFrame, digits: int) -> pd.DataFrame:
    """``text`` cells followed by `` [low, high]`` (in %) where an interval exists.

    The intervals are those of `adbench.runner.stats.confidence_intervals`.
    """
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


def stats_tables(
    results: pd.DataFrame, dataset: str, k: int, methods: list[str], metric: str, render: Renderer
) -> list[str]:
    """The paired tests of the leader (``methods[0]``) against the others at ``k``.

    The degradation slopes of ``dataset`` follow when it has two or more k values, with the k at
    which each method's mean is below the naive detector's (`adbench.runner.floor`).
    """
    blocks = []
    rows = results[results["dataset"] == dataset]
    tests = []
    for other in methods[1:]:
        try:
            tests.append(paired_test(rows, methods[0], other, metric, k=k))
        except ConfigError:  # too few pairs with a difference: no test to show
            continue
    if tests:
        text = pd.DataFrame(
            {
                "pairs": [str(t["n_pairs"]) for t in tests],
                "median difference (points)": [
                    f"{100 * t['median_difference']:+.2f}" for t in tests
                ],
                "W": [f"{t['statistic']:.1f}" for t in tests],
                "p": [f"{t['p_value']:.3g}" for t in tests],
                "effect size r": [f"{t['effect_size']:+.2f}" for t in tests],
            },
            index=[f"{methods[0]} vs {t['second']}" for t in tests],
        )
        blocks.append(
            render(
                f"{dataset}: paired Wilcoxon signed-rank tests of {metric} over "
                f"categories x seeds at k = {k} (r: rank-biserial, +1 = the leader "
                "wins every pair)",
                text,
                "comparison",
            )
        )
    if rows["k"].nunique() >= 2:
        slopes = degradation_slopes(rows, metric).set_index("method").reindex(methods)
        check = floor_check(rows, metric)
        text = pd.DataFrame(
            {
                "points per doubling of k": [_slope_text(row) for _, row in slopes.iterrows()],
                "k": [f"{row.k_min:.0f}-{row.k_max:.0f}" for _, row in slopes.iterrows()],
                "points": slopes["n_points"].map(lambda n: f"{n:.0f}"),
                "below naive at k": below_k(check, methods),
            },
            index=slopes.index,
        )
        blocks.append(
            render(
                f"{dataset}: degradation slope of {metric} (change in points per "
                "doubling of k, least squares over seeds, [95 % interval]); "
                + note(check, metric, mark="below naive at k lists the k with"),
                text,
                "method",
            )
        )
    return blocks


def _slope_text(row: pd.Series) -> str:
    if not np.isfinite(row["slope"]):
        return "-"
    text = f"{100 * row['slope']:+.2f}"
    if np.isfinite(row["ci_low"]):
        text += f" [{100 * row['ci_low']:+.2f}, {100 * row['ci_high']:+.2f}]"
    return text


def rank_table(results: pd.DataFrame, metric: str, render: Renderer) -> list[str]:
    """The table of average ranks over every (dataset, k) block.

    It shows the Friedman p and the Nemenyi critical difference
    (`adbench.runner.stats.average_ranks`); no table with fewer than two blocks.
    """
    try:
        ranks, summary = average_ranks(results, metric)
    except ConfigError:
        return []
    if summary["n_blocks"] < 2:
        return []
    text = pd.DataFrame(
        {"average rank": ranks["average_rank"].map(lambda v: f"{v:.2f}").values},
        index=ranks["method"],
    )
    friedman = (
        "" if np.isnan(summary["friedman_p"]) else f", Friedman p = {summary['friedman_p']:.3g}"
    )
    return [
        render(
            f"average rank by {metric} over {summary['n_blocks']} (dataset, k) blocks "
            f"(1 = best{friedman}, Nemenyi critical difference "
            f"{summary['critical_difference']:.2f})",
            text,
            "method",
        )
    ]


def ranking_tables(ranking: pd.DataFrame, digits: int, render: Renderer) -> str:
    """The `adbench.runner.leaderboard.cost_ranking` table, one rendered table per dataset."""
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
        title = (
            f"{dataset}: k = {int(rows['k'].iloc[0])} categories; {metric} (%) per "
            f"{unit}-hour of training (hours x processes), mean over "
            + (f"{seeds} seeds" if seeds > 1 else "1 seed")
        )
        blocks.append(render(title, text, "method"))
    return "\n\n".join(blocks) + "\n"


def markdown(title: str, text: pd.DataFrame, corner: str) -> str:
    """A bold title line and a pipe table (first column left-aligned, the others right)."""
    header = [corner, *map(str, text.columns)]
    lines = [
        f"**{title}**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", *["---:"] * len(text.columns)]) + "|",
    ]
    lines += ["| " + " | ".join([str(index), *row]) + " |" for index, row in text.iterrows()]
    return "\n".join(lines)


def latex(title: str, text: pd.DataFrame, corner: str) -> str:
    r"""A booktabs ``tabular`` after the title as a comment; ``**x**`` cells become bold.

    The floor mark `adbench.runner.floor.MARK` becomes ``$^\dagger$``.
    """

    def escape(value: str) -> str:
        for char in ("\\", "&", "%", "_", "#"):
            value = value.replace(char, "\\" + char)
        return value.replace(MARK, r"$^\dagger$")

    def cell(value: str) -> str:
        bold = value.startswith("**")
        value = escape(value.strip("*")).replace("±", r"$\pm$")
        return rf"\textbf{{{value}}}" if bold else value

    lines = [
        rf"% {escape(title)}",
        r"\begin{tabular}{l" + "r" * len(text.columns) + "}",
        r"\toprule",
        " & ".join([escape(corner), *map(escape, map(str, text.columns))]) + r" \\",
        r"\midrule",
    ]
    lines += [
        " & ".join([escape(str(index)), *map(cell, row)]) + r" \\" for index, row in text.iterrows()
    ]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


RENDERERS: dict[str, Renderer] = {"md": markdown, "latex": latex}
