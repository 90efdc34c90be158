"""Fixed-size histograms of pixel scores for streaming pixel metrics and AUPRO.

Per category, five histograms over the same bins (channels) hold the normal-pixel counts, the
anomalous-pixel counts, the summed region-overlap weights (1/|region| per anomalous pixel) and
the lowest and highest score seen in each bin. Every threshold metric is read off the cumulative
sums from the top bin down (`histogram_curve`), so memory is O(bins) per category, whatever the
number of images. The per-bin extremes tell a bin of tied scores (quantised maps), which average
precision treats as one step as scikit-learn does, from a bin of distinct scores, over which it
integrates (`Curve.ap`).

The bins and the calibration of their core range are `adbench.metrics.bins`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from adbench.metrics.aupro import Regions
from adbench.metrics.bins import BinLayout, calibrate_core
from adbench.metrics.ranking import Curve, ranked_curve

NEGATIVE, POSITIVE, OVERLAP, LOWEST, HIGHEST = range(5)  # histogram channels
CHANNELS = 5


def histogram_curve(
    layout: BinLayout,
    cores: Sequence[tuple[float, float]],
    histograms: Sequence[Tensor],
    raw_scores: Tensor,
    raw_weights: Tensor,
) -> Curve:
    """Merge per-process histograms and leftover raw pixels of one category into a `Curve`.

    Histograms binned with the same core add up exactly. Histograms with different cores (two
    processes calibrated on different pixels) are re-binned onto the union of all edges by
    `_resample`.

    Args:
        layout: the bin layout shared by all histograms.
        cores: one (lo, hi) per histogram, at least one.
        histograms: (CHANNELS, size) float64 histograms, one per core.
        raw_scores: (n,) pixel scores not yet binned.
        raw_weights: (n,) their overlap weights (0 for normal pixels).

    Returns:
        The curve with one threshold per bin edge, highest first.
    """
    edges = [layout.edges(lo, hi) for lo, hi in cores]
    stacked = [h.detach().cpu().to(torch.float64).numpy() for h in histograms]
    grid = edges[0]
    if all(np.array_equal(e, grid) for e in edges[1:]):
        merged = np.sum(stacked, axis=0)
        merged[LOWEST] = np.min([h[LOWEST] for h in stacked], axis=0)
        merged[HIGHEST] = np.max([h[HIGHEST] for h in stacked], axis=0)
    else:
        grid = np.unique(np.concatenate(edges))
        parts = [_resample(e, h, grid) for e, h in zip(edges, stacked, strict=True)]
        merged = np.sum(parts, axis=0)
        merged[LOWEST] = np.min([p[LOWEST] for p in parts], axis=0)
        merged[HIGHEST] = np.max([p[HIGHEST] for p in parts], axis=0)
    if raw_scores.numel():
        _add_raw(merged, grid, raw_scores, raw_weights)
    top_down = np.cumsum(merged[: OVERLAP + 1, ::-1], axis=1)
    single = (merged[LOWEST] == merged[HIGHEST])[::-1]
    return Curve(top_down[POSITIVE], top_down[NEGATIVE], top_down[OVERLAP], single=single)


def _resample(edges: np.ndarray, histogram: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Re-bin one histogram onto a finer grid that contains all of its edges.

    A bin whose lowest and highest score are equal moves whole into the sub-bin holding that
    score; any other bin is spread uniformly over [lowest, highest], the model behind the
    trapezoid rule.

    Args:
        edges: (size + 1,) edges of ``histogram``.
        histogram: (CHANNELS, size).
        grid: (J + 1,) increasing edges, a superset of ``edges``.

    Returns:
        (CHANNELS, J) histogram on ``grid``.
    """
    size, parts = histogram.shape[1], grid.size - 1
    source = np.clip(np.searchsorted(edges, grid[:-1], side="right") - 1, 0, size - 1)
    lo = np.clip(histogram[LOWEST], edges[:-1], edges[1:])[source]  # scores clamped into the
    hi = np.clip(histogram[HIGHEST], edges[:-1], edges[1:])[source]  # outermost bins included
    start, end = grid[:-1], grid[1:]
    inside = (grid[:-1] >= edges[0]) & (grid[1:] <= edges[-1])
    spread = np.clip(np.minimum(hi, end) - np.maximum(lo, start), 0, None) / np.where(
        hi > lo, hi - lo, 1.0
    )
    first = np.searchsorted(grid, edges[:-1])[source]  # sub-bins of each source bin
    last = np.searchsorted(grid, edges[1:])[source] - 1
    holder = np.clip(np.searchsorted(grid, hi, side="right") - 1, first, last)
    share = np.where(hi > lo, spread, (holder == np.arange(parts)).astype(np.float64))
    occupied = histogram[NEGATIVE][source] + histogram[POSITIVE][source] > 0
    share = np.where(inside & occupied, share, 0.0)
    resampled = np.empty((CHANNELS, parts))
    resampled[: OVERLAP + 1] = histogram[: OVERLAP + 1, source] * share
    resampled[LOWEST] = np.where(share > 0, np.maximum(lo, start), np.inf)
    resampled[HIGHEST] = np.where(share > 0, np.minimum(hi, end), -np.inf)
    return resampled


def _add_raw(histogram: np.ndarray, grid: np.ndarray, scores: Tensor, weights: Tensor) -> None:
    """Add unbinned pixels, scores and weights (n,), to a (CHANNELS, J) histogram on ``grid``."""
    values = scores.detach().cpu().to(torch.float64).numpy()
    overlap = weights.detach().cpu().to(torch.float64).numpy()
    bins = np.clip(np.searchsorted(grid, values, side="right") - 1, 0, grid.size - 2)
    positive = overlap > 0
    parts = grid.size - 1
    histogram[NEGATIVE] += np.bincount(bins[~positive], minlength=parts)
    histogram[POSITIVE] += np.bincount(bins[positive], minlength=parts)
    histogram[OVERLAP] += np.bincount(bins, weights=overlap, minlength=parts)
    np.minimum.at(histogram[LOWEST], bins, values)
    np.maximum.at(histogram[HIGHEST], bins, values)


def _select(regions: Regions, rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Anomalous pixels of the chosen ``rows`` (sorted), re-indexed into ``maps[rows]``."""
    image, offset = np.divmod(regions.pixels, length)
    slot = np.full(regions.counts.size, -1)
    slot[rows] = np.arange(rows.size)
    keep = slot[image] >= 0
    return slot[image[keep]] * length + offset[keep], regions.weights[keep]


def cat_state(state: list[Tensor] | Tensor, dtype: torch.dtype) -> Tensor:
    """A torchmetrics list state (or its gathered tensor) as one flat tensor of ``dtype``."""
    if isinstance(state, Tensor):
        return state.to(dtype)
    return torch.cat([t.to(dtype) for t in state]) if state else torch.zeros(0, dtype=dtype)


class StreamingPixels:
    """The pixel half of `adbench.metrics.Evaluator`: buffer, calibrate and bin pixel scores.

    A mixin over the Evaluator's torchmetrics states (``pixel_scores``, ``pixel_weights``,
    ``pixel_chunks`` list states; ``histogram`` (K, CHANNELS, bins) and ``core`` (K, 2) tensors)
    and its ``mode``, ``layout`` and ``calibration_pixels``; kept here with the histogram
    arithmetic it drives. In exact mode every pixel stays buffered.
    """

    mode: str
    layout: BinLayout
    calibration_pixels: int
    pixel_scores: list[Tensor]
    pixel_weights: list[Tensor]
    pixel_chunks: list[Tensor]
    histogram: Tensor
    core: Tensor

    def _add_pixels(
        self, maps: Tensor, regions: Regions, categories: Tensor, extremes: tuple[Tensor, Tensor]
    ) -> None:
        """Buffer or bin the pixels of B images: maps (B, n) float32, categories (B,)."""
        waiting = ~torch.isfinite(self.core[categories, 0])
        for c in categories[waiting].unique().tolist():
            rows = (categories == c).nonzero()[:, 0]
            pixels, weights = _select(regions, rows.cpu().numpy(), maps.shape[1])
            chunk = maps[rows].flatten()
            if self.mode == "streaming" and self._ready(c, chunk.numel()):
                self._calibrate(c, chunk)  # these rows are binned below
                continue
            overlap = torch.zeros_like(chunk)
            overlap[torch.from_numpy(pixels).to(chunk.device)] = torch.from_numpy(weights).to(chunk)
            self.pixel_scores.append(chunk)
            self.pixel_weights.append(overlap)
            info = torch.tensor([c, chunk.numel()], dtype=torch.float64, device=chunk.device)
            self.pixel_chunks.append(info)
        binned = torch.isfinite(self.core[categories, 0])
        if bool(binned.all()):
            self._bin(maps, regions.pixels, regions.weights, categories, extremes)
        elif bool(binned.any()):
            rows = binned.nonzero()[:, 0]
            pixels, weights = _select(regions, rows.cpu().numpy(), maps.shape[1])
            self._bin(
                maps[rows],
                pixels,
                weights,
                categories[rows],
                (extremes[0][rows], extremes[1][rows]),
            )

    def _bin(
        self,
        scores: Tensor,
        pixels: np.ndarray,
        weights: np.ndarray,
        categories: Tensor,
        extremes: tuple[Tensor, Tensor],
    ) -> None:
        """Add rows of pixels to the histograms.

        Args:
            scores: (R, n) float32 pixel scores.
            pixels: (P,) flat indices into ``scores`` of the anomalous pixels.
            weights: (P,) their overlap weights.
            categories: (R,) category of each row.
            extremes: ``(min, max)`` of each row, each (R,).
        """
        present, local = torch.unique(categories, return_inverse=True)
        size, device = self.layout.size, scores.device
        core = self.core[categories].to(scores.dtype)
        offset = (local * size)[:, None].to(scores.dtype)
        index = self.layout.index(scores, core[:, :1], core[:, 1:], offset, extremes).flatten()
        scores = scores.flatten()
        positive = index[torch.from_numpy(pixels).to(device)]
        length = len(present) * size
        total = torch.zeros(length, dtype=torch.int64, device=device)
        total.index_add_(0, index, torch.ones(1, dtype=torch.int64, device=device).expand_as(index))
        counts = torch.zeros(CHANNELS, length, dtype=torch.float64, device=device)
        counts[POSITIVE].index_add_(0, positive, torch.ones_like(positive, dtype=torch.float64))
        counts[OVERLAP].index_add_(0, positive, torch.from_numpy(weights).to(counts))
        counts[NEGATIVE] = total - counts[POSITIVE]
        for channel, reduce, start in ((LOWEST, "amin", np.inf), (HIGHEST, "amax", -np.inf)):
            extreme = torch.full((length,), start, dtype=scores.dtype, device=device)
            counts[channel] = extreme.scatter_reduce_(0, index, scores, reduce)
        counts = counts.reshape(CHANNELS, len(present), size).transpose(0, 1)
        current = self.histogram[present]
        current[:, : OVERLAP + 1] += counts[:, : OVERLAP + 1]
        current[:, LOWEST] = torch.minimum(current[:, LOWEST], counts[:, LOWEST])
        current[:, HIGHEST] = torch.maximum(current[:, HIGHEST], counts[:, HIGHEST])
        self.histogram[present] = current

    def _ready(self, category: int, arriving: int) -> bool:
        """Whether the buffered and ``arriving`` pixels of ``category`` suffice to calibrate."""
        ids = self._chunk_ids()
        buffered = sum(self.pixel_scores[i].numel() for i, k in enumerate(ids) if k == category)
        return buffered + arriving >= self.calibration_pixels

    def _calibrate(self, category: int, arriving: Tensor) -> None:
        """Fix the core of a category from its buffered and ``arriving`` (n,) pixels.

        The buffered pixels are binned and freed; the caller bins the arriving ones.
        """
        mine = [i for i, k in enumerate(self._chunk_ids()) if k == category]
        scores = torch.cat([self.pixel_scores[i] for i in mine] + [arriving])
        self.core[category] = torch.tensor(calibrate_core(scores), dtype=torch.float64)
        if mine:
            scores = scores[: scores.numel() - arriving.numel()]
            weights = torch.cat([self.pixel_weights[i] for i in mine])
            pixels = weights.nonzero()[:, 0]
            self._bin(
                scores[None],
                pixels.cpu().numpy(),
                weights[pixels].cpu().numpy().astype(np.float64),
                torch.tensor([category], device=scores.device),
                (scores.min()[None], scores.max()[None]),
            )
        for i in reversed(mine):
            del self.pixel_scores[i], self.pixel_weights[i], self.pixel_chunks[i]

    def _chunk_ids(self) -> list[int]:
        """Category of each buffered chunk."""
        return [int(t[0]) for t in self.pixel_chunks]

    def _pixels_by_category(self) -> dict[int, tuple[Tensor, Tensor]]:
        """Buffered pixel scores and weights of every process, grouped by category."""
        chunks = cat_state(self.pixel_chunks, torch.float64).reshape(-1, 2).long().tolist()
        scores = torch.split(cat_state(self.pixel_scores, torch.float32), [n for _, n in chunks])
        weights = torch.split(cat_state(self.pixel_weights, torch.float32), [n for _, n in chunks])
        grouped: dict[int, tuple[list[Tensor], list[Tensor]]] = {}
        for (c, _), s, w in zip(chunks, scores, weights, strict=True):
            grouped.setdefault(c, ([], []))[0].append(s)
            grouped[c][1].append(w)
        return {c: (torch.cat(s), torch.cat(w)) for c, (s, w) in grouped.items()}

    def _pixel_curve(
        self,
        histogram: Tensor,
        core: Tensor,
        scores: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> Curve:
        """The pixel curve of one category from its histograms (P, 3, bins) and cores (P, 2)."""
        if scores is None or weights is None:
            scores = weights = torch.zeros(0)
        calibrated = torch.isfinite(core[:, 0]).tolist()
        if not any(calibrated):
            return ranked_curve(scores, weights > 0, weights)
        cores = [tuple(core[p].tolist()) for p, ok in enumerate(calibrated) if ok]
        histograms = [histogram[p] for p, ok in enumerate(calibrated) if ok]
        return histogram_curve(self.layout, cores, histograms, scores, weights)
