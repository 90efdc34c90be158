"""Exact AUPRO against a threshold loop written from the definition, and against anomalib."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from metric_cases import aupro_reference, random_maps, structured_maps

from adbench.metrics import aupro, label_regions


def _hand_made() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    masks = np.zeros((6, 24, 24), np.float32)
    masks[1, 3:8, 3:9] = 1
    masks[1, 15:20, 2:4] = 1
    masks[2, 10:12, 10:22] = 1
    masks[3, 0:2, 0:2] = 1
    masks[3, 2, 2] = 1  # touches the square above only diagonally: same region
    masks[4, 23, 23] = 1  # a one-pixel region in the corner
    maps = (rng.random((6, 24, 24)) + 0.4 * masks).astype(np.float32)
    return maps, masks


def test_regions_are_eight_connected_and_weighted_by_their_size() -> None:
    _, masks = _hand_made()
    regions = label_regions(masks > 0.5)
    np.testing.assert_array_equal(regions.counts, [0, 2, 1, 1, 1, 0])
    np.testing.assert_array_equal(regions.pixels, np.flatnonzero(masks > 0.5))
    # every region's weights add up to one, so the total is the number of regions
    assert regions.weights.sum() == pytest.approx(5.0)
    corner = regions.pixels == np.ravel_multi_index((4, 23, 23), masks.shape)
    assert regions.weights[corner] == pytest.approx([1.0])
    diagonal = regions.pixels == np.ravel_multi_index((3, 2, 2), masks.shape)
    assert regions.weights[diagonal] == pytest.approx([1 / 5])


@pytest.mark.parametrize(
    "case",
    ["hand-made", "random", "structured", "quantised"],
)
def test_exact_aupro_matches_the_definition(case: str) -> None:
    if case == "hand-made":
        maps, masks = _hand_made()
    elif case == "random":
        data = random_maps(seed=4, count=10, size=20)
        maps, masks = data.maps, data.masks
    else:
        data = structured_maps(seed=5, per_category=8, size=24, categories=("one",))
        data = data.quantised(64) if case == "quantised" else data
        maps, masks = data.maps, data.masks
    assert aupro(maps, masks) == pytest.approx(aupro_reference(maps, masks), abs=1e-9)


@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_fpr_limit(limit: float) -> None:
    maps, masks = _hand_made()
    assert aupro(maps, masks, limit) == pytest.approx(aupro_reference(maps, masks, limit), abs=1e-9)


def test_perfect_and_constant_maps() -> None:
    _, masks = _hand_made()
    assert aupro(masks, masks) == pytest.approx(1.0)
    # a constant map jumps from (0, 0) to (1, 1): PRO(0.3) = 0.3, area 0.045, normalised 0.15
    assert aupro(np.zeros_like(masks), masks) == pytest.approx(0.15)
    assert np.isnan(aupro(np.ones_like(masks), np.zeros_like(masks)))


def test_agrees_with_anomalib() -> None:
    anomalib_aupro = pytest.importorskip("anomalib.metrics").AUPRO
    data = structured_maps(seed=6, per_category=10, size=32, categories=("one",))
    metric = anomalib_aupro(fields=["anomaly_map", "gt_mask"])
    batch = SimpleNamespace(
        anomaly_map=torch.from_numpy(data.maps), gt_mask=torch.from_numpy(data.masks).int()
    )
    metric.update(batch)
    assert aupro(data.maps, data.masks) == pytest.approx(float(metric.compute()), abs=1e-4)


def test_shape_mismatch_is_an_error() -> None:
    maps, masks = _hand_made()
    with pytest.raises(ValueError, match="shape"):
        aupro(maps, masks[:, :10])
