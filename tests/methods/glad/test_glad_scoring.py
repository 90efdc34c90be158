"""GLAD scoring rules against hand-worked references, and the per-category scoring flags.

References: Yao et al., ECCV 2024, arXiv:2406.07487 (and the authors' public code for the test
settings the paper leaves to it).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from glad_helpers import PIXEL_PRESET, images, tiny

from adbench.methods.glad import GLAD, GLADConfig
from adbench.methods.glad.categories import bidirectional_flags, foreground_flags
from adbench.methods.glad.scoring import (
    add_pixel_term,
    foreground_mask,
    multi_level_map,
    nn_discrepancy,
    topk_mean,
)


# -- scoring rules -----------------------------------------------------------------------------
def as_map(vectors: list[list[float]]) -> torch.Tensor:
    """Feature vectors of one image laid out in a 1 x N row: (1, C, 1, N)."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, -1, 1, len(vectors))


def test_nn_discrepancy_matches_hand_computation():
    query = as_map([[1, 0], [0, 1]])
    reference = as_map([[2, 0], [1, 1]])  # scale must not matter (cosine)
    got = nn_discrepancy(query, reference).flatten()
    # q1 matches r1 exactly; q2: min(1 - 0, 1 - 1/sqrt(2))
    torch.testing.assert_close(got, torch.tensor([0.0, 1 - 1 / math.sqrt(2)]))


def test_nn_discrepancy_searches_all_positions():
    query = torch.randn(2, 8, 4, 4)
    shuffled = query.flatten(2)[:, :, torch.randperm(16)].view(2, 8, 4, 4)
    assert nn_discrepancy(query, shuffled).abs().max() < 1e-5


def test_nn_discrepancy_bidirectional_averages_both_directions():
    query = as_map([[1, 0], [1, 0]])
    reference = as_map([[1, 0], [0, 1]])
    # query -> reference: [0, 0]; reference -> query: [0, 1] (r2 has no match); mean: [0, 0.5]
    torch.testing.assert_close(nn_discrepancy(query, reference).flatten(), torch.zeros(2))
    torch.testing.assert_close(
        nn_discrepancy(query, reference, bidirectional=True).flatten(), torch.tensor([0.0, 0.5])
    )


def test_nn_discrepancy_radius_restricts_the_search_to_a_window():
    # a part at column 0 of the input is at column 2 of the reference; the rest is background
    part, background = [1.0, 0.0], [0.0, 1.0]
    query = as_map([part, background, background, background])
    reference = as_map([background, background, part, background])
    torch.testing.assert_close(nn_discrepancy(query, reference).flatten(), torch.zeros(4))
    # same position: the part's cell and the cell where the reference has it differ (1 - cos 0)
    torch.testing.assert_close(
        nn_discrepancy(query, reference, radius=0).flatten(), torch.tensor([1.0, 0.0, 1.0, 0.0])
    )
    # within one cell: column 0 sees columns 0-1, both background; column 2 finds background
    torch.testing.assert_close(
        nn_discrepancy(query, reference, radius=1).flatten(), torch.tensor([1.0, 0.0, 0.0, 0.0])
    )
    torch.testing.assert_close(nn_discrepancy(query, reference, radius=2).flatten(), torch.zeros(4))
    # a window is square: a two-row map searches the other row too
    two_rows = torch.randn(1, 4, 2, 3, generator=torch.Generator().manual_seed(0))
    swapped = two_rows.flip(2)
    assert nn_discrepancy(two_rows, swapped, radius=1).abs().max() < 1e-5
    assert nn_discrepancy(two_rows, swapped, radius=0).min() > 0


def test_topk_mean():
    maps = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    assert topk_mean(maps, 10).item() == pytest.approx(np.mean(np.arange(7, 17)))
    assert topk_mean(maps, 100).item() == pytest.approx(8.5)  # k capped at the 16 positions


def test_multi_level_map_sums_upsampled_levels():
    a = as_map([[1, 0], [0, 1]])  # level 1, discrepancy [0, 1]
    fine = torch.ones(1, 3, 2, 2)
    far = torch.cat([torch.ones(1, 1, 2, 2), -torch.ones(1, 2, 2, 2)], 1)  # cos = -1/3
    level2 = multi_level_map([fine], [far], (4, 4))
    torch.testing.assert_close(level2, torch.full((1, 1, 4, 4), 1 + 1 / 3))
    two = multi_level_map([a[..., :1], fine], [a[..., :1], far], (4, 4))
    torch.testing.assert_close(two, level2)  # a zero level adds nothing


def test_multi_level_map_takes_one_search_radius_per_level():
    # two rows swapped: a match exists one cell away but not at the same cell
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 2, 1).expand(1, 2, 2, 2)
    swapped = rows.flip(2)
    same_cell = 1.0  # orthogonal features at every position: 1 - cos = 1
    per_level = multi_level_map([rows, rows], [swapped, swapped], (2, 2), radius=[None, 0])
    torch.testing.assert_close(per_level, torch.full((1, 1, 2, 2), 0.0 + same_cell))
    torch.testing.assert_close(
        multi_level_map([rows, rows], [swapped, swapped], (2, 2), radius=[0, 0]),
        multi_level_map([rows, rows], [swapped, swapped], (2, 2), radius=0),
    )
    with pytest.raises(ValueError):
        multi_level_map([rows, rows], [swapped, swapped], (2, 2), radius=[None])


def test_pixel_term_rescales_l1_to_the_feature_range():
    maps = torch.tensor([[0.5, 2.0]]).view(1, 1, 1, 2)
    x = torch.zeros(1, 3, 1, 2)
    rec = torch.tensor([0.25, 0.5]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    # d = [0.25, 0.5]; max(maps) / max(d) = 4; maps + 2 * 4 * d = [2.5, 6.0]
    got = add_pixel_term(maps, x, rec, weight=2.0)
    torch.testing.assert_close(got.flatten(), torch.tensor([2.5, 6.0]))
    assert add_pixel_term(maps, x, rec, weight=0.0) is maps


@pytest.mark.parametrize("object_value, background_value", [(0.1, 0.9), (0.9, 0.1)])
def test_foreground_mask_finds_the_object_on_either_background(object_value, background_value):
    image = torch.full((1, 3, 64, 64), background_value)
    image[..., 24:40, 24:40] = object_value
    mask = foreground_mask(image, sigma=1.0)
    assert mask[0, 0, 32, 32] > 0.99 and mask[0, 0, 0, 0] < 0.01


def test_image_score_is_the_mean_of_the_top_250_pixels_at_256():
    config = GLADConfig()
    maps = torch.rand(1, 1, 256, 256)
    method_scoring = dataclasses.replace(config.scoring, sigma=0.0)
    from adbench.contract import pool_scores

    got = pool_scores(maps, method_scoring.pooling, method_scoring.topk_fraction)
    expected = maps.flatten().sort(descending=True).values[:250].mean()
    torch.testing.assert_close(got, expected.view(1))


def test_official_category_lists_decide_foreground_and_bidirectional():
    names = ["bottle", "mvtec/hazelnut", "carpet", "transistor", "synthetic_000"]
    assert foreground_flags(names, default=True) == [True, True, False, False, True]
    assert foreground_flags(names, default=False) == [True, True, False, False, False]
    assert bidirectional_flags(names, default=False) == [False, False, False, True, False]


@torch.no_grad()
def test_per_image_scoring_flags_equal_the_per_config_maps():
    # pixel space (both directions coincide at the tiny preset's search radius 0)
    def pixels(**overrides) -> GLAD:
        return tiny(**{**PIXEL_PRESET, **overrides})

    x, rec = images(2, seed=1), images(2, seed=2)
    model = pixels().model
    maps = model.anomaly_map(x, rec, torch.tensor([True, False]), torch.tensor([False, True]))
    masked = pixels(**{"scoring.foreground": True}).model.anomaly_map(x[:1], rec[:1])
    both = pixels(**{"scoring.bidirectional": True}).model.anomaly_map(x[1:], rec[1:])
    torch.testing.assert_close(maps, torch.cat([masked, both]))
    # the official lists: bottle gets the object mask, transistor both NN directions (each
    # image's reconstruction does not depend on its batch)
    official = pixels()(x, ["bottle", "transistor"]).anomaly_map
    torch.testing.assert_close(
        official[:1],
        pixels(**{"scoring.foreground": True})(x[:1]).anomaly_map,
        rtol=1e-4,
        atol=1e-4,
    )
    torch.testing.assert_close(
        official[1:],
        pixels(**{"scoring.bidirectional": True})(x[1:]).anomaly_map,
        rtol=1e-4,
        atol=1e-4,
    )
    plain = pixels(**{"scoring.per_category": "config"})
    torch.testing.assert_close(plain(x, ["bottle", "transistor"]).anomaly_map, plain(x).anomaly_map)
