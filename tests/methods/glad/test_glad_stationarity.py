"""GLAD stationarity: the measured ratio against its formula, and stationary categories scored
with their own search radius."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from glad_helpers import FEATURES, images, tiny

from adbench.errors import AdbenchError
from adbench.methods.glad.scoring import nn_discrepancy
from adbench.methods.glad.stationarity import StationarityStats


def reference_stationarity(z: np.ndarray) -> float:
    """The ratio of `StationarityStats` for latents (N, C, h, w), straight from its formula."""
    per_position = z.var(axis=0).mean()
    total = z.transpose(1, 0, 2, 3).reshape(z.shape[1], -1).var(axis=1).mean()
    return float(per_position / total)


def test_stationarity_ratio_is_the_share_of_variance_left_per_position():
    # by hand, one channel and two positions: swapped values vary only per position (r = 1),
    # repeated values only across positions (r = 0)
    swapped = torch.tensor([[0.0, 2.0], [2.0, 0.0]]).view(2, 1, 1, 2)
    stats = StationarityStats()
    stats.update(swapped, torch.zeros(2, dtype=torch.long), 2)
    stats.update(swapped[:1].expand(2, 1, 1, 2), torch.ones(2, dtype=torch.long), 2)
    torch.testing.assert_close(stats.ratios(), torch.tensor([1.0, 0.0], dtype=torch.float64))
    # random latents streamed in mixed batches while the category count grows from 2 to 3
    # (category 1 has no images)
    rng = np.random.default_rng(0)
    aligned = rng.normal(size=(10, 3, 4, 5)) + 3 * rng.normal(size=(1, 3, 4, 5))
    texture = rng.normal(size=(7, 3, 4, 5))
    stats = StationarityStats()
    stats.update(torch.from_numpy(aligned[:4]), torch.zeros(4, dtype=torch.long), 2)
    stats.update(
        torch.from_numpy(np.concatenate([aligned[4:], texture[:3]])),
        torch.tensor([0] * 6 + [2] * 3),
        3,
    )
    stats.update(torch.from_numpy(texture[3:]), torch.full((4,), 2), 3)
    ratios = stats.ratios()
    assert ratios[0].item() == pytest.approx(reference_stationarity(aligned), rel=1e-9)
    assert ratios[2].item() == pytest.approx(reference_stationarity(texture), rel=1e-9)
    assert math.isnan(ratios[1].item()) and ratios[0] < 0.2 < 0.8 < ratios[2]
    stats.reset()
    assert stats.ratios().numel() == 0


@torch.no_grad()
def test_stationary_categories_are_scored_with_their_own_search_radius():
    model = tiny(**{**FEATURES, "scoring.stationary_threshold": 0.5}).model
    x, other = images(2, seed=1), images(2, seed=2)
    z, z_other = model.codec.encode(x), model.codec.encode(other)
    size = (model.scoring.feature_size,) * 2
    maps = model.anomaly_map(x, z_other, stationary=torch.tensor([True, False]))
    levels, levels_other = model.codec.levels(z), model.codec.levels(z_other)
    for i, radius in ((0, None), (1, 0)):  # stationary: all positions; the other: the same cell
        by_hand = sum(
            F.interpolate(
                nn_discrepancy(f[i : i + 1], g[i : i + 1], radius=radius),
                size=size,
                mode="bilinear",
                align_corners=False,
            )
            for f, g in zip(levels, levels_other, strict=True)
        )
        torch.testing.assert_close(maps[i : i + 1], by_hand)
    # training hands the normal latents to the statistics without a second encoding
    seen = []
    model.training_loss(x, other, observe=seen.append)
    torch.testing.assert_close(seen[0], z)
    # the module decides by the measured ratios, and cannot decide before it has measured them
    method = tiny(**{**FEATURES, "scoring.stationary_threshold": 0.5})
    with pytest.raises(AdbenchError, match="no category's stationarity was measured"):
        method(x, ["carpet", "bottle"])
    method.stationarity = {"carpet": 0.7, "bottle": 0.2}
    assert method.stationary_flags(["carpet", "bottle", "unseen"]).tolist() == [True, False, False]
    assert method.stationary_flags(None) is None
    # the ratios travel with the weights, and the run record names the stationary categories
    loaded = tiny(**{**FEATURES, "scoring.stationary_threshold": 0.5})
    loaded.load_state_dict(method.state_dict())
    assert loaded.stationarity == method.stationarity
    assert loaded.run_record()["stationary_categories"] == ["carpet"]
    assert "stationarity" not in tiny(**FEATURES).run_record()  # nothing measured
    assert "stationarity" not in tiny().run_record()  # not fitted yet
