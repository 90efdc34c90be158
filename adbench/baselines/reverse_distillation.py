"""Reverse Distillation (Deng & Li, CVPR 2022) through anomalib's `ReverseDistillationModel`.

A frozen pretrained encoder, a trainable one-class bottleneck and a decoder that reconstructs the
encoder's three feature levels from the bottleneck; the anomaly map is the per-position cosine
distance between encoder and decoder features, summed (or multiplied) over levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerationMode
from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel
from torch import Tensor, nn

from adbench.backbones import BackboneConfig
from adbench.baselines import PRESETS
from adbench.baselines.adapter import AnomalibAdapter, AnomalibConfig, backbone_arch
from adbench.batch import Batch
from adbench.contract import DataDefaults, OptimConfig, TrainerDefaults
from adbench.errors import ConfigError, unknown_name
from adbench.registry import MethodSpec, presets_from_folder

# the backbones for which anomalib has a mirrored ResNet decoder (``get_decoder``)
DECODER_BACKBONES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)


@dataclass(frozen=True)
class ReverseDistillationConfig(AnomalibConfig):
    """Reverse Distillation settings; the defaults are the paper's (Deng & Li, CVPR 2022)."""

    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            name="wide_resnet50_2.tv_in1k",  # paper Sec. 4.1: ImageNet WideResNet-50 teacher
            layers=(1, 2, 3),  # paper Sec. 3.1: the three ResNet stages feed the bottleneck
            weights="pretrained",
        )
    )
    anomaly_map_mode: Literal["add", "multiply"] = "add"  # paper Eq. 4: sum of the level maps
    data: DataDefaults = field(default_factory=lambda: DataDefaults(image_size=256, batch_size=16))
    # paper Sec. 4.1: 256 x 256 images, batch 16
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            name="adam",
            lr=0.005,
            betas=(0.5, 0.999),  # paper Sec. 4.1 (anomalib uses 0.5, 0.99)
        )
    )
    trainer: TrainerDefaults = field(default_factory=lambda: TrainerDefaults(max_epochs=200))
    # paper Sec. 4.1: 200 epochs

    def __post_init__(self) -> None:
        arch = backbone_arch(self.backbone)
        if arch not in DECODER_BACKBONES:
            raise unknown_name(
                "backbone for anomalib's reverse distillation decoder", arch, DECODER_BACKBONES
            )
        if tuple(self.backbone.layers) != (1, 2, 3):
            raise ConfigError(
                f"backbone.layers must be [1, 2, 3] for reverse distillation (the bottleneck fuses "
                f"the three ResNet stages), got {list(self.backbone.layers)}"
            )


class AnomalibReverseDistillation(AnomalibAdapter):
    """Reverse Distillation: anomalib's torch model and loss with adbench's weights and data."""

    config: ReverseDistillationConfig

    def __init__(self, config: ReverseDistillationConfig) -> None:
        super().__init__(config)
        self.freeze(self.model.encoder)
        self.loss = ReverseDistillationLoss()

    def build_model(self, backbone: str, layers: list[int]) -> nn.Module:
        """Anomalib's model (maps at ``data.image_size``), built without downloading weights."""
        size = self.config.data.image_size
        return ReverseDistillationModel(
            backbone=backbone,
            input_size=(size, size),
            layers=layers,
            anomaly_map_mode=AnomalyMapGenerationMode(self.config.anomaly_map_mode),
            pre_trained=False,
        )

    def pretrained_extractors(self) -> list[nn.Module]:
        """The encoder (teacher) receives the weights; bottleneck and decoder are trained."""
        return [self.model.encoder]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Cosine distance between encoder and decoder features (paper Eq. 3, anomalib's loss)."""
        encoder_features, decoder_features = self.model(self.normalize(batch.image))
        loss = self.loss(encoder_features, decoder_features)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss


SPEC = MethodSpec(
    name="anomalib.reverse_distillation",
    module=AnomalibReverseDistillation,
    config=ReverseDistillationConfig,
    presets=presets_from_folder(PRESETS / "reverse_distillation"),
    paper="Deng & Li, Anomaly Detection via Reverse Distillation from One-Class Embedding, "
    "CVPR 2022, arXiv:2201.10703 (implementation: anomalib)",
)
