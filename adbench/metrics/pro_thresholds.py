"""AUPRO over N evenly spaced thresholds, the approximation of several official scripts.

The exact AUPRO (`adbench.metrics.ranking.Curve.aupro`) takes every distinct score as a
threshold. The official Dinomaly and INP-Former code (``utils.py``, ``compute_pro``) instead
binarises the maps at ``np.arange(min, max, (max - min) / N)`` (in the maps' float32), keeps the
points whose FPR is below the limit, divides their FPR by the largest kept one and integrates
PRO over it with the trapezoid rule.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from adbench.errors import InvalidInputError
from adbench.protocols.base import AuproRule


def thresholds(scores: np.ndarray, count: int) -> np.ndarray:
    """``np.arange(min, max, (max - min) / count)`` in the dtype of ``scores`` (n,)."""
    low, high = scores.min(), scores.max()
    if high <= low:
        return np.asarray([low])
    return np.arange(low, high, (high - low) / scores.dtype.type(count))


def thresholded_pro_curve(
    scores: Tensor, weights: Tensor, regions: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at ``count`` thresholds, a pixel counting as anomalous when above one.

    Args:
        scores: (n,) float32 pixel scores of one category.
        weights: (n,) 1/|region| of each anomalous pixel, 0 for normal pixels.
        regions: number of regions.
        count: number of thresholds N.

    Returns:
        fpr and pro, each (T,) with T = N (or N + 1 where float rounding adds a step).
    """
    values = scores.detach().cpu().numpy()
    overlap = weights.detach().cpu().numpy().astype(np.float64)
    grid = thresholds(values, count)
    positive = overlap > 0
    negatives = np.sort(values[~positive])
    order = np.argsort(values[positive], kind="stable")
    anomalous, weight = values[positive][order], overlap[positive][order]
    above_weight = np.concatenate([np.cumsum(weight[::-1])[::-1], [0.0]])  # weight of [i:]
    fp = negatives.size - np.searchsorted(negatives, grid, side="right")
    first_above = np.searchsorted(anomalous, grid, side="right")
    fpr = fp / max(negatives.size, 1)
    pro = above_weight[first_above] / max(regions, 1)
    return fpr, pro


def thresholded_aupro(scores: Tensor, weights: Tensor, regions: int, rule: AuproRule) -> float:
    """AUPRO of one category under an N-threshold ``rule`` (``rule.thresholds`` set).

    Args:
        scores: (n,) float32 pixel scores.
        weights: (n,) 1/|region| per anomalous pixel, 0 for normal pixels.
        regions: number of regions.
        rule: the variant; ``fpr_normalisation`` ``max_kept`` as the official scripts, or
            ``limit`` (the area up to the limit divided by the limit).

    Returns:
        The normalised area; NaN without regions, without normal pixels or with fewer than two
        points below the limit.
    """
    if regions == 0 or scores.numel() == 0 or bool((weights > 0).all()):
        return float("nan")
    if rule.thresholds is None:
        raise InvalidInputError("thresholded_aupro needs an AuproRule with thresholds set")
    fpr, pro = thresholded_pro_curve(scores, weights, regions, rule.thresholds)
    kept = fpr < rule.fpr_limit
    if kept.sum() < 2:
        return float("nan")
    fpr, pro = fpr[kept][::-1], pro[kept][::-1]  # increasing FPR
    scale = fpr.max() if rule.fpr_normalisation == "max_kept" else rule.fpr_limit
    if scale <= 0:
        return float("nan")
    return float(np.trapezoid(pro, fpr / scale))
