"""Reverse-distillation parts shared by the methods built on it (`rd`, MDD-Net).

The one-class bottleneck and the mirrored decoder (`adbench.distillation.layers`), their config,
and the cosine discrepancies that are both the anomaly map and the training loss
(`adbench.distillation.discrepancy`).
"""

from __future__ import annotations

from dataclasses import dataclass

from adbench.distillation.discrepancy import (
    discrepancy_map,
    global_cosine_loss,
    pixel_cosine_distance,
)
from adbench.distillation.layers import FeatureDecoder, FusionBottleneck, ResidualBlock


@dataclass(frozen=True)
class BottleneckConfig:
    """The RD one-class bottleneck that fuses the teacher levels into z."""

    channels: int = 2048  # D; RD: 2048 x 8 x 8 for WRN-50-2 at 256 px
    blocks: int = 3  # RD: the OCBE fuses with a ResNet stage of 3 bottleneck blocks
    mid_ratio: float = 0.5  # RD (wide ResNet): inner width = half the output channels
    stride: int = 2  # RD: z is half the deepest level's size (16 -> 8 at 256 px); 1 keeps it


__all__ = [
    "BottleneckConfig",
    "FeatureDecoder",
    "FusionBottleneck",
    "ResidualBlock",
    "discrepancy_map",
    "global_cosine_loss",
    "pixel_cosine_distance",
]
