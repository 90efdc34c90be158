"""Evaluator: per-category image, pixel and region metrics as one torchmetrics `Metric`.

A method owns it as a child module (``self.evaluator = Evaluator(categories)``), feeds it with
``update(output, batch)`` in its predict step and reads ``compute() -> MetricTable``. All states
are torchmetrics states (not persistent, so never in a checkpoint) and are gathered across
processes in ``compute``; under DDP, evaluate through the predict loop, which sees each test image
exactly once. Image metrics are always exact. Pixel metrics and AUPRO are exact in ``"exact"`` mode
(every pixel score is kept and sorted) and histogram-based in ``"streaming"`` mode (see
`adbench.metrics.streaming`; memory O(categories x bins)). Given ``objects`` (sample index ->
object id of multi-view datasets), it also reports the object-level S-AUROC, S-AP and S-F1max,
pooled from the gathered image scores at ``compute`` time (see `adbench.metrics.objects`), so the
views of one object may be scored by different processes.

Input rules are the evaluation protocol's (`adbench.protocols`; `adbench.protocols.apply.prepare`).
Under the default ``adbench`` protocol an anomaly map whose size differs from its mask is resized
bilinearly (``align_corners=False``) to the mask size and a mask pixel is anomalous when its value
is > 0.5. A NaN or inf in a map or score raises `InvalidInputError` naming the sample index.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

from adbench.batch import AnomalyOutput, Batch
from adbench.errors import InvalidInputError, unknown_name
from adbench.metrics.adeval import adeval_pixel_metrics
from adbench.metrics.aupro import label_regions
from adbench.metrics.bins import BinLayout
from adbench.metrics.objects import ViewPooling, object_keys, object_scores
from adbench.metrics.pro_thresholds import thresholded_aupro
from adbench.metrics.ranking import Curve, ranked_curve
from adbench.metrics.streaming import CHANNELS, HIGHEST, LOWEST, StreamingPixels, cat_state
from adbench.metrics.table import METRICS, OBJECT_METRICS, MetricTable
from adbench.protocols import DEFAULT_PROTOCOL, EVALUATION_MODES, Protocol, get_protocol
from adbench.protocols.apply import prepare

MODES = EVALUATION_MODES
IMAGE_COLUMNS = 4  # score, label, category, index


class MetricWarning(UserWarning):
    """A number that needs attention: undefined (reported as NaN) or counted from repeats."""


def gather_as_float64(tensor: Tensor, group: Any = None) -> list[Tensor]:
    """Gather a state from all processes in float64.

    torchmetrics stands in an empty tensor of the metric's dtype for an empty list state; gathering
    every state in one dtype keeps such a process compatible with the others.
    """
    return gather_all_tensors(tensor.to(torch.float64), group=group)


class Evaluator(StreamingPixels, Metric):
    """Per-category I-AUROC, I-AP, I-F1max, P-AUROC, P-AP, P-F1max and AUPRO.

    Args:
        categories: K category names; ``batch.category`` indexes into them.
        mode: ``"streaming"`` (histograms; the default) or ``"exact"`` (sort every pixel).
        bins: uniform core bins per category in streaming mode (plus ``bins // 2`` tail bins on
            each side).
        calibration_pixels: pixels of a category kept exactly before its bin range is fixed
            (streaming mode); a category with fewer pixels in total is evaluated exactly.
        fpr_limit: upper FPR limit of AUPRO; None: the protocol's (0.3).
        objects: object id per sample index (`SampleIndex` row id) of multi-view datasets; a
            category with objects among its test images also gets S-AUROC, S-AP and S-F1max
            (unless the protocol scores views as independent images).
        view_pooling: how view scores become an object's score: ``"max"`` (the Real-IAD
            protocol), ``"mean"`` or ``"topK"`` (mean of the K highest, e.g. ``"top2"``); None:
            the protocol's.
        protocol: the evaluation protocol (`adbench.protocols.PROTOCOLS` name or object).
        **kwargs: passed to `torchmetrics.Metric` (e.g. ``process_group``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        categories: Sequence[str],
        mode: str = "streaming",
        bins: int = 4096,
        calibration_pixels: int = 2**17,
        fpr_limit: float | None = None,
        objects: Mapping[int, str | None] | pd.Series | None = None,
        view_pooling: str | None = None,
        protocol: str | Protocol = DEFAULT_PROTOCOL,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dist_sync_fn", gather_as_float64)
        super().__init__(**kwargs)
        if mode not in MODES:
            raise unknown_name("metric mode", mode, MODES)
        if isinstance(categories, str) or not len(categories):
            raise InvalidInputError(
                f"categories must be a non-empty list of names, got {categories!r}"
            )
        if bins < 16:
            raise InvalidInputError(f"bins must be at least 16, got {bins}")
        if calibration_pixels < 1:
            raise InvalidInputError(
                f"calibration_pixels must be positive, got {calibration_pixels}"
            )
        self.categories = tuple(str(c) for c in categories)
        self.mode = mode
        self.layout = BinLayout(bins)
        self.calibration_pixels = calibration_pixels
        self.protocol = get_protocol(protocol, aupro_fpr_limit=fpr_limit, view_pooling=view_pooling)
        self.protocol.check_evaluation(mode)
        self.fpr_limit = self.protocol.aupro.fpr_limit
        pooling = self.protocol.view_pooling
        self.objects = None if objects is None or pooling is None else object_keys(objects)
        self.view_pooling = None if pooling is None else ViewPooling.parse(pooling)
        k, size = len(self.categories), self.layout.size if mode == "streaming" else 0
        self.add_state("image_rows", default=[], dist_reduce_fx="cat")
        self.add_state("pixel_scores", default=[], dist_reduce_fx="cat")
        self.add_state("pixel_weights", default=[], dist_reduce_fx="cat")
        self.add_state("pixel_chunks", default=[], dist_reduce_fx="cat")
        self.add_state("regions", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        # histograms and their cores may differ per process: gathered, merged in compute()
        histogram = torch.zeros(k, CHANNELS, size, dtype=torch.float64)
        histogram[:, LOWEST], histogram[:, HIGHEST] = float("inf"), float("-inf")
        self.add_state("histogram", default=histogram, dist_reduce_fx=None)
        core = torch.full((k, 2), float("nan"), dtype=torch.float64)  # NaN until calibrated
        self.add_state("core", default=core, dist_reduce_fx=None)

    def update(self, output: AnomalyOutput, batch: Batch) -> None:
        """Add a batch of predictions.

        Args:
            output: anomaly maps (B, 1, h, w) and image scores (B,).
            batch: reads ``mask`` (B, 1, H, W), ``label``, ``category`` and ``index`` (B,).
        """
        maps, positive, scores = prepare(
            self.protocol, output.anomaly_map.detach(), output.score.detach(), batch.mask
        )
        maps = maps[:, 0].to(torch.float32).flatten(1)
        extremes = torch.aminmax(maps, dim=1)  # NaN and inf show up here
        self._check(scores, extremes, batch)
        columns = (scores, batch.label, batch.category, batch.index)
        self.image_rows.append(torch.stack([t.to(torch.float64) for t in columns], 1).flatten())
        regions = label_regions(positive.cpu().numpy())
        if regions.pixels.size:
            self.regions.index_add_(
                0, batch.category, torch.from_numpy(regions.counts).to(self.regions)
            )
        self._add_pixels(maps, regions, batch.category, extremes)

    def compute(self) -> MetricTable:
        """Gather the states of all processes and return the per-category table with the mean."""
        images = cat_state(self.image_rows, torch.float64).reshape(-1, IMAGE_COLUMNS).cpu()
        images = self._unique_images(images)
        pixels = self._pixels_by_category()
        histogram, core = self.histogram, self.core
        if core.ndim == 2:  # not gathered: a single process
            histogram, core = histogram[None], core[None]
        objects = self._objects(images)
        values = {}
        for c, name in enumerate(self.categories):
            rows = images[images[:, 2] == c]
            image_curve = ranked_curve(rows[:, 0], rows[:, 1] > 0)
            pixel_curve = self._pixel_curve(histogram[:, c], core[:, c], *pixels.get(c, ()))
            values[name] = self._metrics(image_curve, pixel_curve, int(self.regions[c]))
            self._protocol_pixels(values[name], *pixels.get(c, (torch.zeros(0),) * 2), c)
            self._warn_undefined(name, values[name], rows[:, 1].numpy(), "test images")
            if c in objects:
                scores, labels = objects[c]
                curve = ranked_curve(torch.tensor(scores), torch.tensor(labels > 0))
                found = dict(
                    zip(OBJECT_METRICS, (curve.auroc(), curve.ap(), curve.f1max()), strict=True)
                )
                self._warn_undefined(name, found, labels, "test objects")
                values[name].update(found)
        return MetricTable.from_values(values)

    def _protocol_pixels(self, values: dict[str, float], scores: Tensor, weights: Tensor, c: int):
        """Replace pixel metrics the protocol computes its own way (exact mode: every pixel).

        Args:
            values: the category's metrics, updated in place.
            scores: (n,) float32 pixel scores of category ``c``.
            weights: (n,) 1/|region| per anomalous pixel, 0 for normal pixels.
            c: the category's position.
        """
        regions = int(self.regions[c])
        if self.protocol.pixels.kind == "strips":
            values.update(adeval_pixel_metrics(scores, weights, regions, self.protocol))
        elif self.protocol.aupro.thresholds is not None:
            values["AUPRO"] = thresholded_aupro(scores, weights, regions, self.protocol.aupro)

    def _objects(self, images: Tensor) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Pooled ``(scores, labels)``, each (objects,), of the categories that have objects."""
        if self.objects is None:
            return {}
        pooled = object_scores(images.numpy(), self.objects, self.view_pooling)
        return {
            int(c): (rows["score"].to_numpy(), rows["label"].to_numpy())
            for c, rows in pooled.groupby("category", sort=True)
        }

    def _check(self, scores: Tensor, extremes: tuple[Tensor, Tensor], batch: Batch) -> None:
        finite_map = torch.isfinite(extremes[0]) & torch.isfinite(extremes[1])
        finite = finite_map & torch.isfinite(scores)
        if not bool(finite.all()):
            i = int((~finite).nonzero()[0])
            what = "anomaly map" if not bool(finite_map[i]) else "score"
            raise InvalidInputError(
                f"the {what} of sample index {int(batch.index[i])} (position {i} in the batch) "
                "contains NaN or inf; fix the method's output before evaluating"
            )
        category, label = batch.category, batch.label
        wrong = (category < 0) | (category >= len(self.categories))
        if bool(wrong.any()):
            raise InvalidInputError(
                f"category id {int(category[wrong][0])} is out of range for the "
                f"{len(self.categories)} categories {', '.join(self.categories)}"
            )
        wrong = (label != 0) & (label != 1)
        if bool(wrong.any()):
            raise InvalidInputError(
                f"labels must be 0 (normal) or 1 (anomalous), got {int(label[wrong][0])}"
            )

    def _metrics(self, image: Curve, pixel: Curve, regions: int) -> dict[str, float]:
        values = (
            image.auroc(), image.ap(), image.f1max(),
            pixel.auroc(), pixel.ap(), pixel.f1max(),
            pixel.aupro(regions, self.fpr_limit),
        )  # fmt: skip
        return dict(zip(METRICS, values, strict=True))

    def _unique_images(self, images: Tensor) -> Tensor:
        """Keep the first row of each sample index; warn when a sample was seen twice."""
        _, first = np.unique(images[:, 3].numpy(), return_index=True)
        if first.size < images.shape[0]:
            warnings.warn(
                f"{images.shape[0] - first.size} test images were evaluated more than once (a DDP "
                "sampler that pads, or repeated updates): image metrics count each sample index "
                "once, pixel metrics include the repeats. Evaluate through the predict loop "
                "(adbench.evaluate) for exact numbers.",
                MetricWarning,
                stacklevel=3,
            )
            images = images[torch.from_numpy(np.sort(first))]
        return images

    @staticmethod
    def _warn_undefined(name: str, values: dict[str, float], labels: np.ndarray, unit: str) -> None:
        """Warn about NaN ``values`` of category ``name``, given its (n,) image or object labels."""
        undefined = [m for m, v in values.items() if np.isnan(v)]
        if not undefined:
            return
        anomalous = int((labels > 0).sum())
        reason = (
            f"no {unit}" if labels.size == 0
            else f"no anomalous {unit}" if anomalous == 0
            else f"no normal {unit}" if anomalous == labels.size
            else "no anomalous or no normal pixels in the masks"
        )  # fmt: skip
        warnings.warn(
            f"category '{name}': {', '.join(undefined)} undefined ({reason}); reported as NaN",
            MetricWarning,
            stacklevel=3,
        )
