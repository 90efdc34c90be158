"""Regions of ground-truth masks and the exact AUPRO (Bergmann et al., IJCV 2021).

A region is a connected component of one image's mask under 8-connectivity
(``scipy.ndimage.label`` with a 3x3 structure of ones). Each pixel of a region carries the weight
1/|region|, so the summed weight of the pixels above a threshold, divided by the number of regions,
is the per-region overlap PRO(t) averaged over all regions of all images. Images without a region
contribute only normal pixels (to the FPR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from adbench.errors import InvalidInputError
from adbench.metrics.ranking import ArrayLike, ranked_curve
from adbench.protocols import AUPRO_FPR_LIMIT

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Regions:
    """The anomalous pixels of B masks (B, H, W) in C order, each weighted by 1/|its region|.

    Attributes:
        pixels: (P,) int64 flat indices into the (B, H, W) masks, increasing.
        weights: (P,) float64 1/|region| of the region each pixel belongs to.
        counts: (B,) int64 number of regions per image.
    """

    pixels: np.ndarray
    weights: np.ndarray
    counts: np.ndarray


def label_regions(masks: np.ndarray) -> Regions:
    """Find the regions of each mask (8-connected components) and weight their pixels.

    Args:
        masks: (B, H, W) bool ground truth.
    """
    count, height, width = masks.shape
    regions = np.zeros(count, dtype=np.int64)
    pixels, weights = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.float64)]
    for i in np.flatnonzero(masks.reshape(count, -1).any(axis=1)):
        rows, cols = np.flatnonzero(masks[i].any(axis=1)), np.flatnonzero(masks[i].any(axis=0))
        top, left = rows[0], cols[0]
        box = masks[i, top : rows[-1] + 1, left : cols[-1] + 1]  # keeps the C order of pixels
        labels, regions[i] = ndimage.label(box, structure=EIGHT_CONNECTED)
        sizes = np.bincount(labels.ravel())
        y, x = np.nonzero(box)
        pixels.append((i * height + top + y) * width + left + x)
        weights.append(1.0 / sizes[labels[y, x]])
    return Regions(np.concatenate(pixels), np.concatenate(weights), regions)


def aupro(maps: ArrayLike, masks: ArrayLike, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
    """Exact AUPRO of anomaly maps against ground-truth masks (one category).

    Args:
        maps: (N, H, W) anomaly maps, higher = more anomalous.
        masks: (N, H, W) ground truth; pixels > 0.5 are anomalous.
        fpr_limit: upper FPR integration limit.

    Returns:
        The area under the PRO curve up to ``fpr_limit`` divided by ``fpr_limit``; NaN without
        anomalous or without normal pixels.
    """
    maps_t = torch.as_tensor(maps).detach().cpu().to(torch.float64)
    positive = torch.as_tensor(masks).detach().cpu() > 0.5
    if maps_t.ndim != 3 or maps_t.shape != positive.shape:
        raise InvalidInputError(
            f"maps and masks must both have shape (N, H, W), got {tuple(maps_t.shape)} and "
            f"{tuple(positive.shape)}"
        )
    regions = label_regions(positive.numpy())
    weight_map = torch.zeros(maps_t.numel(), dtype=torch.float64)
    weight_map[regions.pixels] = torch.from_numpy(regions.weights)
    return ranked_curve(maps_t, positive, weight_map).aupro(int(regions.counts.sum()), fpr_limit)
