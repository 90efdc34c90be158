"""`adbench.runner.stats`: intervals, paired tests, average ranks and the critical difference, and
the degradation slope, against hand-computed values and textbook formulas; the figures of
`adbench.runner.plots` drawn from them."""

from __future__ import annotations

import argparse
import importlib
import io
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from adbench.errors import ConfigError, UnknownNameError
from adbench.runner.plots import plot_critical_difference
from adbench.runner.stats import (
    average_ranks,
    confidence_intervals,
    degradation_slopes,
    paired_test,
)


def tidy(
    values: dict[tuple[str, str, int, int, str], float],
    metric: str = "I-AUROC",
    with_means: bool = True,
) -> pd.DataFrame:
    """A `load_results`-shaped table from {(dataset, method, k, seed, category): value}, plus
    the mean row of each cell."""
    rows = [
        {
            "cell_id": f"{d}-{m}-{k}-{s}",
            "method": m,
            "name": m,
            "preset": "tiny",
            "dataset": d,
            "k": k,
            "seed": s,
            "category": c,
            "metric": metric,
            "value": v,
        }
        for (d, m, k, s, c), v in values.items()
    ]
    frame = pd.DataFrame(rows)
    if with_means:
        means = (
            frame.groupby(
                ["cell_id", "method", "name", "preset", "dataset", "k", "seed", "metric"],
                as_index=False,
            )["value"]
            .mean()
            .assign(category="mean")
        )
        frame = pd.concat([frame, means], ignore_index=True)
    return frame


def test_paired_test_matches_the_hand_computed_wilcoxon():
    # differences a - b over four (category, seed) pairs: 1, 2, 3, -0.5
    # |d| ranks: 0.5 -> 1, 1 -> 2, 2 -> 3, 3 -> 4; R+ = 9, R- = 1; W = min = 1
    # exact two-sided p for n = 4: P(W <= 1) = 2 / 16 (rank sums 0 and 1), doubled: 0.25
    # rank-biserial r = (9 - 1) / 10 = 0.8
    a = {
        ("d", "a", 2, s, c): v
        for (s, c), v in zip(
            [(0, "x"), (0, "y"), (1, "x"), (1, "y")], [0.9, 0.8, 0.7, 0.6], strict=True
        )
    }
    b = {
        ("d", "b", 2, s, c): v
        for (s, c), v in zip(
            [(0, "x"), (0, "y"), (1, "x"), (1, "y")], [-0.1, -1.2, -2.3, 1.1], strict=True
        )
    }
    result = paired_test(tidy({**a, **b}), "a", "b")
    assert result["n_pairs"] == 4
    assert result["statistic"] == pytest.approx(1.0)
    assert result["p_value"] == pytest.approx(0.25)
    assert result["effect_size"] == pytest.approx(0.8)
    assert result["median_difference"] == pytest.approx(np.median([1, 2, 3, -0.5]))
    with pytest.raises(UnknownNameError, match="unknown method 'missing'; known: a, b"):
        paired_test(tidy({**a, **b}), "a", "missing")


def test_paired_test_needs_pairs_with_a_difference():
    same = {("d", m, 2, 0, c): 0.5 for m in "ab" for c in "xyz"}
    with pytest.raises(ConfigError, match="too few"):
        paired_test(tidy(same), "a", "b")


def test_average_ranks_friedman_and_the_nemenyi_critical_difference():
    # 4 blocks (dataset, k), 3 methods; a wins 3 blocks and b one, c is last except a tie in one
    means = {
        ("d1", 2): (0.9, 0.8, 0.7),
        ("d1", 4): (0.9, 0.8, 0.8),
        ("d2", 2): (0.7, 0.9, 0.6),
        ("d2", 4): (0.95, 0.9, 0.5),
    }
    values = {
        (d, m, k, 0, "x"): v
        for (d, k), row in means.items()
        for m, v in zip("abc", row, strict=True)
    }
    table, summary = average_ranks(tidy(values))
    # ranks: a 1, 1, 2, 1 -> 1.25; b 2, 2.5, 1, 2 -> 1.875; c 3, 2.5, 3, 3 -> 2.875
    assert list(table["method"]) == ["a", "b", "c"]
    np.testing.assert_allclose(table["average_rank"], [1.25, 1.875, 2.875])
    n, m = 4, 3
    rank_sums = np.array([1.25, 1.875, 2.875]) * n
    # Friedman chi-square with the tie correction: 12 / (n m (m+1)) sum R^2 - 3 n (m+1), divided
    # by 1 - sum(t^3 - t) / (n (m^3 - m)) (one tie of two in one block)
    chi2 = 12 / (n * m * (m + 1)) * (rank_sums**2).sum() - 3 * n * (m + 1)
    chi2 /= 1 - (2**3 - 2) / (n * (m**3 - m))
    assert summary["friedman_statistic"] == pytest.approx(chi2)
    # Demsar 2006, Table 5: q_0.05 = 2.343 for 3 classifiers
    assert summary["critical_difference"] == pytest.approx(
        2.343 * math.sqrt(m * (m + 1) / (6 * n)), rel=1e-3
    )
    assert (summary["n_blocks"], summary["n_methods"]) == (4, 3)


def test_critical_difference_diagram_is_written(tmp_path):
    ranks = pd.DataFrame({"method": ["a", "b", "c"], "average_rank": [1.25, 1.875, 2.875]})
    files = plot_critical_difference(ranks, 1.657, tmp_path / "cd", title="I-AUROC")
    assert [f.name for f in files] == ["cd.png", "cd.svg"]
    assert files[0].read_bytes()[:4] == b"\x89PNG" and b"CD = 1.66" in files[1].read_bytes()


def test_degradation_slope_is_the_change_per_doubling_of_k():
    # exact line: 0.9 - 0.02 log2 k over k = 2, 4, 8, 16 and two seeds
    exact = {
        ("d", "a", k, s, "x"): 0.9 - 0.02 * math.log2(k) for k in (2, 4, 8, 16) for s in (0, 1)
    }
    rng = np.random.default_rng(0)
    noisy = {
        ("d", "b", k, s, "x"): 0.8 - 0.05 * math.log2(k) + rng.normal(0, 0.01)
        for k in (2, 4, 8, 16)
        for s in (0, 1, 2)
    }
    slopes = degradation_slopes(tidy({**exact, **noisy})).set_index("method")
    assert slopes.loc["a", "slope"] == pytest.approx(-0.02)
    assert slopes.loc["a", "ci_high"] - slopes.loc["a", "ci_low"] == pytest.approx(0, abs=1e-9)
    b = tidy(noisy)
    points = b[b["category"] == "mean"]
    x, y = np.log2(points["k"].to_numpy(float)), points["value"].to_numpy()
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    stderr = math.sqrt((residual**2).sum() / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    from scipy.stats import t as student

    half = student.ppf(0.975, len(x) - 2) * stderr
    assert slopes.loc["b", "slope"] == pytest.approx(slope)
    assert slopes.loc["b", "ci_low"] == pytest.approx(slope - half)
    assert slopes.loc["b", "ci_high"] == pytest.approx(slope + half)
    assert (slopes.loc["b", "n_points"], slopes.loc["b", "k_min"], slopes.loc["b", "k_max"]) == (
        12,
        2,
        16,
    )


def test_bootstrap_interval_of_the_mean_over_seeds_and_categories():
    rng = np.random.default_rng(1)
    values = {("d", "a", 8, s, f"c{c}"): rng.normal(0.8, 0.05) for s in range(5) for c in range(40)}
    table = confidence_intervals(tidy(values), seed=3)
    row = table[table["metric"] == "I-AUROC"].iloc[0]
    sample = np.array(list(values.values()))
    assert row["n"] == 200 and row["mean"] == pytest.approx(sample.mean())
    # large sample: the percentile interval is close to mean +- 1.96 s / sqrt(n)
    half = 1.96 * sample.std(ddof=1) / math.sqrt(len(sample))
    assert row["ci_low"] == pytest.approx(sample.mean() - half, abs=0.15 * half)
    assert row["ci_high"] == pytest.approx(sample.mean() + half, abs=0.15 * half)
    again = confidence_intervals(tidy(values), seed=3)
    pd.testing.assert_frame_equal(table, again)  # seeded
    flat = confidence_intervals(tidy({("d", "a", 2, s, "x"): 0.5 for s in range(3)}))
    assert (flat["ci_low"].iloc[0], flat["ci_high"].iloc[0]) == (0.5, 0.5)


def scaling_frame() -> pd.DataFrame:
    """Two methods, k = 2, 4, 8, two seeds, two categories per cell: "a" loses 2 points per
    doubling of k, "b" 6, and "a" is ahead on every (category, seed)."""
    values = {}
    for k in (2, 4, 8):
        for seed in (0, 1):
            for c, shift in (("x", 0.0), ("y", 0.02)):
                level = math.log2(k)
                values[("d", "a", k, seed, c)] = 0.95 - 0.02 * level + shift + 0.001 * seed
                values[("d", "b", k, seed, c)] = 0.90 - 0.06 * level + shift - 0.002 * seed
    return tidy(values)


def test_leaderboard_with_stats_shows_intervals_tests_slopes_and_ranks():
    from adbench.runner import leaderboard

    frame = scaling_frame()
    plain = leaderboard(frame, per_category=[])
    text = leaderboard(frame, per_category=[], stats=True)
    assert "[95 % bootstrap interval" in text and "[95 % bootstrap" not in plain
    intervals = confidence_intervals(frame).set_index("method")
    low, high = 100 * intervals.loc["a", "ci_low"], 100 * intervals.loc["a", "ci_high"]
    row = next(line for line in text.splitlines() if line.startswith("| a |"))
    assert f"[{low:.1f}, {high:.1f}]" in row
    test = paired_test(frame, "a", "b", k=8)
    row = next(line for line in text.splitlines() if line.startswith("| a vs b |"))
    assert row == (
        f"| a vs b | 4 | {100 * test['median_difference']:+.2f} | "
        f"{test['statistic']:.1f} | {test['p_value']:.3g} | +1.00 |"
    )
    row = next(
        line
        for line in text.splitlines()
        if line.startswith("| b |")
        and "8" in line
        and "per doubling" not in line
        and "[" in line
        and "2-8" in line
    )
    assert row.startswith("| b | -6.00 [")  # points per doubling of k
    assert "average rank by I-AUROC over 3 (dataset, k) blocks" in text
    csv = pd.read_csv(io.StringIO(leaderboard(frame, fmt="csv", stats=True)))
    means = csv[csv["category"] == "mean"].set_index("method")
    assert means.loc["a", "ci_low"] == pytest.approx(intervals.loc["a", "ci_low"])


def test_cli_leaderboard_stats_and_the_ranks_diagram(tmp_path, monkeypatch, capsys):
    import adbench.runner.commands as commands
    import adbench.runner.plots as plots

    frame = scaling_frame()
    board = importlib.import_module("adbench.runner.leaderboard")  # the module, not the function
    monkeypatch.setattr(board, "load_results", lambda out: frame)
    monkeypatch.setattr(plots, "load_results", lambda out: frame)
    parser = argparse.ArgumentParser()
    commands.add_commands(parser.add_subparsers())
    args = parser.parse_args(
        ["leaderboard", str(tmp_path), "--stats", "--no-cost", "--per-category"]
    )
    assert args.func(args) == 0
    assert "paired Wilcoxon" in capsys.readouterr().out
    args = parser.parse_args(["plot", "ranks", str(tmp_path), "--format", "svg"])
    assert args.func(args) == 0
    assert (tmp_path / "plots" / "ranks_I-AUROC.svg").read_text().count("CD = ") == 1


def test_drawing_leaves_the_users_matplotlib_backend_alone(tmp_path):
    import adbench.runner.plots as plots

    shipped = Path(__file__).resolve().parents[2] / "examples" / "scaling_results"
    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # a choice of the user's (a notebook's inline backend, say), not Agg
    try:
        files = plots.plot_scaling(shipped, dataset="synthetic", save_dir=tmp_path, formats=["png"])
        files += plots.plot_ranks(shipped, metric="mAD", save_dir=tmp_path, formats=["png"])
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)
    assert [f.name for f in files] == ["scaling_synthetic_I-AUROC.png", "ranks_mAD.png"]
    assert all(f.read_bytes()[:4] == b"\x89PNG" for f in files)
