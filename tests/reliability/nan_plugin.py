"""A method whose anomaly maps are NaN (plugin of the reliability tests)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import adbench
from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod, MethodConfig

TINY = {
    "data": {"image_size": 32, "batch_size": 4},
    "trainer": {"max_steps": 2},
    "scoring": {"sigma": 0.0},
}


@dataclass(frozen=True)
class NanConfig(MethodConfig):
    """No settings of its own."""


@adbench.method("toy_nan", config=NanConfig, presets={"tiny": TINY, "paper": {}})
class NanMethod(AnomalyMethod):
    """Trains one scalar; every anomaly map is NaN."""

    config: NanConfig

    def __init__(self, config: NanConfig) -> None:
        super().__init__(config)
        self.scale = nn.Parameter(torch.ones(()))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """A loss with a gradient."""
        return (self.scale - batch.image.mean()) ** 2

    def forward(self, images: Tensor) -> AnomalyOutput:
        """NaN maps (B, 1, H, W) and NaN scores."""
        maps = torch.full_like(images[:, :1], float("nan")) * self.scale
        return AnomalyOutput(maps, maps.flatten(1).amax(1))
