"""A tiny registered method for the runner tests (imported with ``--plugin``/``plugins:``).

Features are a frozen random 1x1 projection of the pixels; training learns their mean over the
normal images; the anomaly map is the squared distance to that mean. Knobs make a cell slow
(``step_sleep_s``) or fail (``fail``), and ``num_classes`` is checked against the batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import adbench
from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod, MethodConfig

TINY = {
    "data": {"image_size": 32, "batch_size": 4},
    "trainer": {"max_epochs": 1, "max_steps": 30},
    "scoring": {"sigma": 0.0},
    "optim": {"lr": 0.05},
}


@dataclass(frozen=True)
class ToyConfig(MethodConfig):
    """Toy settings."""

    channels: int = 4
    num_classes: int = 0  # filled with k by the runner
    step_sleep_s: float = 0.0
    fail: bool = False


@adbench.method("toy", config=ToyConfig, presets={"tiny": TINY, "paper": {}})
class Toy(AnomalyMethod):
    """Distance of projected pixels to their learned normal mean."""

    config: ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.proj = self.freeze(nn.Conv2d(3, self.config.channels, 1))
        self.center = nn.Parameter(torch.zeros(self.config.channels))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Mean squared distance of the normal features to the centre."""
        if self.config.fail:
            raise RuntimeError("toy failure requested by fail: true")
        if self.config.num_classes and int(batch.category.max()) >= self.config.num_classes:
            raise ValueError(f"category {int(batch.category.max())} >= num_classes")
        time.sleep(self.config.step_sleep_s)
        return self._distance(batch.image).mean()

    def _distance(self, images: Tensor) -> Tensor:
        features = self.proj(images)
        return ((features - self.center[None, :, None, None]) ** 2).sum(1, keepdim=True)

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Anomaly maps (B, 1, H, W) and max-pooled scores (B,)."""
        return self.postprocess(self._distance(images), images.shape[-2:])
