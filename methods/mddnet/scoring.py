"""MDD-Net scoring (Xing et al., arXiv 2504.14884): two fused discrepancy maps.

A_TR = sum_i up(1 - cos_pixel(T_i(x), R_i(x)))   teacher vs restoration
A_RI = sum_i up(1 - cos_pixel(R_i(x), I_i(x)))   restoration vs identity
The paper fuses the two signals; the rule (weighted sum or maximum) is a config choice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.errors import ConfigError, InvalidInputError


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


def fuse_maps(
    teacher_restoration: Tensor,
    restoration_identity: Tensor,
    rule: str,
    weights: tuple[float, float],
) -> Tensor:
    """Fuse A_TR and A_RI (each (B, 1, h, w)).

    Args:
        teacher_restoration: A_TR.
        restoration_identity: A_RI.
        rule: "sum" -> w_TR A_TR + w_RI A_RI; "max" -> max(w_TR A_TR, w_RI A_RI) per pixel.
        weights: (w_TR, w_RI).
    """
    a = weights[0] * teacher_restoration
    b = weights[1] * restoration_identity
    if rule == "sum":
        return a + b
    if rule == "max":
        return torch.maximum(a, b)
    raise ConfigError(f"mddnet: scoring.fusion must be 'sum' or 'max', got {rule!r}")
