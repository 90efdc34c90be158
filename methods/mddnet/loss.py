"""MDD-Net training losses: the DRD-Net terms (Xing et al., arXiv 2504.14884) and CMM losses.

Levels are summed; every term is averaged over the batch. Notation: T teacher, R restoration
decoder, I identity decoder, n clean image, a corrupted image, m synthetic-anomaly mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.distillation import global_cosine_loss, pixel_cosine_distance

from .config import LossConfig
from .memory import MemoryRead


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Mask (B, 1, H, W) -> (B, 1, h, w) as the anomalous fraction of each cell (area pooling)."""
    return F.adaptive_avg_pool2d(mask.float(), size)


def discrepancy_loss(restored: list[Tensor], identity: list[Tensor], mask: Tensor) -> Tensor:
    """L_dist = sum_i mean |(1 - cos_pixel(R_i(a), I_i(a))) - m_i|.

    The paper writes an L1 norm per level; the mean over positions keeps the levels equally
    weighted whatever their size.

    Args:
        restored: R's levels [(B, C_i, h_i, w_i)].
        identity: I's levels, same shapes.
        mask: (B, 1, H, W) synthetic-anomaly mask, resized to each level by `resize_mask`.
    """
    total = restored[0].new_zeros(())
    for r, i in zip(restored, identity, strict=True):
        target = resize_mask(mask, r.shape[-2:])
        total = total + (pixel_cosine_distance(r, i) - target).abs().mean()
    return total


def class_evidence_loss(log_weights: Tensor, category: Tensor) -> Tensor:
    """L_cls: cross-entropy of the per-class attention mass against the category id.

    The evidence of class k for an image is the attention mass on k's slots summed over tokens and
    slots, divided by the number of tokens N so that it is a distribution over classes.

    Args:
        log_weights: (B, N, K, M) log attention weights (`MemoryRead.log_weights`).
        category: (B,) class ids in [0, K).
    """
    log_evidence = torch.logsumexp(log_weights, dim=(1, 3)) - math.log(log_weights.shape[1])
    return F.nll_loss(log_evidence, category)


def compactness_loss(
    tokens: Tensor, slots: Tensor, category: Tensor, normal: Tensor | None = None
) -> Tensor:
    """L_cpt: mean squared distance of each normal token to the nearest slot of its own class.

    The squared Euclidean distance is averaged over the D channels and over the normal tokens of
    the batch (all tokens when ``normal`` is None; 0 when none is normal). Tokens of synthetic
    anomalies are left out: pulling them towards normal prototypes would work against the
    identity decoder, which reads the same tokens and must keep the anomaly.

    Args:
        tokens: (B, N, D) bottleneck tokens.
        slots: (K, M, D) memory slots.
        category: (B,) class ids in [0, K).
        normal: (B, N) bool, the tokens that no synthetic anomaly touches.
    """
    own = slots[category].float()  # (B, M, D)
    nearest = torch.cdist(tokens.float(), own).pow(2).amin(dim=-1)  # (B, N)
    if normal is None:
        return nearest.mean() / tokens.shape[-1]
    weight = normal.to(nearest.dtype)
    return (nearest * weight).sum() / weight.sum().clamp(min=1) / tokens.shape[-1]


def normal_tokens(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, h * w) bool: the token cells of an (h, w) grid that mask (B, 1, H, W) leaves empty."""
    return (resize_mask(mask, size) == 0).flatten(1)


def mddnet_loss(
    teacher_clean: list[Tensor],
    teacher_corrupted: list[Tensor],
    restored: list[Tensor],
    identity: list[Tensor],
    mask: Tensor,
    read: MemoryRead,
    slots: Tensor,
    category: Tensor,
    weights: LossConfig,
) -> dict[str, Tensor]:
    """Every MDD-Net loss term and their weighted sum.

    ``"loss"`` = w_res L_res + w_id L_id + w_dist L_dist + w_cls L_cls + w_cpt L_cpt.

    Args:
        teacher_clean: T(n) levels.
        teacher_corrupted: T(a) levels.
        restored: R(a) levels.
        identity: I(a) levels.
        mask: (B, 1, H, W) synthetic-anomaly mask.
        read: the memory read of the corrupted image's bottleneck tokens (L_cpt uses the tokens
            that ``mask`` leaves normal).
        slots: (K, M, D) memory slots.
        category: (B,) class ids.
        weights: the loss weights.

    Returns:
        {"res", "id", "dist", "cls", "cpt", "loss"} -> scalar tensors.
    """
    terms = {
        "res": global_cosine_loss(restored, teacher_clean),
        "id": global_cosine_loss(identity, teacher_corrupted),
        "dist": discrepancy_loss(restored, identity, mask),
        "cls": class_evidence_loss(read.log_weights, category),
        "cpt": compactness_loss(
            read.tokens, slots, category, normal_tokens(mask, tuple(read.readout.shape[-2:]))
        ),
    }
    scale = {
        "res": weights.restoration,
        "id": weights.identity,
        "dist": weights.discrepancy,
        "cls": weights.class_evidence,
        "cpt": weights.compactness,
    }
    terms["loss"] = sum(scale[name] * value for name, value in terms.items())
    return terms
