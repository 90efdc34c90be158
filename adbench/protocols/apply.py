"""Apply a `Protocol` to a batch: crop, resize, binarise, smooth and score.

`prepare` is what the evaluator calls on each batch; under the ``adbench`` protocol it is
today's rule (the map resized bilinearly to the mask size, mask > 0.5, the method's score).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.errors import InvalidInputError
from adbench.protocols.base import ImageScore, Protocol, Resize, Smoothing


def resize(tensor: Tensor, size: tuple[int, int], mode: Resize) -> Tensor:
    """(B, 1, h, w) -> (B, 1, *size); bilinear with ``align_corners=False``."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    if mode == "nearest":
        return F.interpolate(tensor, size=size, mode="nearest")
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)


def center_crop(tensor: Tensor, fraction: float) -> Tensor:
    """Central ``round(side * fraction)`` crop of (..., H, W), placed as torchvision's."""
    if fraction >= 1:
        return tensor
    height, width = tensor.shape[-2:]
    crop_h, crop_w = round(height * fraction), round(width * fraction)
    top, left = round((height - crop_h) / 2.0), round((width - crop_w) / 2.0)
    return tensor[..., top : top + crop_h, left : left + crop_w]


def gaussian_kernel(smoothing: Smoothing, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(kernel_size,) normalised 1-D Gaussian; its outer product is the normalised 2-D kernel."""
    offsets = torch.arange(smoothing.kernel_size, dtype=torch.float64) - smoothing.kernel_size // 2
    kernel = torch.exp(-0.5 * (offsets / smoothing.sigma) ** 2)
    return (kernel / kernel.sum()).to(device=device, dtype=dtype)


def _pad(maps: Tensor, radius: int, padding: str, dim: int) -> Tensor:
    """Extend the last (``dim=-1``) or second-last axis by ``radius`` on each side."""
    if padding == "symmetric":
        if radius > maps.shape[dim]:
            raise InvalidInputError(
                f"a smoothing kernel of radius {radius} px needs maps of at least {radius} px, "
                f"got {tuple(maps.shape[-2:])}"
            )
        low, high = maps.narrow(dim, 0, radius), maps.narrow(dim, maps.shape[dim] - radius, radius)
        return torch.cat([low.flip(dim), maps, high.flip(dim)], dim=dim)
    pads = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
    if padding == "zeros":
        return F.pad(maps, pads)
    return F.pad(maps, pads, mode=padding)


def smooth(maps: Tensor, smoothing: Smoothing) -> Tensor:
    """Separable Gaussian filtering of (B, 1, H, W) maps as ``smoothing`` says."""
    kernel = gaussian_kernel(smoothing, maps.dtype, maps.device)
    radius = smoothing.kernel_size // 2
    out = F.conv2d(_pad(maps, radius, smoothing.padding, -1), kernel.view(1, 1, 1, -1))
    return F.conv2d(_pad(out, radius, smoothing.padding, -2), kernel.view(1, 1, -1, 1))


def image_scores(maps: Tensor, method_scores: Tensor, rule: ImageScore) -> Tensor:
    """(B,) scores: the method's own, or read from (B, 1, H, W) maps as ``rule`` says."""
    if rule.rule == "method":
        return method_scores
    flat = maps.flatten(1)
    if rule.rule == "max":
        return flat.amax(dim=1)
    count = int(flat.shape[1] * rule.value) if rule.rule == "top_fraction" else int(rule.value)
    count = min(max(count, 1), flat.shape[1])
    return flat.topk(count, dim=1).values.mean(dim=1)


def prepare(
    protocol: Protocol, maps: Tensor, scores: Tensor, masks: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluated maps, binary masks and image scores of a batch under ``protocol``.

    Args:
        protocol: the rules.
        maps: (B, 1, h, w) the method's anomaly maps.
        scores: (B,) the method's image scores.
        masks: (B, 1, H, W) ground truth as loaded (values in [0, 1]).

    Returns:
        maps (B, 1, S, S') float, masks (B, S, S') bool and scores (B,), S x S' being the
        evaluation size.
    """
    maps = resize(maps.float(), tuple(masks.shape[-2:]), protocol.map_resize)
    if protocol.crop_fraction < 1 or protocol.eval_size is not None:
        maps, masks = (
            center_crop(maps, protocol.crop_fraction),
            center_crop(masks, protocol.crop_fraction),
        )
    if protocol.eval_size is not None:
        size = (protocol.eval_size, protocol.eval_size)
        maps = resize(maps, size, protocol.map_resize)
        masks = resize(masks.float(), size, protocol.mask_resize)
    if protocol.smoothing is not None:
        maps = smooth(maps, protocol.smoothing)
    return (
        maps,
        masks[:, 0] > protocol.mask_threshold,
        image_scores(maps, scores, protocol.image_score),
    )
