"""A method whose checkpoint is large (plugin of the reliability tests that fill a small disk)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import adbench
from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod, MethodConfig

BALLAST_BYTES = 640 * 1024  # saved in every checkpoint
TINY = {
    "data": {"image_size": 32, "batch_size": 4},
    "trainer": {"max_steps": 1},
    "scoring": {"sigma": 0.0},
}


@dataclass(frozen=True)
class BallastConfig(MethodConfig):
    """No settings of its own."""


@adbench.method("toy_ballast", config=BallastConfig, presets={"tiny": TINY, "paper": {}})
class BallastMethod(AnomalyMethod):
    """Trains one scalar and carries a buffer of `BALLAST_BYTES` that it never uses."""

    config: BallastConfig

    def __init__(self, config: BallastConfig) -> None:
        super().__init__(config)
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer("ballast", torch.zeros(BALLAST_BYTES // 4))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """A loss with a gradient."""
        return (self.scale - batch.image.mean()) ** 2

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Maps (B, 1, H, W): squared distance of the pixels to grey; scores: their max (B,)."""
        maps = ((images - 0.5) ** 2).sum(1, keepdim=True) * self.scale
        return AnomalyOutput(maps, maps.flatten(1).amax(1))
