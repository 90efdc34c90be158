"""``perf_null``: a method whose fit and predict do almost nothing, so that a runner cell's time is
the runner's own (a plugin of the sweeps in ``benchmarks/perf/runner.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import adbench
from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod, MethodConfig


@dataclass(frozen=True)
class NullConfig(MethodConfig):
    """No settings."""


@adbench.method(
    "perf_null",
    config=NullConfig,
    presets={
        "tiny": {
            "data": {"image_size": 32, "batch_size": 8},
            "trainer": {"max_epochs": 1},
            "scoring": {"sigma": 0.0},
        }
    },
)
class NullMethod(AnomalyMethod):
    """Scores every pixel by its mean intensity; one scalar parameter to train."""

    config: NullConfig

    def __init__(self, config: NullConfig) -> None:
        super().__init__(config)
        self.scale = nn.Parameter(torch.ones(()))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """A loss with a gradient and no work."""
        return (self.scale - 1.0) ** 2

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Maps (B, 1, H, W): mean over channels times the scale."""
        return self.postprocess(self.scale * images.mean(1, keepdim=True), images.shape[-2:])
