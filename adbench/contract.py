"""The method contract: `AnomalyMethod`, the LightningModule every method subclasses.

A method writes ``__init__(config)``, ``training_step`` and ``forward(images) -> AnomalyOutput``.
The base provides the evaluation steps (which feed the `Evaluator`; it resizes maps to the mask
size), the optimiser and schedule from ``config.optim``, hyper-parameter saving as a plain
dict and a checkpoint round trip that rebuilds the typed config. It refuses to score a method
that was never fitted (`AnomalyMethod.check_fitted`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_type_hints

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn

from adbench.batch import AnomalyOutput, Batch
from adbench.config import from_dict, to_dict
from adbench.errors import AdbenchError, ConfigError, NotFittedError

if TYPE_CHECKING:
    from adbench.metrics import Evaluator


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0


@dataclass(frozen=True)
class ScoringConfig:
    """How a raw anomaly map becomes the evaluated map and the image score."""

    sigma: float = 4.0  # Gaussian smoothing in pixels at the input resolution; 0 = off
    pooling: Literal["max", "topk_mean"] = "max"
    topk_fraction: float = 0.01  # fraction of pixels averaged by "topk_mean"


@dataclass(frozen=True)
class DataDefaults:
    """Data settings a method's paper used; a sweep or the user may override them."""

    image_size: int = 256
    batch_size: int = 16


@dataclass(frozen=True)
class TrainerDefaults:
    """Trainer settings a method's paper used, merged *under* the user's trainer settings."""

    max_epochs: int | None = None
    max_steps: int = -1
    precision: str = "32-true"
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1

    def __post_init__(self) -> None:
        epochs, steps, clip = self.max_epochs, self.max_steps, self.gradient_clip_val
        for name, valid, allowed in (
            ("max_epochs", epochs is None or epochs >= 1, ">= 1 (or null: no epoch limit)"),
            ("max_steps", steps == -1 or steps >= 1, ">= 1, or -1 for no step limit"),
            ("gradient_clip_val", clip is None or clip >= 0, ">= 0 (or null: no clipping)"),
            ("accumulate_grad_batches", self.accumulate_grad_batches >= 1, ">= 1"),
        ):
            if not valid:
                raise ConfigError(f"trainer.{name} must be {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class MethodConfig:
    """Fields every method config has; a method's config subclasses this."""

    data: DataDefaults = field(default_factory=DataDefaults)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    trainer: TrainerDefaults = field(default_factory=TrainerDefaults)
    # mechanics mode: build the full architecture with random weights and load nothing, to
    # measure mechanics and cost without the weights; recorded in every result, never a default
    random_weights: bool = False


def gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing with reflect padding (truncated at 4 sigma).

    Args:
        maps: (B, 1, H, W).
        sigma: standard deviation in pixels; ``<= 0`` returns the input.
    """
    if sigma <= 0:
        return maps
    radius = max(1, math.ceil(4 * sigma))
    radius = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(maps, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    padded = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(padded, kernel.view(1, 1, -1, 1))


def pool_scores(maps: Tensor, pooling: str, topk_fraction: float) -> Tensor:
    """Image scores from anomaly maps.

    Args:
        maps: (B, 1, H, W).
        pooling: "max", or "topk_mean" (mean of the top ``topk_fraction`` of pixels).
        topk_fraction: fraction of each map's pixels averaged by "topk_mean" (at least one
            pixel); unused by "max".

    Returns:
        (B,) scores.
    """
    flat = maps.flatten(1)
    if pooling == "max":
        return flat.amax(dim=1)
    if pooling == "topk_mean":
        k = max(1, round(topk_fraction * flat.shape[1]))
        return flat.topk(k, dim=1).values.mean(dim=1)
    raise ConfigError(f"scoring.pooling must be 'max' or 'topk_mean', got {pooling!r}")


def _config_class(cls: type) -> type:
    """The dataclass named by the ``config: XConfig`` annotation of a method class.

    The nearest annotation in its MRO counts; `AnomalyMethod` itself annotates `MethodConfig`.
    """
    try:
        return get_type_hints(cls)["config"]
    except NameError as err:
        raise AdbenchError(
            f"{cls.__name__}: its annotations cannot be resolved ({err}); import "
            "the names they use at module level"
        ) from err


class AnomalyMethod(L.LightningModule):
    """Base class of every anomaly-detection method (the method contract).

    Subclasses annotate ``config: TheirConfig`` (a frozen dataclass deriving from `MethodConfig`),
    call ``super().__init__(config)`` first and then read ``self.config``.
    """

    config: MethodConfig
    method_name: ClassVar[str] = ""  # set by the registry

    def __init__(self, config: MethodConfig | Mapping[str, Any]) -> None:
        super().__init__()
        config_class = _config_class(type(self))
        if isinstance(config, Mapping):
            config = from_dict(config_class, config, context=type(self).__name__)
        if not isinstance(config, config_class):
            raise ConfigError(
                f"{type(self).__name__} expects a {config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        if config.random_weights:
            warnings.warn(
                f"{type(self).__name__}: random_weights=True builds the architecture without "
                "pretrained weights (mechanics mode); its scores measure cost, not accuracy",
                stacklevel=3,
            )
        self.save_hyperparameters({"config": to_dict(config)})
        self.evaluator: Evaluator | None = None
        # set when a fit ends; saved with the weights, so a checkpoint or state dict carries it
        self.register_buffer("fitted", torch.tensor(False))

    # -- the part a method writes -------------------------------------------------------------
    def forward(self, images: Tensor) -> AnomalyOutput:
        """Score images (B, 3, H, W) in [0, 1]; see `postprocess` for the usual last step."""
        raise NotImplementedError

    def score(self, batch: Batch) -> AnomalyOutput:
        """Score a batch in the evaluation loops: ``self(batch.image)``.

        Override to use more of the batch (e.g. per-category settings from `category_names`).
        """
        return self(batch.image)

    # -- shared helpers ----------------------------------------------------------------------
    def datamodule_categories(self) -> list[str] | None:
        """The trainer's datamodule's category names (indexed by ``Batch.category``).

        None outside a Trainer or without them.
        """
        trainer = getattr(self, "_trainer", None)
        return getattr(getattr(trainer, "datamodule", None), "categories", None)

    def category_names(self, batch: Batch) -> list[str] | None:
        """The category name of each image of ``batch``, from `datamodule_categories`.

        None outside a Trainer or without them.
        """
        categories = self.datamodule_categories()
        if categories is None:
            return None
        return [categories[i] for i in batch.category.tolist()]

    def postprocess(self, raw_map: Tensor, size: tuple[int, int]) -> AnomalyOutput:
        """Upsample a raw map to ``size``, smooth and pool it as ``config.scoring`` says.

        Args:
            raw_map: (B, 1, h, w) anomaly map at the method's resolution.
            size: (H, W) of the input images.
        """
        scoring = self.config.scoring
        maps = F.interpolate(raw_map.float(), size=size, mode="bilinear", align_corners=False)
        maps = gaussian_blur(maps, scoring.sigma)
        return AnomalyOutput(maps, pool_scores(maps, scoring.pooling, scoring.topk_fraction))

    def run_record(self) -> dict[str, Any]:
        """Facts decided at run time that a result must carry.

        E.g. which anomaly-synthesis source was actually used, or what training measured;
        written to ``result.json`` as ``run_record``. None here.
        """
        return {}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the optimiser; override to give parts their own learning rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    # -- evaluation (never re-implemented by a method) ----------------------------------------
    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> AnomalyOutput:
        """Score a test batch and feed the evaluator (which resizes maps to the mask size)."""
        output = self.score(batch)
        if self.evaluator is not None:
            self.evaluator.update(output, batch)
        return output

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Same as `predict_step`; reported numbers come from the predict loop (see evaluate)."""
        self.predict_step(batch, batch_idx, dataloader_idx)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Log the mean image score of held-out *normal* training images (lower is better)."""
        output = self.score(batch)
        self.log("val/normal_score", output.score.mean(), batch_size=len(batch), sync_dist=True)

    # -- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """Optimiser and schedule named in ``config.optim``."""
        optim = self.config.optim
        groups = self.parameter_groups()
        if optim.name == "adam":
            optimizer = torch.optim.Adam(
                groups, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay
            )
        elif optim.name == "adamw":
            optimizer = torch.optim.AdamW(
                groups, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(
                groups, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
            )
        if optim.schedule == "constant" and optim.warmup_steps == 0:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = optim.warmup_steps
        cosine = optim.schedule == "cosine"

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    # -- fitted state (never re-implemented by a method; an override of a hook calls super) -----
    def on_fit_end(self) -> None:
        """Mark the method fitted."""
        self.fitted.fill_(True)

    def on_predict_start(self) -> None:
        """Refuse to score an unfitted method (`check_fitted`)."""
        self.check_fitted()

    def on_test_start(self) -> None:
        """Refuse to score an unfitted method (`check_fitted`)."""
        self.check_fitted()

    def check_fitted(self) -> None:
        """Raise `NotFittedError` unless the method was fitted or loaded from a fitted state.

        In mechanics mode (``config.random_weights``) an unfitted method is scored, with a
        warning: its scores measure cost, not accuracy.
        """
        if bool(self.fitted):
            return
        if self.config.random_weights:
            warnings.warn(
                f"{self.method_name or type(self).__name__} was never fitted: scoring its "
                "untrained weights (random_weights=True, mechanics mode)",
                stacklevel=2,
            )
            return
        raise self.not_fitted("was never fitted")

    def not_fitted(self, what: str) -> NotFittedError:
        """The error for scoring before fitting: ``"<method> <what>: fit it first ..."``."""
        return NotFittedError(
            f"{self.method_name or type(self).__name__} {what}: fit it first "
            "(adbench.fit(method, datamodule)) or load a fitted checkpoint "
            f"({type(self).__name__}.from_checkpoint(path))"
        )

    # -- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint written while fitting holds trained weights: it loads as fitted."""
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            checkpoint["state_dict"]["fitted"] = torch.tensor(True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Weights saved before the ``fitted`` flag existed load as fitted."""
        state_dict.setdefault(prefix + "fitted", torch.tensor(True))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> AnomalyMethod:
        """Rebuild a method (typed config and weights) from a Lightning checkpoint."""
        return cls.load_from_checkpoint(path, map_location=map_location, weights_only=False)

    @staticmethod
    def freeze(module: nn.Module) -> nn.Module:
        """Freeze ``module``: no gradients, and kept in eval mode whenever the method trains."""
        module.requires_grad_(False)
        module.eval()
        module.adbench_frozen = True
        return module

    def train(self, mode: bool = True) -> AnomalyMethod:
        """Switch train/eval mode, keeping modules marked by `freeze` in eval mode."""
        super().train(mode)
        for module in self.modules():
            if getattr(module, "adbench_frozen", False):
                module.eval()
        return self
