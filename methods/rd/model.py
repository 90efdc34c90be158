"""Reverse distillation as a pure torch module (Deng & Li, CVPR 2022, arXiv:2201.10703).

Frozen teacher encoder E -> trainable one-class bottleneck (OCBE: multi-scale feature fusion and
a residual stage) -> embedding z -> student decoder D, which restores E's levels from z. The
bottleneck and decoder are MDD-Net's RD building blocks; RD is MDD-Net without the class-aware
memory and the second decoder.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from adbench.backbones import FeatureExtractor
from adbench.distillation import FeatureDecoder, FusionBottleneck, discrepancy_map

from .config import RDConfig


class RDModel(nn.Module):
    """Teacher, one-class bottleneck and student decoder.

    Args:
        config: the method config (backbone, bottleneck and decoder fields are read).
    """

    def __init__(self, config: RDConfig) -> None:
        super().__init__()
        self.teacher = FeatureExtractor(
            config.backbone, frozen=True, random_weights=config.random_weights
        )
        channels, strides = self.teacher.channels, self.teacher.strides
        neck = config.bottleneck
        self.bottleneck = FusionBottleneck(
            channels, strides, neck.channels, neck.blocks, neck.mid_ratio, neck.stride
        )
        decoder = config.decoder
        self.decoder = FeatureDecoder(
            neck.channels,
            self.bottleneck.out_stride,
            channels,
            strides,
            decoder.blocks,
            decoder.mid_ratio,
            decoder.output_relu,
        )

    @torch.no_grad()
    def encode(self, images: Tensor) -> list[Tensor]:
        """Frozen teacher features of images (B, 3, H, W) in [0, 1]: [(B, C_i, h_i, w_i)]."""
        return self.teacher(images)

    def student(self, features: list[Tensor]) -> list[Tensor]:
        """Bottleneck and decoder on teacher levels: D(OCBE(E(x))), shaped like ``features``."""
        return self.decoder(self.bottleneck(features))

    def forward(self, images: Tensor) -> Tensor:
        """Anomaly map (B, 1, H, W) of images (B, 3, H, W) in [0, 1].

        sum_i up(1 - cos_pixel(E_i(x), D_i(x))), each level upsampled to the image size (RD
        official code, ``test.py`` ``cal_anomaly_map`` with ``amap_mode='a'``).
        """
        features = self.encode(images)
        return discrepancy_map(features, self.student(features), tuple(images.shape[-2:]))
