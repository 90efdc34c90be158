"""GLAD's anomaly maps: nearest-neighbour feature discrepancy, the pixel term, the foreground mask.

Yao et al., ECCV 2024, arXiv:2406.07487, "Scoring"; the same discrepancy drives the adaptive
denoising step (ADS). All functions are batched and pure torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from adbench.contract import gaussian_blur
from adbench.errors import InvalidInputError
from adbench.synthesis import otsu_foreground


def nn_discrepancy(
    query: Tensor, reference: Tensor, bidirectional: bool = False, radius: int | None = None
) -> Tensor:
    """Nearest-neighbour cosine discrepancy ``A(p) = min_q (1 - cos(query(p), reference(q)))``.

    Every query position is compared with *all* reference positions of the same image (the
    paper's rule), so a normal part that moved or whose neighbourhood was regenerated still finds
    its match; with ``radius`` r only with the positions q within r cells of p in both directions
    (r = 0: the same position), so that a part that is missing or out of place is not matched by
    its like elsewhere.

    Args:
        query: (B, C, h, w) features of the input.
        reference: (B, C, h, w) features of the generated image.
        bidirectional: also take, for every reference position q, ``min_p (1 - cos)`` and average
            the two maps (the official code does this for transistor, pcb1 and pcb4).
        radius: None = all positions; r >= 0 = the (2r + 1) x (2r + 1) window around p.

    Returns:
        (B, 1, h, w) discrepancy in [0, 2].
    """
    B, _, h, w = query.shape
    q = F.normalize(rearrange(query.float(), "b c h w -> b (h w) c"), dim=-1)
    r = F.normalize(rearrange(reference.float(), "b c h w -> b (h w) c"), dim=-1)
    distance = 1.0 - torch.bmm(q, r.transpose(1, 2))  # (B, N_query, N_reference)
    if radius is not None:
        rows, cols = torch.meshgrid(
            torch.arange(h, device=query.device),
            torch.arange(w, device=query.device),
            indexing="ij",
        )
        rows, cols = rows.flatten(), cols.flatten()
        outside = ((rows[:, None] - rows[None]).abs() > radius) | (
            (cols[:, None] - cols[None]).abs() > radius
        )  # (N, N)
        distance = distance.masked_fill(outside, float("inf"))
    out = distance.amin(dim=2)
    if bidirectional:
        out = 0.5 * (out + distance.amin(dim=1))
    return out.view(B, 1, h, w)


def topk_mean(maps: Tensor, k: int) -> Tensor:
    """Mean of the ``k`` largest values of each map (B, 1, h, w) -> (B,); k is capped at h*w."""
    flat = maps.flatten(1)
    return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(dim=1)


def multi_level_map(
    query: list[Tensor],
    reference: list[Tensor],
    size: tuple[int, int],
    bidirectional: bool = False,
    radius: int | Sequence[int | None] | None = None,
) -> Tensor:
    """Sum over feature levels of the upsampled `nn_discrepancy` maps.

    Args:
        query: per level (B, C_l, h_l, w_l) features of the input.
        reference: the same for the reconstruction.
        size: (H, W) of the output map.
        bidirectional: as in `nn_discrepancy`.
        radius: as in `nn_discrepancy`, for every level, or one radius per level.

    Returns:
        (B, 1, H, W).
    """
    radii = radius if isinstance(radius, Sequence) else [radius] * len(query)
    total = None
    for f_in, f_rec, r in zip(query, reference, radii, strict=True):
        level = nn_discrepancy(f_in, f_rec, bidirectional, r)
        level = F.interpolate(level, size=size, mode="bilinear", align_corners=False)
        total = level if total is None else total + level
    if total is None:
        raise InvalidInputError("multi_level_map needs at least one feature level, got none")
    return total


def add_pixel_term(maps: Tensor, images: Tensor, reconstructions: Tensor, weight: float) -> Tensor:
    """Add the pixel L1 distance, rescaled to the feature map's range (official ``v`` term).

    ``maps + weight * max(maps) / max(d) * d`` with ``d`` the channel-mean absolute difference;
    the maxima are taken per image so a score never depends on the rest of the batch.

    Args:
        maps: (B, 1, H, W) feature discrepancy.
        images: (B, 3, H, W) normalised input.
        reconstructions: (B, 3, H, W) normalised reconstruction.
        weight: ``v``; 0 returns ``maps`` unchanged.
    """
    if weight == 0:
        return maps
    distance = (images.float() - reconstructions.float()).abs().mean(dim=1, keepdim=True)
    scale = maps.flatten(1).amax(1) / distance.flatten(1).amax(1).clamp(min=1e-12)
    return maps + weight * scale.view(-1, 1, 1, 1) * distance


def foreground_mask(images: Tensor, sigma: float, polarity: Tensor | None = None) -> Tensor:
    """Soft object mask from Otsu thresholding, for objects on a plain background.

    The official code picks the bright or the dark Otsu class per category (``polarity``,
    `methods.glad.categories.foreground_polarity`); without it the class that covers less of the
    image border is the object (`otsu_foreground`). The mask is dilated and softened as in the
    official code: blur, set every touched pixel to 1, blur again.

    Args:
        images: (B, 3, H, W) in [0, 1].
        sigma: Gaussian sigma in pixels (official: 6 at 256 px).
        polarity: (B,) int, 1 = the bright class, -1 = the dark class, 0 = the border rule;
            None = the border rule for every image.

    Returns:
        (B, 1, H, W) in [0, 1].
    """
    mask = otsu_foreground(images.float(), polarity).float()
    mask = (gaussian_blur(mask, sigma) > 1e-6).float()
    return gaussian_blur(mask, sigma)
