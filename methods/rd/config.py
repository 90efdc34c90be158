"""Reverse distillation configuration; the defaults are the official MVTec AD setting.

Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class Embedding", CVPR 2022,
arXiv:2201.10703. Each field says where its default comes from: "RD paper" (stated in the
paper), "RD official code" (github.com/hq-deng/RD4AD, ``main.py`` for training, ``test.py`` for
scoring, ``resnet.py`` / ``de_resnet.py`` for the networks) or "choice" with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from adbench.backbones import BackboneConfig
from adbench.contract import (
    DataDefaults,
    MethodConfig,
    OptimConfig,
    ScoringConfig,
    TrainerDefaults,
)
from adbench.distillation import BottleneckConfig
from adbench.errors import ConfigError


@dataclass(frozen=True)
class RDDecoderConfig:
    """The student decoder: one residual stage per teacher level, deepest first."""

    blocks: tuple[int, ...] = (3, 4, 6)  # RD official code: de_wide_resnet50_2, [3, 4, 6] blocks
    mid_ratio: float = 0.5  # RD official code (wide ResNet): inner width = half the output
    output_relu: bool = True  # RD official code: each deBottleneck ends with a ReLU, like the
    # post-ReLU WideResNet levels it imitates; False for signed (EfficientNet) levels


@dataclass(frozen=True)
class RDLossConfig:
    """The distillation loss summed over the levels."""

    form: Literal["flattened", "position"] = "flattened"  # RD official code (main.py
    # loss_fucntion): 1 - cos of each level flattened to one vector per image; "position": the
    # RD paper's Eq. 2, the mean over positions of the per-position 1 - cos (Eq. 1)


@dataclass(frozen=True)
class RDConfig(MethodConfig):
    """Everything that defines a reverse-distillation run; defaults = the official MVTec setting."""

    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            name="wide_resnet50_2.tv_in1k", layers=(1, 2, 3), weights="pretrained"
        )
    )  # RD official code: torchvision's ImageNet WideResNet-50-2, outputs of layer1-3
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)  # RD official code
    # (BN_layer(AttnBottleneck, 3)): 3x3 stride-2 convolutions bring layers 1-2 to layer 3, then
    # a stage of 3 bottleneck blocks of stride 2 -> 2048 x 8 x 8 at 256 px
    decoder: RDDecoderConfig = field(default_factory=RDDecoderConfig)
    loss: RDLossConfig = field(default_factory=RDLossConfig)
    data: DataDefaults = field(
        default_factory=lambda: DataDefaults(image_size=256, batch_size=16)
    )  # RD official code (main.py): image_size 256, batch_size 16
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(name="adam", lr=5e-3, betas=(0.5, 0.999))
    )  # RD official code (main.py): Adam, learning_rate 0.005, betas (0.5, 0.999), no schedule
    scoring: ScoringConfig = field(
        default_factory=lambda: ScoringConfig(sigma=4.0, pooling="max")
    )  # RD official code (test.py): Gaussian filter sigma 4 on the summed map, score = its max
    trainer: TrainerDefaults = field(
        default_factory=lambda: TrainerDefaults(max_epochs=200)
    )  # RD official code (main.py): epochs 200

    def __post_init__(self) -> None:
        levels = len(self.backbone.layers)
        if len(self.decoder.blocks) != levels:
            raise ConfigError(
                f"rd: decoder.blocks needs one entry per backbone level ({levels} for layers "
                f"{list(self.backbone.layers)}), got {list(self.decoder.blocks)}"
            )
        if min(self.decoder.blocks) < 1 or self.bottleneck.blocks < 1:
            raise ConfigError("rd: decoder.blocks and bottleneck.blocks must be >= 1")
        if self.bottleneck.stride not in (1, 2):
            raise ConfigError(f"rd: bottleneck.stride must be 1 or 2, got {self.bottleneck.stride}")
