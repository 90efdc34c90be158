"""MDD-Net configuration; the defaults are the paper's setting (Xing et al., arXiv 2504.14884).

Each field says where its default comes from: a paper section, reverse distillation (RD, Deng & Li,
CVPR 2022, whose teacher, bottleneck and decoder MDD-Net builds on), or "choice" with the reason
where the paper leaves the detail open.
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
from adbench.synthesis import SynthesisConfig


@dataclass(frozen=True)
class MemoryConfig:
    """The class-aware memory module (CMM) of the paper."""

    num_classes: int = 0  # K; paper: one slot set per training class; 0 = filled from the data
    # when the method is built for a dataset (`adbench.config.fill_num_classes`); training checks
    # it equals the number of training categories (`check_num_classes`)
    slots: int = 32  # M prototypes per class; choice: the specification's default
    temperature: float = 0.07  # tau of the cosine attention; choice: specification's default
    init_std: float = 1.0  # choice: N(0, 1) slots; the read is scale-free, training sets the scale


@dataclass(frozen=True)
class DecoderConfig:
    """The restoration (R) and identity (I) decoders, same architecture, separate weights."""

    blocks: tuple[int, ...] = (3, 4, 6)  # RD: mirror of WRN-50 layers 3, 2, 1 (deepest first)
    mid_ratio: float = 0.5  # RD (wide ResNet): inner width = half the output channels
    output_relu: bool = True  # RD: WRN levels are post-ReLU; False for signed (EfficientNet) levels
    inputs: Literal["split", "shared"] = "split"  # choice: R reads z_hat, I reads z (the abstract
    # says the memory steers the restoration path; which decoder reads it is not stated);
    # shared: both read [z; z_hat]


@dataclass(frozen=True)
class LossConfig:
    """Weights of L_res + L_id + L_dist (paper: summed with weight 1) and of the CMM losses."""

    restoration: float = 1.0  # L_res = 1 - cos(R(a), T(n)) (paper)
    identity: float = 1.0  # L_id = 1 - cos(I(a), T(a)) (paper)
    discrepancy: float = 1.0  # L_dist = |(1 - cos_px(R(a), I(a))) - m| (paper)
    class_evidence: float = 0.1  # choice: CE of per-class attention mass; small aid to the memory
    compactness: float = 0.1  # choice: token-to-nearest-own-class-slot distance, same weight


@dataclass(frozen=True)
class MDDNetScoringConfig(ScoringConfig):
    """Map smoothing and pooling (base fields) plus how A_TR and A_RI are fused."""

    sigma: float = 4.0  # RD: Gaussian sigma 4 on the upsampled map (the paper does not say)
    pooling: Literal["max", "topk_mean"] = "max"  # RD: image score = max of the map
    fusion: Literal["sum", "max"] = "sum"  # choice: the paper "fuses" the two maps; sum is neutral
    fusion_weights: tuple[float, float] = (1.0, 1.0)  # choice: (w_TR, w_RI), equal weight


def _synthesis() -> SynthesisConfig:
    # paper: "synthetic abnormal inputs", no parameters given. Choice: DRAEM's Perlin recipe
    # (p = 0.5, scales 2^[0, 6), threshold 0.5, random rotation) with anomaly opacity ~ U(0.1, 1).
    # SynthesisConfig.beta is the share of the image that is kept (1 - opacity), hence (0.0, 0.9).
    # Fill: DTD when synthesis.dtd_root is set, else the CC0 scikit-image textures ("auto"); the
    # source used is recorded in each run's run_record.
    return SynthesisConfig(
        probability=0.5,
        perlin_scales=(0, 5),
        threshold=0.5,
        rotate=True,
        beta=(0.0, 0.9),
        source="auto",
    )


@dataclass(frozen=True)
class MDDNetConfig(MethodConfig):
    """Everything that defines an MDD-Net run; defaults = the paper's MVTec AD setting."""

    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            name="wide_resnet50_2.tv_in1k", layers=(1, 2, 3), weights="pretrained"
        )
    )  # paper
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    synthesis: SynthesisConfig = field(default_factory=_synthesis)
    data: DataDefaults = field(
        default_factory=lambda: DataDefaults(image_size=256, batch_size=16)
    )  # paper: 256 px; batch: RD's 16
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(name="adam", lr=5e-3, betas=(0.5, 0.999))
    )  # choice: RD's optimiser (paper gives none)
    scoring: MDDNetScoringConfig = field(default_factory=MDDNetScoringConfig)
    trainer: TrainerDefaults = field(
        default_factory=lambda: TrainerDefaults(max_epochs=200)
    )  # choice: RD's 200 epochs for MVTec-size unified training

    def __post_init__(self) -> None:
        levels = len(self.backbone.layers)
        if len(self.decoder.blocks) != levels:
            raise ConfigError(
                f"mddnet: decoder.blocks needs one entry per backbone level "
                f"({levels} for layers {list(self.backbone.layers)}), got "
                f"{list(self.decoder.blocks)}"
            )
        if min(self.decoder.blocks) < 1 or self.bottleneck.blocks < 1:
            raise ConfigError("mddnet: decoder.blocks and bottleneck.blocks must be >= 1")
        if self.bottleneck.stride not in (1, 2):
            raise ConfigError(
                f"mddnet: bottleneck.stride must be 1 or 2, got {self.bottleneck.stride}"
            )
        if self.memory.num_classes < 0 or self.memory.slots < 1:
            raise ConfigError(
                f"mddnet: memory.num_classes must be >= 0 (0 = from the data) and "
                f"memory.slots >= 1, got {self.memory.num_classes} and "
                f"{self.memory.slots}"
            )
        if self.memory.temperature <= 0:
            raise ConfigError(
                f"mddnet: memory.temperature must be > 0, got {self.memory.temperature}"
            )
