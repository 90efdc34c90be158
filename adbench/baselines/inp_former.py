"""INP-Former (Luo et al., CVPR 2025, arXiv:2503.02424) through anomalib's `InpFormerModel`.

The same frozen DINOv2-R encoder and layer groups as Dinomaly; an INP extractor aggregates each
image's patch tokens into a few intrinsic normal prototypes (INPs) with learnable queries, and an
INP-guided decoder reconstructs the encoder features with the INPs as keys and values. Trained
with anomalib's adaptive hard-mining cosine loss plus the INP coherence loss. Built, weighted,
cropped, scored and optimised like `anomalib.dinomaly` (`DinoReconstruction`).

Chosen as the second current multi-class method because the paper targets the unified
multi-class (and few-shot) settings, and because it shares Dinomaly's encoder, crop and layer
groups, so the two compare reconstruction designs rather than backbones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anomalib.models.image.inp_former import torch_model as inp_torch
from torch import Tensor, nn

from adbench.baselines import PRESETS
from adbench.baselines.dinomaly import (
    DinoReconstruction,
    DinoReconstructionConfig,
    encoder_without_download,
)
from adbench.contract import OptimConfig, ScoringConfig
from adbench.errors import ConfigError
from adbench.registry import MethodSpec, presets_from_folder


@dataclass(frozen=True)
class InpFormerConfig(DinoReconstructionConfig):
    """INP-Former settings.

    Encoder, layers, groups, 448 -> 392 crop, batch 16: as Dinomaly, which INP-Former builds on
    (paper Sec. 4.1 of arXiv:2503.02424). Values marked "anomalib" are anomalib 2.7's port of the
    official code; the training budget (10,000 iterations) is the Dinomaly multi-class budget,
    kept for comparability (anomalib's default is 200 epochs) and not checked against the
    INP-Former paper.
    """

    inp_num: int = 6  # number of INPs (anomalib default, official code)
    loss_power: int = 3  # adaptive hard-mining exponent (anomalib GlobalCosineHmAdaptiveLoss)
    # StableAdamW lr 1e-3 -> 1e-4, weight decay 1e-4, 100 warm-up iterations, eps 1e-10 (anomalib)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            name="adamw",
            lr=1e-3,
            betas=(0.9, 0.999),
            weight_decay=1e-4,
            schedule="cosine",
            warmup_steps=100,
        )
    )
    final_lr: float = 1e-4
    # anomalib's model already smooths its map with sigma 4 (kernel 5) and scores the top 1%:
    # no second smoothing
    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(sigma=0.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.backbone.layers) != 8:
            raise ConfigError(
                f"backbone.layers must list 8 encoder blocks for anomalib's "
                f"INP-Former (its decoder has 8), got {list(self.backbone.layers)}"
            )
        if self.inp_num < 1:
            raise ConfigError(f"inp_num must be at least 1, got {self.inp_num}")


class AnomalibInpFormer(DinoReconstruction):
    """INP-Former: anomalib's torch model and loss with adbench's weights, data and optimiser."""

    config: InpFormerConfig
    adam_eps = 1e-10  # anomalib's TRAINING_CONFIG for INP-Former

    def build_model(self, arch: str, layers: list[int], groups: list[list[int]]) -> nn.Module:
        """Anomalib's `InpFormerModel` with the config's INP count and loss power."""
        with encoder_without_download(inp_torch):
            model = inp_torch.InpFormerModel(
                encoder_name=arch,
                inp_num=self.config.inp_num,
                target_layers=layers,
                fuse_layer_encoder=groups,
                fuse_layer_decoder=groups,
            )
        model.loss.power = self.config.loss_power
        return model

    def trainable(self) -> list[nn.Module]:
        """Bottleneck, INP extractor (aggregation), decoder and the INP queries."""
        return [
            self.model.bottleneck,
            self.model.decoder,
            self.model.aggregation,
            self.model.prototype_token,
        ]

    def reconstruction_loss(self, images: Tensor) -> Tensor:
        """Adaptive hard-mining cosine loss plus the INP coherence loss (anomalib's)."""
        return self.model(images)


SPEC = MethodSpec(
    name="anomalib.inp_former",
    module=AnomalibInpFormer,
    config=InpFormerConfig,
    presets=presets_from_folder(PRESETS / "inp_former"),
    paper="Luo et al., Exploring Intrinsic Normal Prototypes within a Single Image for Universal "
    "Anomaly Detection, CVPR 2025, arXiv:2503.02424 (implementation: anomalib)",
)
