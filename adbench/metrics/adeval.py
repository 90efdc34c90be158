"""Pixel metrics over equal-width histogram strips, as ADEval computes them (ADer, INP-Former).

ADer (``util/metric.py:87-97``) and INP-Former (``utils.py:24-63``) read P-AUROC, P-AP and
AUPRO from ADEval's ``EvalAccumulatorCuda`` (PyPI ``adeval`` 1.1.0), built with the exact lowest
and highest map value of the category as bounds (ADer ``util/metric.py:90-92``). ADEval counts
the pixels in ``strips`` equal-width bins between the bounds (``torch.histc``) plus an underflow
bin (< lowest) and an overflow bin (>= highest), and reads its curves at the ``strips + 1`` cuts
between consecutive bins. A region's pixels carry the weight 1/|region| (OpenCV 8-connected
components; adbench's `adbench.metrics.aupro.label_regions` finds the same components with scipy),
and the weighted positive rate is the PRO. ADer's P-F1max (``util/metric.py:215-243``) is read at
evenly spaced thresholds of the category's min-max normalised maps.

File:line references are to ``adeval`` 1.1.0 and to zhangzjn/ADer at 902937a.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from adbench.protocols.base import Protocol

CHUNK = 1 << 22  # pixels binned at a time (bounded float64 temporaries for 10^8-pixel categories)
F1_EPS = 1e-8  # ADer util/metric.py:52 (self.eps)


def _chunks(scores: Tensor, weights: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """(m,) float64 slices of the (n,) ``scores`` and ``weights``, in order."""
    for start in range(0, scores.numel(), CHUNK):
        yield (
            scores[start : start + CHUNK].to(torch.float64),
            weights[start : start + CHUNK].to(torch.float64),
        )


def strip_histograms(
    scores: Tensor, weights: Tensor, strips: int, low: float, high: float
) -> np.ndarray:
    """ADEval's histograms of one category's pixels.

    Slot 0 counts the values below ``low`` (none, ``low`` being the lowest), slots 1 to
    ``strips`` the ``torch.histc(bins=strips, min=low, max=high)`` bins (the last one closed on the
    right) and slot ``strips + 1`` the values >= ``high`` (cuda_mem_effic.py:26-34). The highest
    value is thus counted twice, in the last bin and in the overflow slot: the official behaviour,
    kept. The bin of a value is ``int((x - low) * strips / (high - low))``, in float64 as histc
    computes it on ADer's float64 maps, the value ``high`` falling in the last bin.

    Args:
        scores: (n,) pixel scores of one category, all in [low, high].
        weights: (n,) 1/|region| per anomalous pixel, 0 for normal pixels.
        strips: the number of bins.
        low: the lowest score.
        high: the highest score, > ``low``.

    Returns:
        (3, strips + 2) float64: anomalous-pixel counts, normal-pixel counts and summed
        anomalous weights per slot. ADEval weights normal pixels by 1, so their weighted
        histogram is their count (iterative_cuda.py:26-30; cuda_mem_effic.py:70-76).
    """
    slots = strips + 2
    counts = torch.zeros(3, slots, dtype=torch.float64, device=scores.device)
    for values, weight in _chunks(scores, weights):
        positive = weight > 0
        index = ((values - low) * strips / (high - low)).long().clamp_(max=strips - 1) + 1
        key = index + slots * ~positive  # slot in row 0 (anomalous) or row 1 (normal)
        top = (values >= high).nonzero()[:, 0]  # in the last bin; counted again in the overflow
        counts[:2] += (
            torch.bincount(key, minlength=2 * slots)
            + torch.bincount(key[top] + 1, minlength=2 * slots)
        ).view(2, slots)
        anomalous = positive.nonzero()[:, 0]
        counts[2] += torch.bincount(index[anomalous], weights=weight[anomalous], minlength=slots)
        counts[2, -1] += weight[top].sum()
    return counts.cpu().numpy()


def _above(histogram: np.ndarray) -> tuple[np.ndarray, float]:
    """(strips + 1,) totals above each cut of a (strips + 2,) histogram, and the whole total.

    ADEval's ``fn = cumsum[:-1]``, ``tp = total - fn`` (cuda_mem_effic.py:97-113): cut ``k``
    counts the slots ``k + 1`` to ``strips + 1``, from everything (k = 0) to the overflow slot.
    """
    cumulative = np.cumsum(histogram)
    total = float(cumulative[-1])
    return total - cumulative[:-1], total


def _area_to_limit(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
    """Area under PRO(FPR) up to ``limit``, divided by it (iterative.py:136-152).

    The points with FPR <= ``limit`` are integrated with the trapezoid rule and the segment that
    crosses the limit is interpolated linearly up to it, which is what ADEval's
    ``_trapezoid_intep`` computes (mem_effic.py:297-305). Where ADEval fails (no point beyond the
    limit, or none at or below it) this is the area of the points kept.

    Args:
        fpr: (k,) increasing false positive rates.
        pro: (k,) the PRO at each.
        limit: the upper FPR limit.
    """
    kept = int(np.count_nonzero(fpr <= limit))
    area = float(np.trapezoid(pro[:kept], fpr[:kept]))
    if 0 < kept < fpr.size:
        (x1, x2), (y1, y2) = fpr[kept - 1 : kept + 1], pro[kept - 1 : kept + 1]
        reach = limit - x1
        area += reach * (y1 + 0.5 * reach * (y2 - y1) / (x2 - x1))
    return area / limit


def strip_metrics(histograms: np.ndarray, fpr_limit: float) -> dict[str, float]:
    """P-AUROC, P-AP and AUPRO from `strip_histograms` (3, strips + 2), as ADEval reads them.

    P-AUROC is ``np.trapz(tpr, fpr)`` and P-AP ``np.trapz(precision, recall)`` over the cuts in
    increasing FPR, the precision being 1 where nothing is predicted anomalous
    (cuda_mem_effic.py:133-150; iterative.py:126-134); AUPRO is `_area_to_limit` of the weighted
    TPR. The curves do not reach (0, 0): their last cut keeps the overflow slot.
    """
    tp, positives = _above(histograms[0])
    fp, negatives = _above(histograms[1])
    overlap, overlap_total = _above(histograms[2])
    tpr, fpr, pro = tp / positives, fp / negatives, overlap / overlap_total
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.ones_like(tp), where=predicted > 0)
    tpr, fpr, pro, precision = tpr[::-1], fpr[::-1], pro[::-1], precision[::-1]
    return {
        "P-AUROC": float(np.trapezoid(tpr, fpr)),
        "P-AP": float(np.trapezoid(precision, tpr)),
        "AUPRO": _area_to_limit(fpr, pro, fpr_limit),
    }


def thresholded_f1max(
    scores: Tensor, weights: Tensor, count: int, low: float, high: float
) -> float:
    """ADer's P-F1max of one category (util/metric.py:77, 215-243).

    The maps are min-max normalised over the category, ``(x - low) / (high - low)`` in float64;
    at each of ``count`` thresholds ``t = i / (count - 1)`` (ADer: ``np.arange(0, 1 + 1e-3, 0.05)``,
    21 values) the pixels with value > t are predicted anomalous, and
    ``F1 = 2 P R / (P + R + eps)`` with ``P = I / (predicted + eps)``, ``R = I / (anomalous + eps)``
    from the category's pixel counts. Returns the highest F1.

    Args:
        scores: (n,) pixel scores of one category.
        weights: (n,) 1/|region| per anomalous pixel, 0 for normal pixels.
        count: the number of thresholds.
        low: the lowest score.
        high: the highest score, > ``low``.
    """
    grid = torch.from_numpy(np.arange(count) * (1.0 / (count - 1))).to(scores.device)
    below = torch.zeros(2, count + 1, dtype=torch.float64, device=scores.device)
    anomalous = 0
    for values, weight in _chunks(scores, weights):
        positive = weight > 0
        passed = torch.searchsorted(grid, (values - low) / (high - low))  # thresholds < value
        below[0] += torch.bincount(passed, minlength=count + 1)
        below[1] += torch.bincount(passed[positive], minlength=count + 1)
        anomalous += int(positive.sum())
    # pixels above threshold j: those with more than j thresholds below their value
    predicted, hits = below.flip(1).cumsum(1).flip(1)[:, 1:].cpu().numpy()
    precision = hits / (predicted + F1_EPS)
    recall = hits / (anomalous + F1_EPS)
    return float(np.max(2 * precision * recall / (precision + recall + F1_EPS)))


def adeval_pixel_metrics(
    scores: Tensor, weights: Tensor, regions: int, protocol: Protocol
) -> dict[str, float]:
    """P-AUROC, P-AP, AUPRO (and P-F1max with ``protocol.pixels.f1_thresholds``) of one category.

    Args:
        scores: (n,) float32 pixel scores of one category.
        weights: (n,) 1/|region| per anomalous pixel, 0 for normal pixels.
        regions: the number of regions.
        protocol: ``protocol.pixels`` (``strips``, ``f1_thresholds``) and ``protocol.aupro``
            (its FPR limit).

    Returns:
        The metrics by name; all NaN without anomalous or normal pixels, or when every pixel has
        the same score (ADEval asserts that its bounds differ).
    """
    rule = protocol.pixels
    names = ["P-AUROC", "P-AP", "AUPRO"] + (["P-F1max"] if rule.f1_thresholds else [])
    undefined = dict.fromkeys(names, float("nan"))
    if regions == 0 or scores.numel() == 0 or bool((weights > 0).all()):
        return undefined
    low, high = (float(v) for v in torch.aminmax(scores))
    if high <= low:
        return undefined
    histograms = strip_histograms(scores, weights, int(rule.strips), low, high)
    values = strip_metrics(histograms, protocol.aupro.fpr_limit)
    if rule.f1_thresholds:
        values["P-F1max"] = thresholded_f1max(scores, weights, rule.f1_thresholds, low, high)
    return values
