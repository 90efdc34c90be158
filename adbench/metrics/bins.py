"""The bins of the streaming histograms (`adbench.metrics.streaming`) and their core range.

Bin layout (`BinLayout`): ``core_bins`` uniform bins over a core range [lo, hi], plus
``core_bins // 2`` bins on each side whose widths grow geometrically from the core bin width, by a
factor (1 + rho) per bin with rho = 32 / tail_bins, so with the default 4,096 core bins the tails
reach about 1e12 core widths past the core (values beyond fall into the outermost bin). A value at
distance d outside the core falls in a bin about rho * d wide (1.6 % of d), so far-out values, such
as one extreme pixel, occupy a bin of their own instead of stretching the core.

Core range (`calibrate_core`): the pixels of a category are first kept exactly; once
``calibration_pixels`` of them have arrived, the core is set to their 0.1 % to 99.9 % quantile
range (from a regular subsample of at most 2**18 pixels) widened by half of that range on each
side, the kept pixels are binned and freed, and every later pixel is binned as it arrives. A
single pass is enough, and one outlier pixel can neither stretch the core (the quantiles ignore
it) nor fall outside the bins (the tails catch it). Processes under DDP calibrate independently;
`histogram_curve` merges their histograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CALIBRATION_QUANTILE = 1e-3
CALIBRATION_SAMPLE = 2**18  # at most about this many pixels set the quantiles
CORE_MARGIN = 0.5
TAIL_SPAN = 32.0


@dataclass(frozen=True)
class BinLayout:
    """Bins of one category: a uniform core over [lo, hi] and geometric tails on both sides.

    Attributes:
        core_bins: uniform bins between lo and hi.
    """

    core_bins: int

    @property
    def tail_bins(self) -> int:
        """Bins on each side of the core."""
        return self.core_bins // 2

    @property
    def size(self) -> int:
        """Total number of bins."""
        return self.core_bins + 2 * self.tail_bins

    @property
    def ratio(self) -> float:
        """Relative width growth rho from one tail bin to the next."""
        return TAIL_SPAN / self.tail_bins

    def edges(self, lo: float, hi: float) -> np.ndarray:
        """Bin edges for the core [lo, hi].

        Returns:
            (size + 1,) float64 increasing edges; bin j is [edges[j], edges[j + 1]).
        """
        width = (hi - lo) / self.core_bins
        scale = width / self.ratio
        steps = np.arange(self.tail_bins + 1, dtype=np.float64)
        reach = scale * np.expm1(steps * np.log1p(self.ratio))  # distance from the core edge
        core = lo + width * np.arange(self.core_bins + 1, dtype=np.float64)
        core[-1] = hi
        return np.concatenate([lo - reach[:0:-1], core, hi + reach[1:]])

    def index(
        self,
        scores: Tensor,
        lo: Tensor,
        hi: Tensor,
        offset: Tensor,
        extremes: tuple[Tensor, Tensor],
    ) -> Tensor:
        """Bin index of each score plus a per-row offset, monotone non-decreasing in the score.

        Args:
            scores: (R, n) float scores.
            lo: (R, 1) core lower bound per row.
            hi: (R, 1) core upper bound per row.
            offset: (R, 1) added to the bin indices of the row (the category's slot).
            extremes: ``(min, max)``, each (R,), of the scores of each row.

        Returns:
            (R, n) int64 indices in [offset, offset + size).
        """
        per_unit = self.core_bins / (hi - lo)
        first = offset + self.tail_bins  # index of the first core bin
        position = torch.addcmul(first - lo * per_unit, scores, per_unit)
        rows = ((extremes[0] < lo[:, 0]) | (extremes[1] >= hi[:, 0])).nonzero()[:, 0]
        if rows.numel():  # rows with scores outside the core: find those scores
            every = rows.numel() == scores.shape[0]
            sub, sub_lo, sub_hi = (scores, lo, hi) if every else (scores[rows], lo[rows], hi[rows])
            row, col = ((sub < sub_lo) | (sub >= sub_hi)).nonzero(as_tuple=True)
            row = row if every else rows[row]
            tails = self._tails(scores[row, col], lo[row, 0], hi[row, 0], first[row, 0])
        # clamped to the core, truncation equals floor, as every position is positive
        index = torch.clamp_(position, first, first + self.core_bins - 0.5).to(torch.int64)
        if rows.numel():
            index[row, col] = tails
        return index

    def _tails(self, scores: Tensor, lo: Tensor, hi: Tensor, first: Tensor) -> Tensor:
        """Tail bin indices of scores outside their core; all arguments (m,)."""
        # tail bin k holds distances [scale((1+rho)^k - 1), scale((1+rho)^(k+1) - 1)) from the core
        scale = (hi - lo) / (self.core_bins * self.ratio)
        above = scores >= hi
        distance = torch.where(above, scores - hi, lo - scores)
        step = torch.log1p(distance / scale).div_(float(np.log1p(self.ratio))).floor_()
        step = step.clamp_(0, self.tail_bins - 1)
        index = torch.where(above, first + self.core_bins + step, first - 1 - step)
        return index.to(torch.int64)


def calibrate_core(scores: Tensor) -> tuple[float, float]:
    """Core range [lo, hi] from the first pixels of a category (see the module docstring).

    When the quantiles coincide (at least 99.8 % of the pixels share one value v, as in maps that
    are zero almost everywhere), the core is v -/+ the median distance of the other pixels to v,
    or v -/+ max(|v|, 1) for a constant input.

    Args:
        scores: (n,) pixel scores, n >= 1.

    Returns:
        ``(lo, hi)`` with lo < hi.
    """
    values = scores.reshape(-1)
    values = values[:: max(1, values.numel() // CALIBRATION_SAMPLE)].cpu().numpy()  # subsample
    k_lo = int(CALIBRATION_QUANTILE * (values.size - 1))
    k_hi = values.size - 1 - k_lo
    lo, hi = (float(v) for v in np.partition(values, (k_lo, k_hi))[[k_lo, k_hi]])
    if hi > lo:
        margin = CORE_MARGIN * (hi - lo)
        return lo - margin, hi + margin
    others = np.abs(values[values != lo].astype(np.float64) - lo)
    spread = float(np.median(others)) if others.size else max(abs(lo), 1.0)
    return lo - spread, lo + spread
