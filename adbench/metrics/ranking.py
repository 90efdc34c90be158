"""Ranking curves and the numbers computed from them: AUROC, AP, F1-max and AUPRO.

Every threshold metric in adbench is computed from one representation, a `Curve`: cumulative
counts of positives, negatives and region overlap at thresholds in descending order. The exact
mode builds it by sorting every score (`ranked_curve`); the streaming mode builds it from histogram
bins (`adbench.metrics.streaming`), so both modes share the arithmetic below. The formulas follow
scikit-learn: `Curve.auroc` is the trapezoid area of the ROC curve (``roc_auc_score``), `Curve.ap`
the step-wise sum ``sum_n (R_n - R_{n-1}) P_n`` (``average_precision_score``), `Curve.f1max` the
maximum of ``2PR / (P + R)`` over the thresholds of ``precision_recall_curve``; `Curve.aupro`
follows Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from adbench.errors import InvalidInputError
from adbench.protocols import AUPRO_FPR_LIMIT

ArrayLike = np.ndarray | Tensor


@dataclass(frozen=True)
class Curve:
    """Cumulative counts at thresholds in descending order (one entry per threshold).

    Attributes:
        tp: (T,) positives with score >= threshold.
        fp: (T,) negatives with score >= threshold.
        overlap: (T,) summed region-overlap weights (1/|region| per positive pixel) with
            score >= threshold, or None when no regions were tracked.
        single: (T,) bool, True where the scores that a threshold adds all have one value; None
            when that holds everywhere (the exact curve, one threshold per distinct score).
            Histogram curves set it False for bins that hold several values, and `ap`
            integrates precision over such bins (see there).
    """

    tp: np.ndarray
    fp: np.ndarray
    overlap: np.ndarray | None = None
    single: np.ndarray | None = None

    @property
    def positives(self) -> float:
        """Total number of positives."""
        return float(self.tp[-1]) if self.tp.size else 0.0

    @property
    def negatives(self) -> float:
        """Total number of negatives."""
        return float(self.fp[-1]) if self.fp.size else 0.0

    def auroc(self) -> float:
        """Trapezoid area under the ROC curve; NaN without positives or without negatives."""
        pos, neg = self.positives, self.negatives
        if pos == 0 or neg == 0:
            return float("nan")
        tpr = np.concatenate([[0.0], self.tp / pos])
        fpr = np.concatenate([[0.0], self.fp / neg])
        return float(np.trapezoid(tpr, fpr))

    def ap(self) -> float:
        """Average precision ``sum_n (R_n - R_{n-1}) P_n``; NaN without positives.

        Tied scores form one step, as in scikit-learn. For a histogram bin that holds several
        values, that step would give all of the bin's pixels the precision at its lower edge;
        instead precision is integrated over recall within the bin, assuming its positives and
        negatives are evenly mixed (the model behind the trapezoid AUROC): with tp = tp0 + a t,
        fp = fp0 + b t for t in [0, 1], n0 = tp0 + fp0 and c = a + b, the bin adds
        ``a / #pos * (a / c + (tp0 - a n0 / c) log(1 + c / n0) / c)``.
        """
        pos = self.positives
        if pos == 0:
            return float("nan")
        tp0 = np.concatenate([[0.0], self.tp[:-1]])
        n0 = tp0 + np.concatenate([[0.0], self.fp[:-1]])
        a, n = self.tp - tp0, self.tp + self.fp
        c = n - n0
        area = np.divide(a * self.tp, n, out=np.zeros_like(a), where=a > 0)  # steps
        if self.single is not None:  # bins of several values below an occupied one: integrate
            spread = (a > 0) & (n0 > 0) & ~self.single
            a, c, n0, tp0 = a[spread], c[spread], n0[spread], tp0[spread]
            area[spread] = a * (a / c + (tp0 - a * n0 / c) * np.log1p(c / n0) / c)
        return float(area.sum() / pos)

    def f1max(self) -> float:
        """Maximum F1 = 2PR/(P+R) = 2TP/(#pos + TP + FP) over thresholds; NaN without positives."""
        pos = self.positives
        if pos == 0:
            return float("nan")
        return float(np.max(2.0 * self.tp / (pos + self.tp + self.fp)))

    def aupro(self, regions: int, fpr_limit: float = AUPRO_FPR_LIMIT) -> float:
        """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition).

        PRO = overlap / regions is integrated over FPR with the trapezoid rule from (0, 0), the
        curve is interpolated linearly at FPR = ``fpr_limit``, and the area is divided by
        ``fpr_limit``. NaN without regions or without negatives.
        """
        neg = self.negatives
        if regions == 0 or neg == 0 or self.overlap is None:
            return float("nan")
        fpr = np.concatenate([[0.0], self.fp / neg])
        pro = np.concatenate([[0.0], self.overlap / regions])
        return partial_area(fpr, pro, fpr_limit) / fpr_limit


def partial_area(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under y(x) for x in [x[0], limit], interpolating y linearly at ``limit``.

    Args:
        x: (T,) non-decreasing abscissae starting at or below ``limit``.
        y: (T,) ordinates.
        limit: upper end of the integration range on x.
    """
    inside = int(np.searchsorted(x, limit, side="right"))  # points with x <= limit
    area = float(np.trapezoid(y[:inside], x[:inside]))
    if inside < x.size and x[inside - 1] < limit:
        x0, x1, y0, y1 = x[inside - 1], x[inside], y[inside - 1], y[inside]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + y_limit) / 2.0
    return area


def ranked_curve(scores: Tensor, positive: Tensor, weights: Tensor | None = None) -> Curve:
    """Build the exact `Curve` by sorting: one threshold per distinct score.

    Args:
        scores: (n,) scores, higher = more anomalous.
        positive: (n,) bool, True for anomalous samples or pixels.
        weights: (n,) optional region-overlap weight per element (0 for negatives).

    Returns:
        The curve with one entry per distinct score, highest first.
    """
    scores = scores.reshape(-1)
    sorted_scores, order = torch.sort(scores, descending=True)
    pos = positive.reshape(-1)[order].to(torch.float64)
    last = torch.ones_like(sorted_scores, dtype=torch.bool)  # last element of each tie group
    last[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    seen = torch.arange(1, scores.numel() + 1, dtype=torch.float64, device=scores.device)
    tp = torch.cumsum(pos, 0)[last]
    fp = seen[last] - tp
    overlap = None
    if weights is not None:
        overlap = torch.cumsum(weights.reshape(-1)[order].to(torch.float64), 0)[last]
        overlap = overlap.cpu().numpy()
    return Curve(tp.cpu().numpy(), fp.cpu().numpy(), overlap)


def _as_tensor(values: ArrayLike, name: str) -> Tensor:
    tensor = torch.as_tensor(values)
    if tensor.ndim != 1:
        raise InvalidInputError(f"{name} must be one-dimensional, got shape {tuple(tensor.shape)}")
    return tensor


def _image_curve(scores: ArrayLike, labels: ArrayLike) -> Curve:
    scores_t = _as_tensor(scores, "scores").to(torch.float64)
    labels_t = _as_tensor(labels, "labels")
    if scores_t.shape != labels_t.shape:
        raise InvalidInputError(
            f"scores and labels must have the same length, got {scores_t.numel()} and "
            f"{labels_t.numel()}"
        )
    return ranked_curve(scores_t, labels_t != 0)


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Exact AUROC of (scores, labels), as ``sklearn.metrics.roc_auc_score``.

    Args:
        scores: (n,) scores, higher = more anomalous.
        labels: (n,) 0 normal, non-zero anomalous.
    """
    return _image_curve(scores, labels).auroc()


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Exact average precision, as ``sklearn.metrics.average_precision_score``.

    Args:
        scores: (n,) scores, higher = more anomalous.
        labels: (n,) 0 normal, non-zero anomalous.
    """
    return _image_curve(scores, labels).ap()


def f1_max(scores: ArrayLike, labels: ArrayLike) -> float:
    """Exact maximum F1 over all thresholds.

    Args:
        scores: (n,) scores, higher = more anomalous.
        labels: (n,) 0 normal, non-zero anomalous.
    """
    return _image_curve(scores, labels).f1max()
