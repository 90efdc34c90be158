"""MDD-Net scoring (Xing et al., arXiv 2504.14884): two fused discrepancy maps.

A_TR = sum_i up(1 - cos_pixel(T_i(x), R_i(x)))   teacher vs restoration
A_RI = sum_i up(1 - cos_pixel(R_i(x), I_i(x)))   restoration vs identity
The paper fuses the two signals; the rule (weighted sum or maximum) is a config choice. The
discrepancies themselves are `adbench.distillation.discrepancy_map`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from adbench.errors import ConfigError


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
