"""Figures of a run directory, saved as PNG and SVG.

* `plot_scaling`: a metric or cost column vs the number of categories k, one line per method
  with the seed spread, next to the cost (training time, peak memory) vs k. The cost columns are
  those of `adbench.runner.costs`. A metric's point below the naive detector's mean at the same k
  is drawn hollow (`adbench.runner.floor`).
* `plot_ranks` and `plot_critical_difference`: Demsar's critical-difference diagram of the
  average ranks (`adbench.runner.stats.average_ranks`).

Methods measured with a CPU variant of their preset are labelled so
(`adbench.runner.variants`). Figures are `matplotlib.figure.Figure` objects drawn off screen:
nothing here selects a backend or touches pyplot's figures, so a notebook keeps its own backend.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from adbench.errors import ConfigError, unknown_name
from adbench.io import write_atomic
from adbench.runner.costs import COSTS, cost_results, memory_column
from adbench.runner.floor import floor_check, note
from adbench.runner.stats import average_ranks, degradation_slopes
from adbench.runner.store import load_cells, load_results
from adbench.runner.variants import with_variants

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGE_FORMATS = ("png", "svg")
_UNSAFE = re.compile(r"[^\w.-]+")  # characters kept out of file names


def _check_formats(formats: Sequence[str]) -> None:
    for fmt in formats:
        if fmt not in IMAGE_FORMATS:
            raise unknown_name("image format", fmt, IMAGE_FORMATS)


def _save(figure: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``figure`` as ``stem.<format>`` for each of ``formats`` (150 dpi)."""
    written = []
    for fmt in formats:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, dpi=150)
        target = stem.with_name(f"{stem.name}.{fmt}")
        write_atomic(target, buffer.getvalue())
        written.append(target)
    return written


def _seed_stats(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, min and max over seeds per (method, k)."""
    grouped = frame.groupby(["method", "k"], sort=True)[value]
    return grouped.agg(["mean", "min", "max", "count"]).reset_index()


def _panel(
    axis: object,
    stats: pd.DataFrame,
    ylabel: str,
    colors: dict[str, str],
    scale: float = 1.0,
    labels: dict[str, str] | None = None,
    hollow: frozenset[tuple[str, int]] = frozenset(),
) -> None:
    """One line per method of ``stats`` (`_seed_stats`); its points in ``hollow`` left unfilled."""
    for method, rows in stats.groupby("method", sort=False):
        axis.plot(
            rows["k"],
            scale * rows["mean"],
            marker="o",
            lw=2,
            color=colors[method],
            label=(labels or {}).get(method, method),
        )
        below = rows[[(method, k) in hollow for k in rows["k"]]]
        if not below.empty:
            axis.plot(below["k"], scale * below["mean"], "o", mfc="white", color=colors[method])
        if (rows["count"] > 1).any():
            axis.fill_between(
                rows["k"],
                scale * rows["min"],
                scale * rows["max"],
                color=colors[method],
                alpha=0.2,
                lw=0,
            )
    axis.set_ylabel(ylabel)
    axis.set_xlabel("categories k")
    axis.grid(True, alpha=0.3)


def _legend_columns(labels: list[str], width: int = 200) -> int:
    """The most legend columns (at most 4) whose labels fit the 14-inch figure's width.

    Matplotlib fills the columns top to bottom; ``width`` counts characters, 8 per marker.
    """
    for columns in range(min(len(labels), 4), 1, -1):
        rows = -(-len(labels) // columns)
        parts = [labels[start : start + rows] for start in range(0, len(labels), rows)]
        if sum(max(len(label) + 8 for label in part) for part in parts) <= width:
            return columns
    return 1


def _slope_labels(scores: pd.DataFrame, metric: str) -> dict[str, str]:
    """Legend labels ``method (+1.2 [-0.3, +2.7])``.

    The degradation slope in points per doubling of k
    (`adbench.runner.stats.degradation_slopes`).
    """
    labels = {}
    for _, row in degradation_slopes(scores, metric).iterrows():
        if pd.isna(row["slope"]):
            continue
        text = f"{100 * row['slope']:+.1f}"
        if not pd.isna(row["ci_low"]):
            text += f" [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]"
        labels[row["method"]] = f"{row['method']} ({text})"
    return labels


def plot_scaling(
    out: str | Path,
    metric: str = "I-AUROC",
    dataset: str | None = None,
    save_dir: str | Path | None = None,
    formats: Sequence[str] = IMAGE_FORMATS,
) -> list[Path]:
    """Draw the category-scaling figure of each dataset in run directory ``out``.

    Args:
        out: the sweep's run directory.
        metric: what the first panel shows: a metric (the mean over the cell's categories, in
            %) or a cost column (``train h``, ``img/s``, ``peak GB``, ``params M``).
        dataset: only this dataset (default: every dataset with two or more k values).
        save_dir: where the files go (default ``out/plots``).
        formats: image formats ("png", "svg").

    Returns:
        The written files, ``scaling_<dataset>_<metric>.<format>``; characters of the metric
        other than letters, digits, ``.`` and ``-`` become ``_`` (``scaling_mvtec_img_s.png``).
    """
    import matplotlib
    from matplotlib.figure import Figure

    _check_formats(formats)
    results, cells = with_variants(load_results(out)), with_variants(load_cells(out))
    metrics = sorted(set(results["metric"]))
    if metric in COSTS:
        results, scale, ylabel = cost_results(cells), 1.0, metric
    elif metric in metrics:
        scale, ylabel = 100.0, f"{metric} (%)"
    else:
        raise unknown_name("metric or cost column", metric, [*metrics, *COSTS])
    datasets = list(dict.fromkeys(results["dataset"]))
    if dataset is not None:
        if dataset not in datasets:
            raise unknown_name("dataset", dataset, datasets)
        datasets = [dataset]
    save_dir = Path(save_dir) if save_dir is not None else Path(out) / "plots"
    save_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in datasets:
        scores = results[
            (results["dataset"] == name)
            & (results["category"] == "mean")
            & (results["metric"] == metric)
        ]
        if scores["k"].nunique() < 2 and dataset is None and len(datasets) > 1:
            continue
        costs = cells[(cells["dataset"] == name) & (cells["status"] == "finished")]
        methods = list(dict.fromkeys(scores["method"]))
        palette = matplotlib.colormaps["tab10"]
        colors = {m: palette(i % 10) for i, m in enumerate(methods)}
        memory = memory_column(costs)
        figure = Figure(layout="constrained")
        axes = figure.subplots(1, 3)
        labels, hollow, floor = None, frozenset(), ""
        if metric not in COSTS:
            labels = _slope_labels(scores, metric)
            check = floor_check(scores, metric)
            below = check[check["below"]]
            hollow = frozenset(zip(below["method"], below["k"], strict=True))
            floor = "\n" + note(check, metric, mark="hollow marker =")
        _panel(axes[0], _seed_stats(scores, "value"), ylabel, colors, scale, labels, hollow=hollow)
        _panel(axes[1], _seed_stats(costs, "train_s"), "training time (s)", colors)
        _panel(
            axes[2],
            _seed_stats(costs, memory),
            "peak GPU memory (MiB)" if memory == "peak_gpu_mb" else "peak CPU RSS (MiB)",
            colors,
        )
        ks = sorted(scores["k"].unique())
        for axis in axes:
            axis.set_xticks(ks)
        for axis in axes[1:]:
            axis.set_ylim(bottom=0)
        seeds = scores["seed"].nunique()
        axes[0].set_title(f"{name}: {metric} vs k")
        axes[1].set_title("cost: training time")
        axes[2].set_title("cost: peak memory")
        handles, labels = axes[0].get_legend_handles_labels()
        columns = _legend_columns(labels)
        rows = -(-len(labels) // columns) + floor.count("\n")  # legend lines under the panels
        figure.set_size_inches(14, 4.4 + 0.3 * rows)
        figure.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=columns,
            title=f"mean over {seeds} seed{'s' if seeds > 1 else ''}"
            + (", band = min-max over seeds" if seeds > 1 else "")
            + ("; (slope: points per doubling of k [95 % interval])" if metric not in COSTS else "")
            + floor,
            frameon=False,
        )
        stem = f"scaling_{name.replace('/', '_')}_{_UNSAFE.sub('_', metric)}"
        written += _save(figure, save_dir / stem, formats)
    if not written:
        raise ConfigError(f"nothing to plot in {out}: no dataset with results for {metric}")
    return written


def plot_ranks(
    out: str | Path,
    metric: str = "I-AUROC",
    save_dir: str | Path | None = None,
    formats: Sequence[str] = IMAGE_FORMATS,
) -> list[Path]:
    """The critical-difference diagram of run directory ``out``.

    Average ranks by ``metric`` over its (dataset, k) blocks
    (`adbench.runner.stats.average_ranks`), saved as ``ranks_<metric>.<format>`` in
    ``save_dir`` (default ``out/plots``).
    """
    _check_formats(formats)
    ranks, summary = average_ranks(with_variants(load_results(out)), metric)
    save_dir = Path(save_dir) if save_dir is not None else Path(out) / "plots"
    save_dir.mkdir(parents=True, exist_ok=True)
    title = f"average rank by {metric} over {summary['n_blocks']} (dataset, k) blocks" + (
        "" if pd.isna(summary["friedman_p"]) else f"; Friedman p = {summary['friedman_p']:.3g}"
    )
    return plot_critical_difference(
        ranks,
        summary["critical_difference"],
        save_dir / f"ranks_{_UNSAFE.sub('_', metric)}",
        formats,
        title=title,
    )


def plot_critical_difference(
    ranks: pd.DataFrame,
    critical_difference: float,
    path: str | Path,
    formats: Sequence[str] = IMAGE_FORMATS,
    title: str = "",
) -> list[Path]:
    """Demsar's critical-difference diagram of `average_ranks`.

    Methods on a rank axis, and bars joining methods whose average ranks differ by less than
    the critical difference.

    Returns the written files ``path`` with each suffix in ``formats``.
    """
    from matplotlib.figure import Figure

    _check_formats(formats)
    order = ranks.sort_values("average_rank")
    names, values = list(order["method"]), order["average_rank"].to_numpy()
    m = len(names)
    figure = Figure(figsize=(8, 1.6 + 0.32 * m), layout="constrained")
    axis = figure.subplots()
    axis.set_xlim(m + 0.3, 0.7)  # rank 1 (best) on the right
    axis.set_ylim(-(m + 1.5), 1.5)
    axis.axhline(0, color="black", lw=1)
    axis.set_xticks(range(1, m + 1))
    axis.xaxis.tick_top()
    axis.spines[["left", "right", "bottom"]].set_visible(False)
    axis.set_yticks([])
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        y = -(i + 1)
        axis.plot([value, value], [0, y], color="gray", lw=0.8)
        axis.annotate(
            f"{name} ({value:.2f})",
            (value, y),
            xytext=(-4 if i < m / 2 else 4, 0),
            textcoords="offset points",
            va="center",
            ha="right" if i < m / 2 else "left",
        )
    if np.isfinite(critical_difference):
        for row, (start, end) in enumerate(_cliques(values, critical_difference)):
            y = -(m + 0.6 + 0.35 * row) if row < 3 else -(m + 1.4)
            axis.plot([values[start] - 0.03, values[end] + 0.03], [y, y], color="black", lw=3)
        axis.plot([1, 1 + critical_difference], [1.0, 1.0], color="black", lw=1.5)
        axis.annotate(
            f"CD = {critical_difference:.2f}",
            (1 + critical_difference / 2, 1.0),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
        )
    axis.set_title(title, pad=28)
    path = Path(path)
    return _save(figure, path.with_suffix(""), formats)


def _cliques(values: np.ndarray, critical_difference: float) -> list[tuple[int, int]]:
    """Maximal runs ``(start, end)`` of the sorted average ranks ``values``.

    Each run's spread is below the critical difference (the diagram's bars).
    """
    groups: list[tuple[int, int]] = []
    for start in range(len(values)):
        end = start
        while end + 1 < len(values) and values[end + 1] - values[start] < critical_difference:
            end += 1
        if end > start and not any(s <= start and end <= e for s, e in groups):
            groups.append((start, end))
    return groups
