"""Cosine discrepancies between feature pyramids: the maps and the loss of reverse distillation.

``pixel_cosine_distance`` is 1 - cos at each position; ``discrepancy_map`` sums it over levels
upsampled to a common size (the anomaly map of RD, Deng & Li, CVPR 2022, and of MDD-Net's two
signals); ``global_cosine_loss`` is the official RD code's training loss, each level flattened to
one vector per image.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from adbench.errors import InvalidInputError


def pixel_cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """1 - cos between the feature vectors at each position: (B, C, h, w) x 2 -> (B, 1, h, w)."""
    return (1 - F.cosine_similarity(a.float(), b.float(), dim=1)).unsqueeze(1)


def discrepancy_map(first: list[Tensor], second: list[Tensor], size: tuple[int, int]) -> Tensor:
    """sum_i up(1 - cos_pixel(first_i, second_i)), each level upsampled bilinearly to ``size``.

    Args:
        first: levels [(B, C_i, h_i, w_i)].
        second: levels shaped like ``first``.
        size: (h, w) of the common map.

    Returns:
        (B, 1, h, w).
    """
    total = None
    for a, b in zip(first, second, strict=True):
        level = F.interpolate(
            pixel_cosine_distance(a, b), size=size, mode="bilinear", align_corners=False
        )
        total = level if total is None else total + level
    if total is None:
        raise InvalidInputError("discrepancy_map needs at least one feature level, got none")
    return total


def global_cosine_loss(predicted: list[Tensor], target: list[Tensor]) -> Tensor:
    """sum_i mean_b [1 - cos(vec(P_i), vec(T_i))], each level flattened to one vector per image.

    Args:
        predicted: levels [(B, C_i, h_i, w_i)].
        target: levels shaped like ``predicted`` (treated as constants).
    """
    total = predicted[0].new_zeros(())
    for p, t in zip(predicted, target, strict=True):
        total = total + (1 - F.cosine_similarity(p.flatten(1), t.detach().flatten(1), dim=1)).mean()
    return total
