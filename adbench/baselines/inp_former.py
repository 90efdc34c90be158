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

import torch.nn.functional as F
from anomalib.models.components import GaussianBlur2d
from anomalib.models.image.inp_former import torch_model as inp_torch
from torch import Tensor, nn

from adbench.baselines import PRESETS
from adbench.baselines.dino_reconstruction import (
    DinoReconstruction,
    DinoReconstructionConfig,
    encoder_without_download,
)
from adbench.batch import AnomalyOutput
from adbench.contract import OptimConfig, ScoringConfig, TrainerDefaults, pool_scores
from adbench.errors import ConfigError
from adbench.registry import MethodSpec, presets_from_folder


@dataclass(frozen=True)
class InpFormerConfig(DinoReconstructionConfig):
    """INP-Former settings; the defaults are the official multi-class setting.

    The official multi-class script ``INP_Former_Multi_Class.py`` (luow23/INP-Former) is one
    script for MVTec AD, VisA and Real-IAD (``--dataset``) with the same settings for all three:
    encoder, blocks, groups, 448 -> 392 crop as Dinomaly (paper Sec. 4.1 of arXiv:2503.02424),
    batch 16 and a budget of 200 epochs, so the number of iterations follows each training set
    (about 45,000 on MVTec AD, 108,000 on VisA at batch 16). Line numbers below refer to that file.
    """

    inp_num: int = 6  # number of INPs: --INP_num default 6 (line 220)
    # adaptive hard-mining exponent: global_cosine_hm_adaptive(en, de, y=3) (line 142), weighted
    # with the INP coherence loss x 0.2 (line 143) as anomalib's GlobalCosineHmAdaptiveLoss
    loss_power: int = 3
    # CLS and register tokens are dropped before the INP extractor, the coherence loss and the
    # decoder: INP_Former(..., remove_class_token=True) (line 113); anomalib's Lightning module
    # InpFormer passes the same default (its torch model's default is False)
    remove_class_token: bool = True
    # StableAdamW lr 1e-3, betas (0.9, 0.999), weight decay 1e-4, amsgrad, eps 1e-10 (line 130);
    # WarmCosineScheduler 1e-3 -> 1e-4 with 100 warm-up iterations over all iterations (131-132)
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
    # --total_epochs 200 (line 223), gradient clipping 0.1 (clip_grad_norm max_norm=0.1, line 146)
    trainer: TrainerDefaults = field(
        default_factory=lambda: TrainerDefaults(max_epochs=200, gradient_clip_val=0.1)
    )
    # the map is smoothed inside the model, as the official evaluation and anomalib do: a 5 x 5
    # Gaussian kernel of sigma scoring.sigma (official utils.py get_gaussian_kernel(kernel_size=5,
    # sigma=4)); 0 turns it off (an evaluation protocol that smooths the map itself does)
    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(sigma=4.0))

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

    def build_model(self, arch: str, layers: list[int], groups: list[list[int]]) -> nn.Module:
        """Anomalib's `InpFormerModel` with the config's INP count, tokens and loss power."""
        with encoder_without_download(inp_torch):
            model = inp_torch.InpFormerModel(
                encoder_name=arch,
                inp_num=self.config.inp_num,
                target_layers=layers,
                fuse_layer_encoder=groups,
                fuse_layer_decoder=groups,
                remove_class_token=self.config.remove_class_token,
            )
        model.loss.power = self.config.loss_power
        sigma = self.config.scoring.sigma
        if sigma <= 0:
            model.gaussian_blur = nn.Identity()
        elif sigma != inp_torch.DEFAULT_GAUSSIAN_SIGMA:
            model.gaussian_blur = GaussianBlur2d(
                sigma=sigma, channels=1, kernel_size=inp_torch.DEFAULT_GAUSSIAN_KERNEL_SIZE
            )
        return model

    def postprocess(self, raw_map: Tensor, size: tuple[int, int]) -> AnomalyOutput:
        """Upsample to ``size`` only: the model smoothed the (B, 1, h, w) map already."""
        maps = F.interpolate(raw_map.float(), size=size, mode="bilinear", align_corners=False)
        scoring = self.config.scoring
        return AnomalyOutput(maps, pool_scores(maps, scoring.pooling, scoring.topk_fraction))

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
