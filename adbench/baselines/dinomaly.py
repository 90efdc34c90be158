"""Dinomaly (Guo et al., CVPR 2025, arXiv:2405.14325) through anomalib's `DinomalyModel`.

A frozen DINOv2-R ViT encoder, a bottleneck MLP whose dropout is the "noisy bottleneck", and a
decoder of linear-attention ViT blocks that reconstructs the mean of encoder layer groups; the
anomaly map is one minus the cosine similarity of encoder and decoder group features. Trained with
the "loose" group-wise cosine loss with hard mining (anomalib's `CosineHardMiningLoss`) and
StableAdamW with a warm-up cosine schedule. Weights, crop, scoring, MLP biases and optimiser come
from the shared `DinoReconstruction` adapter.

Presets: ``paper`` follows the official ``dinomaly_mvtec_uni.py`` / ``dinomaly_visa_uni.py``
(the config defaults), ``paper-realiad`` the official ``dinomaly_realiad_uni.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from anomalib.models.image.dinomaly import torch_model as dinomaly_torch
from torch import Tensor, nn

from adbench.baselines import PRESETS
from adbench.baselines.dino_reconstruction import (
    DinoReconstruction,
    DinoReconstructionConfig,
    encoder_without_download,
)
from adbench.errors import ConfigError
from adbench.registry import MethodSpec, presets_from_folder


@dataclass(frozen=True)
class DinomalyConfig(DinoReconstructionConfig):
    """Dinomaly settings; the defaults are the paper's multi-class setting (Sec. 4.1).

    They are the official ``dinomaly_mvtec_uni.py`` and ``dinomaly_visa_uni.py``
    (guojiajeremy/Dinomaly, function train()); line numbers below refer to the first.
    """

    # paper Sec. 3.2 / 4.1: noisy bottleneck, bMlp(..., drop=0.2) (line 137); the Real-IAD
    # script dinomaly_realiad_uni.py uses 0.4 (preset paper-realiad)
    bottleneck_dropout: float = 0.2
    decoder_depth: int = 8  # paper Sec. 4.1: 8 linear-attention decoder blocks (line 143)
    # loose loss with hard mining (paper Eq. 6, global_cosine_hm_percent, lines 184-186):
    # the easiest p of points get gradient x factor; p rises 0 -> 0.9 over 1000 iterations
    hard_mining_p: float = 0.9
    hard_mining_steps: int = 1000
    hard_mining_factor: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.backbone.layers)
        if n != self.decoder_depth:
            raise ConfigError(
                f"backbone.layers has {n} encoder blocks but decoder_depth is "
                f"{self.decoder_depth}: Dinomaly reconstructs one encoder block per "
                "decoder block; make them equal"
            )
        if self.decoder_depth < 2:
            raise ConfigError(f"decoder_depth must be at least 2, got {self.decoder_depth}")
        if not 0.0 <= self.hard_mining_p < 1.0:
            raise ConfigError(f"hard_mining_p must be in [0, 1), got {self.hard_mining_p}")


class AnomalibDinomaly(DinoReconstruction):
    """Dinomaly: anomalib's torch model and loss with adbench's weights, data and optimiser."""

    config: DinomalyConfig

    def build_model(self, arch: str, layers: list[int], groups: list[list[int]]) -> nn.Module:
        """Anomalib's `DinomalyModel` with the config's dropout, depth and hard mining."""
        with encoder_without_download(dinomaly_torch):
            model = dinomaly_torch.DinomalyModel(
                encoder_name=arch,
                bottleneck_dropout=self.config.bottleneck_dropout,
                decoder_depth=self.config.decoder_depth,
                target_layers=layers,
                fuse_layer_encoder=groups,
                fuse_layer_decoder=groups,
            )
        # anomalib 2.7 stores fuse_layer_* only when they are None; the base sets them
        loss = model.loss_fn
        loss.p_final = self.config.hard_mining_p
        loss.p_schedule_steps = self.config.hard_mining_steps
        loss.factor = self.config.hard_mining_factor
        return model

    def trainable(self) -> list[nn.Module]:
        """Bottleneck and decoder."""
        return [self.model.bottleneck, self.model.decoder]

    def reconstruction_loss(self, images: Tensor) -> Tensor:
        """Loose group-wise cosine loss with hard mining (paper Eq. 6)."""
        return self.model(images, global_step=self.global_step)


SPEC = MethodSpec(
    name="anomalib.dinomaly",
    module=AnomalibDinomaly,
    config=DinomalyConfig,
    presets=presets_from_folder(PRESETS / "dinomaly"),
    paper="Guo et al., Dinomaly: The Less Is More Philosophy in Multi-Class Unsupervised Anomaly "
    "Detection, CVPR 2025, arXiv:2405.14325 (implementation: anomalib)",
)
