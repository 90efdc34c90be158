"""`Protocol`: the rules that turn a method's maps, scores and masks into reported numbers.

A protocol fixes everything between a method's output and the metrics: the central crop and the
evaluation resolution of maps and masks, how masks are resized and binarised, the smoothing of
the map, the image score, the AUPRO variant, the aggregation over categories and the pooling of
multi-view objects. The built-in protocols (`adbench.protocols.builtin`) are adbench's own and
those of the official code of papers, each field citing the official file and line it follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from adbench.errors import ConfigError
from adbench.protocols.card import AUPRO_FPR_LIMIT, EVALUATION_MODES

Resize = Literal["nearest", "bilinear"]
Padding = Literal["zeros", "symmetric", "reflect", "replicate"]
ScoreRule = Literal["method", "max", "top_fraction", "top_k"]
FprNormalisation = Literal["limit", "max_kept"]


@dataclass(frozen=True)
class Smoothing:
    """A Gaussian filter applied to the map at the evaluation resolution.

    Attributes:
        sigma: standard deviation in pixels.
        kernel_size: full width of the (square, separable) kernel in pixels, odd.
        padding: how the border is extended: ``zeros`` (a zero-padded convolution),
            ``symmetric`` (``b a | a b c``, scipy's ``reflect``), ``reflect`` (``c b | a b c``,
            torch's and kornia's ``reflect``, scipy's ``mirror``) or ``replicate``.
    """

    sigma: float
    kernel_size: int
    padding: Padding

    def __post_init__(self) -> None:
        if self.sigma <= 0 or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(
                f"smoothing needs sigma > 0 and an odd kernel_size, got sigma={self.sigma}, "
                f"kernel_size={self.kernel_size}"
            )


@dataclass(frozen=True)
class ImageScore:
    """How an image's score is read.

    Attributes:
        rule: ``method`` (the method's own score), ``max`` of the evaluated map, ``top_fraction``
            (mean of the ``int(value * pixels)`` highest pixels, at least one) or ``top_k`` (mean of
            the ``value`` highest pixels).
        value: the fraction or the pixel count; unused by ``method`` and ``max``.
    """

    rule: ScoreRule = "method"
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.rule == "top_fraction" and not 0 < self.value <= 1:
            raise ConfigError(f"image_score top_fraction must be in (0, 1], got {self.value}")
        if self.rule == "top_k" and (self.value < 1 or self.value != int(self.value)):
            raise ConfigError(f"image_score top_k must be a positive integer, got {self.value}")


@dataclass(frozen=True)
class AuproRule:
    """Which AUPRO: the exact area or an official N-threshold approximation.

    Attributes:
        thresholds: None for the exact area (every distinct score is a threshold); N for N
            thresholds evenly spaced from the category's lowest map value (``np.arange(min, max,
            (max - min) / N)``), a pixel counting as anomalous when its value is above one.
        fpr_limit: the upper FPR limit (0.3 for MVTec AD).
        fpr_normalisation: ``limit`` divides the area up to the limit (the curve interpolated at
            it) by the limit; ``max_kept`` keeps the points with FPR < limit and divides their FPR
            by the largest kept one before integrating (the official Dinomaly / INP-Former code).
    """

    thresholds: int | None = None
    fpr_limit: float = AUPRO_FPR_LIMIT
    fpr_normalisation: FprNormalisation = "limit"

    def __post_init__(self) -> None:
        if self.thresholds is not None and self.thresholds < 2:
            raise ConfigError(f"aupro thresholds must be None or >= 2, got {self.thresholds}")
        if not 0 < self.fpr_limit <= 1:
            raise ConfigError(f"aupro fpr_limit must be in (0, 1], got {self.fpr_limit}")


@dataclass(frozen=True)
class PixelRule:
    """How the pixel metrics P-AUROC, P-AP, P-F1max and AUPRO are computed.

    Attributes:
        kind: ``sorted`` (adbench's exact or streaming curves, with `AuproRule`) or ``strips``
            (ADEval's equal-width histogram of ``strips`` bins between each category's lowest
            and highest map value, as ADer and INP-Former use; see `adbench.metrics.adeval`).
        strips: the number of bins of ``strips``.
        f1_thresholds: None, or the number of evenly spaced thresholds on each category's
            min-max normalised maps at which P-F1max is read (ADer: 21, 0 to 1 by 0.05).
    """

    kind: Literal["sorted", "strips"] = "sorted"
    strips: int | None = None
    f1_thresholds: int | None = None

    def __post_init__(self) -> None:
        if (self.kind == "strips") != (self.strips is not None):
            raise ConfigError("pixel rule: strips must be set exactly when kind is 'strips'")
        if self.strips is not None and self.strips < 2:
            raise ConfigError(f"pixel rule: strips must be >= 2, got {self.strips}")
        if self.f1_thresholds is not None and self.f1_thresholds < 2:
            raise ConfigError(f"pixel rule: f1_thresholds must be >= 2, got {self.f1_thresholds}")


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol.

    Attributes:
        name: the name a sweep, the CLI and the API use (``adbench``, ``dinomaly`` ...).
        summary: one line on where it comes from.
        crop_fraction: the central crop of maps and masks, as a fraction of their side at the
            loaded image size (1 = no crop; Dinomaly: 392 / 448).
        eval_size: the side maps and masks are resized to after the crop; None keeps the loaded
            mask size.
        mask_load: how a mask file is resized to the loaded image size (``nearest`` of the
            binary mask, or ``bilinear`` of its 0/1 values, kept fractional).
        mask_resize: how the (cropped) mask is resized to ``eval_size``.
        mask_threshold: a mask pixel is anomalous when its value is above this.
        map_resize: how the map is resized (to the loaded mask size, then to ``eval_size``);
            bilinear always with ``align_corners=False``.
        smoothing: the protocol's own map smoothing, which replaces the method's (its
            ``scoring.sigma`` is set to 0); None leaves the method's own smoothing.
        image_score: the image score rule.
        aupro: the AUPRO variant (its FPR limit holds for every pixel rule).
        pixels: how the pixel metrics are computed.
        aggregation: how per-category numbers become the reported one.
        view_pooling: how the views of a multi-view object (Real-IAD) pool into its score; None
            scores views as independent images (no object metrics).
        evaluation_modes: the metric modes (`EVALUATION_MODES`) the protocol allows; the first is
            its default. The papers' protocols sort every pixel (``exact``).
        sources: field name -> the official file and line the value comes from.
    """

    name: str
    summary: str
    crop_fraction: float = 1.0
    eval_size: int | None = None
    mask_load: Resize = "nearest"
    mask_resize: Resize = "nearest"
    mask_threshold: float = 0.5
    map_resize: Resize = "bilinear"
    smoothing: Smoothing | None = None
    image_score: ImageScore = field(default_factory=ImageScore)
    aupro: AuproRule = field(default_factory=AuproRule)
    pixels: PixelRule = field(default_factory=PixelRule)
    aggregation: str = "macro: each metric per category, then the unweighted mean"
    view_pooling: str | None = "max"
    evaluation_modes: tuple[str, ...] = EVALUATION_MODES
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.crop_fraction <= 1:
            raise ConfigError(f"protocol {self.name}: crop_fraction must be in (0, 1]")
        if not self.evaluation_modes or set(self.evaluation_modes) - set(EVALUATION_MODES):
            raise ConfigError(
                f"protocol {self.name}: evaluation_modes must be among {EVALUATION_MODES}"
            )
        if self.eval_size is not None and self.eval_size < 1:
            raise ConfigError(f"protocol {self.name}: eval_size must be None or positive")
        unknown = sorted(set(self.sources) - set(self.fields()))
        if unknown:
            raise ConfigError(f"protocol {self.name}: sources name unknown fields {unknown}")

    @property
    def smooths(self) -> bool:
        """Whether the protocol smooths the map itself (and the method must not)."""
        return self.smoothing is not None

    def default_evaluation(self) -> str:
        """The metric mode used when none is given."""
        return self.evaluation_modes[0]

    def check_evaluation(self, mode: str) -> str:
        """``mode`` if the protocol allows it, else a `ConfigError` naming the allowed ones."""
        if mode not in self.evaluation_modes:
            raise ConfigError(
                f"protocol {self.name!r} evaluates in {' or '.join(self.evaluation_modes)} mode "
                f"(its official code sorts every pixel), got evaluation: {mode}"
            )
        return mode

    def fields(self) -> dict[str, Any]:
        """The rules as plain data (no name, summary or sources): what a card records."""
        rules = asdict(self)
        for key in ("name", "summary", "sources"):
            rules.pop(key)
        rules["evaluation_modes"] = list(self.evaluation_modes)
        return rules


def differing_rules(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """The rule names (`Protocol.fields`) whose values differ between two protocols' rules."""
    keys = list(dict.fromkeys([*first, *second]))
    return [k for k in keys if k != "evaluation_modes" and first.get(k) != second.get(k)]
