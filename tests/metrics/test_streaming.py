"""Histogram bins: layout, calibration and the merge of differently calibrated histograms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adbench.metrics import BinLayout, ranked_curve
from adbench.metrics.bins import calibrate_core
from adbench.metrics.streaming import (
    CHANNELS,
    HIGHEST,
    LOWEST,
    NEGATIVE,
    OVERLAP,
    POSITIVE,
    histogram_curve,
)


def _index(layout: BinLayout, scores: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    rows = scores[None]
    bounds = torch.tensor([[lo]]), torch.tensor([[hi]])
    return layout.index(rows, *bounds, torch.zeros(1, 1), torch.aminmax(rows, dim=1))[0]


def test_edges_cover_core_and_tails() -> None:
    layout = BinLayout(64)
    edges = layout.edges(-1.0, 3.0)
    assert edges.size == layout.size + 1 == 64 + 2 * 32 + 1
    assert np.all(np.diff(edges) > 0)
    core = edges[32 : 32 + 65]
    np.testing.assert_allclose(np.diff(core), 4 / 64)
    assert (core[0], core[-1]) == (-1.0, 3.0)
    # the first tail bins are as wide as a core bin, then grow by (1 + rho) per bin
    np.testing.assert_allclose(edges[32 + 65] - edges[32 + 64], 4 / 64)
    widths = np.diff(edges[32 + 64 :])
    np.testing.assert_allclose(widths[1:] / widths[:-1], 1 + layout.ratio)
    default = BinLayout(4096).edges(-1.0, 3.0)  # reaches about 1e12 core widths past the core
    assert default[-1] - 3.0 > 5e11 * 4 and -1.0 - default[0] > 5e11 * 4


def test_index_agrees_with_edges_and_is_monotone() -> None:
    layout = BinLayout(256)
    lo, hi = -2.0, 2.0
    scores = (
        torch.cat([torch.linspace(-50, 50, 20_001), torch.tensor([-1e9, 1e9, 1e30, lo, hi])])
        .sort()
        .values
    )
    index = _index(layout, scores, lo, hi)
    assert torch.all(index[1:] >= index[:-1])
    assert index.min() >= 0 and index.max() < layout.size
    expected = np.searchsorted(layout.edges(lo, hi), scores.double().numpy(), side="right") - 1
    expected = np.clip(expected, 0, layout.size - 1)
    # float32 rounding may move a score sitting on an edge into the neighbouring bin
    assert np.abs(index.numpy() - expected).max() <= 1
    assert np.mean(index.numpy() == expected) > 0.999


def test_far_outlier_gets_its_own_tail_bin() -> None:
    layout = BinLayout(4096)
    scores = torch.cat([torch.rand(10_000), torch.tensor([1e6])])
    index = _index(layout, scores, *calibrate_core(scores))
    assert index[-1] == index.max()
    assert int((index == index[-1]).sum()) == 1
    bulk = index[:-1]
    assert len(torch.unique(bulk)) > 2000  # the bulk still spreads over the core


def test_calibration_ignores_a_few_extreme_pixels() -> None:
    scores = torch.rand(100_000)
    scores[7] = 1e9
    scores[8] = -1e9
    lo, hi = calibrate_core(scores)
    assert -0.6 < lo < -0.4 and 1.4 < hi < 1.6  # 0.1 %..99.9 % of U(0, 1), widened by half


def test_calibration_of_degenerate_inputs() -> None:
    assert calibrate_core(torch.full((1000,), 3.0)) == (0.0, 6.0)
    assert calibrate_core(torch.zeros(1000)) == (-1.0, 1.0)
    sparse = torch.zeros(100_000)
    sparse[:50] = torch.linspace(0.1, 0.5, 50)  # 0.05 % non-zero: the quantiles tie at 0
    lo, hi = calibrate_core(sparse)
    assert lo == -hi and hi == pytest.approx(float(sparse[:50].median()), rel=0.05)


def _histogram(layout: BinLayout, core: tuple[float, float], scores: torch.Tensor,
               weights: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Bin scores the slow, obvious way: searchsorted on the float64 edges."""
    edges = layout.edges(*core)
    values = scores.double().numpy()
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, layout.size - 1)
    w = weights.double().numpy()
    histogram = np.zeros((CHANNELS, layout.size))
    histogram[NEGATIVE] = np.bincount(bins[w == 0], minlength=layout.size)
    histogram[POSITIVE] = np.bincount(bins[w > 0], minlength=layout.size)
    histogram[OVERLAP] = np.bincount(bins, weights=w, minlength=layout.size)
    histogram[LOWEST], histogram[HIGHEST] = np.inf, -np.inf
    np.minimum.at(histogram[LOWEST], bins, values)
    np.maximum.at(histogram[HIGHEST], bins, values)
    return torch.from_numpy(histogram)


def _pixels(seed: int, n: int = 40_000) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.1
    scores = rng.normal(size=n) + 1.5 * positive
    weights = np.where(positive, 1 / rng.integers(50, 500, n), 0.0)
    return torch.from_numpy(scores).float(), torch.from_numpy(weights).float()


def test_merge_of_differently_calibrated_histograms_is_close_to_exact() -> None:
    layout = BinLayout(1024)
    scores, weights = _pixels(0)
    exact = ranked_curve(scores, weights > 0, weights)
    halves = [slice(0, 20_000), slice(20_000, None)]
    cores = [calibrate_core(scores[h][:3000]) for h in halves]
    assert cores[0] != cores[1]
    parts = [
        _histogram(layout, c, scores[h], weights[h]) for c, h in zip(cores, halves, strict=True)
    ]
    merged = histogram_curve(layout, cores, parts, torch.zeros(0), torch.zeros(0))
    # the merge preserves the counts (up to float rounding of the split bins)
    assert merged.positives == pytest.approx(exact.positives, rel=1e-12)
    assert merged.negatives == pytest.approx(exact.negatives, rel=1e-12)
    assert merged.overlap[-1] == pytest.approx(exact.overlap[-1])
    for metric in ("auroc", "ap", "f1max"):
        assert getattr(merged, metric)() == pytest.approx(getattr(exact, metric)(), abs=1e-3)
    regions = round(float(weights.double().sum()))
    assert merged.aupro(regions) == pytest.approx(exact.aupro(regions), abs=1e-3)


def test_merge_moves_single_valued_bins_whole() -> None:
    layout = BinLayout(64)
    levels = torch.tensor([0.0, 1.0, 2.0, 3.0]).repeat_interleave(250)
    weights = torch.zeros(1000)
    weights[::3] = 0.01
    exact = ranked_curve(levels, weights > 0, weights)
    cores = [(-0.5, 3.5), (-0.3, 3.1)]
    parts = [_histogram(layout, c, levels[i::2], weights[i::2]) for i, c in enumerate(cores)]
    merged = histogram_curve(layout, cores, parts, torch.zeros(0), torch.zeros(0))
    # four distinct values: the merged curve has exactly the exact curve's four steps
    nonempty = np.flatnonzero(np.diff(merged.tp + merged.fp, prepend=0.0))
    np.testing.assert_allclose(merged.tp[nonempty], exact.tp)
    np.testing.assert_allclose(merged.fp[nonempty], exact.fp)
    assert merged.ap() == pytest.approx(exact.ap(), abs=1e-12)


def test_leftover_raw_pixels_are_added() -> None:
    layout = BinLayout(256)
    scores, weights = _pixels(1, 10_000)
    core = calibrate_core(scores)
    binned = _histogram(layout, core, scores[:6000], weights[:6000])
    curve = histogram_curve(layout, [core], [binned], scores[6000:], weights[6000:])
    full = histogram_curve(layout, [core], [_histogram(layout, core, scores, weights)],
                           torch.zeros(0), torch.zeros(0))  # fmt: skip
    np.testing.assert_allclose(curve.tp, full.tp)
    np.testing.assert_allclose(curve.fp, full.fp)
    np.testing.assert_allclose(curve.overlap, full.overlap)
