"""The adapter shared by every anomalib baseline: anomalib's torch model inside an `AnomalyMethod`.

anomalib's torch models expect normalised images and create their timm backbones themselves
(``pretrained=True`` downloads from the model hub). The adapter builds them with
``pre_trained=False`` and loads the weights named by ``config.backbone.weights`` through adbench's
backbone module (hub cache, a local file or the offline EfficientNet-Lite0 weights; missing weights
raise `WeightsNotFoundError`, never a silent random init), strictly, into anomalib's extractor. It
normalises [0, 1] images with the mean and std that belong to those weights, and turns anomalib's
``InferenceBatch`` into an `AnomalyOutput` with the shared `postprocess`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor, nn

from adbench.backbones import BackboneConfig, FeatureExtractor
from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod, MethodConfig, ScoringConfig
from adbench.errors import AdbenchError, ConfigError

if TYPE_CHECKING:
    from anomalib.data import InferenceBatch


@dataclass(frozen=True)
class AnomalibConfig(MethodConfig):
    """Fields shared by the anomalib baselines; each model's config sets the paper's defaults."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # anomalib's map generators already smooth with sigma = 4 px where the papers do; the shared
    # post-processing adds no second smoothing by default (choice: outputs equal anomalib's).
    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(sigma=0.0))


def backbone_arch(backbone: BackboneConfig) -> str:
    """The timm architecture without its pretrained tag (``wide_resnet50_2.tv_in1k`` -> ...2)."""
    return backbone.name.split(".")[0]


def weights_source(backbone: BackboneConfig, random_weights: bool = False) -> FeatureExtractor:
    """The weighted timm feature model anomalib's extractor is loaded from.

    Built exactly as anomalib's `TimmFeatureExtractor` builds its model (``features_only``,
    ``exportable``, ``out_indices = backbone.layers``) so the state dicts match key for key.

    Raises:
        WeightsNotFoundError: the weights are not in the hub cache / file / package.
        ConfigError: ``backbone.timm_kwargs`` is set (anomalib creates the model itself).
    """
    if backbone.timm_kwargs:
        raise ConfigError(
            f"backbone.timm_kwargs {backbone.timm_kwargs} cannot be used with anomalib baselines: "
            "anomalib creates the timm model itself; remove backbone.timm_kwargs"
        )
    return FeatureExtractor(
        dataclasses.replace(backbone, timm_kwargs={"exportable": True}),
        random_weights=random_weights,
    )


class AnomalibAdapter(AnomalyMethod):
    """Base of the anomalib adapters: weights, normalisation and the `AnomalyOutput`.

    Subclasses implement `build_model` (anomalib's torch model, built without downloads) and
    `pretrained_extractors` (anomalib's extractors that receive the backbone weights).
    """

    config: AnomalibConfig

    def __init__(self, config: AnomalibConfig) -> None:
        super().__init__(config)
        # fails fast, before the model is built
        source = weights_source(self.config.backbone, self.config.random_weights)
        self.register_buffer("mean", source.mean.clone(), persistent=False)
        self.register_buffer("std", source.std.clone(), persistent=False)
        self.backbone_channels: list[int] = list(source.channels)
        self.model = self.build_model(
            backbone_arch(self.config.backbone), list(self.config.backbone.layers)
        )
        weights = source.model.state_dict()
        for extractor in self.pretrained_extractors():
            extractor.feature_extractor.load_state_dict(weights, strict=True)

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Score images (B, 3, H, W) in [0, 1] with anomalib's model in eval mode."""
        output = self.infer(images)
        return self.postprocess(output.anomaly_map, images.shape[-2:])

    def infer(self, images: Tensor) -> InferenceBatch:
        """Anomalib's output: ``anomaly_map`` (B, 1, H', W'), ``pred_score`` (B,) or (B, 1)."""
        if self.model.training:
            raise AdbenchError(
                f"{type(self).__name__}.forward scores images and needs eval mode: "
                "call .eval() first"
            )
        return self.model(self.normalize(images))

    def normalize(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> normalised with the backbone weights' mean and std."""
        return (images - self.mean) / self.std

    # -- the part an adapter writes ---------------------------------------------------------------
    def build_model(self, backbone: str, layers: list[int]) -> nn.Module:
        """Anomalib's torch model for ``backbone`` (bare timm name) and timm ``layers``."""
        raise NotImplementedError

    def pretrained_extractors(self) -> list[nn.Module]:
        """The anomalib ``TimmFeatureExtractor`` modules of ``self.model`` that take the weights."""
        raise NotImplementedError


class MemoryBankAdapter(AnomalibAdapter):
    """Base of models fitted from one pass of frozen features (PatchCore, PaDiM).

    Nothing is optimised: training steps collect features of the batch, and the bank (or the
    statistics) is built when the pass over the training images ends (before validation, at the
    end of the epoch, at the end of fit, whichever comes first). Each epoch rebuilds it from that
    epoch's images, so extra epochs change nothing. The bank lives in buffers, so it is saved in
    checkpoints.
    """

    def __init__(self, config: AnomalibConfig) -> None:
        super().__init__(config)
        self.model.requires_grad_(False)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """Collect the features of a batch of normal images (no loss: nothing is trained)."""
        self.collect(self.normalize(batch.image))

    def infer(self, images: Tensor) -> InferenceBatch:
        """Anomalib's ``InferenceBatch``; an unfitted model is a named error, not anomalib's."""
        if not self.has_memory():
            raise self.not_fitted("has no memory yet")
        return super().infer(images)

    def on_fit_start(self) -> None:
        """The bank is built in one process; several would each build a different one."""
        if self.trainer.world_size > 1:
            raise ConfigError(
                f"{self.method_name or type(self).__name__} builds its memory in one process; "
                f"run it with devices=1 (got {self.trainer.world_size} processes)"
            )

    def on_train_epoch_start(self) -> None:
        """Start a fresh pass over the training images."""
        self.reset_collection()

    def on_validation_start(self) -> None:
        """Build the bank before the first validation uses it."""
        self.build_if_pending()

    def on_train_epoch_end(self) -> None:
        """Build the bank from this epoch's features."""
        self.build_if_pending()

    def on_fit_end(self) -> None:
        """Build the bank if a step budget ended the epoch early; the method is then fitted."""
        self.build_if_pending()
        super().on_fit_end()

    def configure_optimizers(self) -> None:
        """No optimiser: the backbone is frozen and the bank is not learned by gradients."""
        return None

    # -- the part a memory-bank model writes ----------------------------------------------------
    def has_memory(self) -> bool:
        """Whether the bank (or the statistics) has been built."""
        raise NotImplementedError

    def collect(self, images: Tensor) -> None:
        """Add the features of normalised images (B, 3, H, W) to the pending collection."""
        raise NotImplementedError

    def reset_collection(self) -> None:
        """Drop features collected but not yet built into the bank."""
        raise NotImplementedError

    def build_if_pending(self) -> None:
        """Build the bank from the collected features, if any, and drop the collection."""
        raise NotImplementedError
