"""A tiny reconstruction method used by tests to exercise the method contract and the runner."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from adbench.batch import AnomalyOutput, Batch
from adbench.contract import (
    AnomalyMethod,
    MethodConfig,
    OptimConfig,
    ScoringConfig,
    TrainerDefaults,
)


@dataclass(frozen=True)
class ToyConfig(MethodConfig):
    """A two-layer convolutional autoencoder."""

    width: int = 8
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-2))
    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(sigma=1.0))
    trainer: TrainerDefaults = field(default_factory=lambda: TrainerDefaults(max_epochs=1))


class ToyAutoencoder(AnomalyMethod):
    """Anomaly map = squared reconstruction error of a small autoencoder."""

    config: ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        width = self.config.width
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 3, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = (self.net(batch.image) - batch.image).pow(2).mean()
        self.log("train/loss", loss, batch_size=len(batch))
        return loss

    def forward(self, images: Tensor) -> AnomalyOutput:
        error = (self.net(images) - images).pow(2).mean(dim=1, keepdim=True)
        return self.postprocess(error, images.shape[-2:])


TOY_PRESETS = {"tiny": {"width": 4}, "paper": {}}


def toy_batch(n: int = 4, size: int = 32, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, 1, size, size)
    masks[n // 2 :, :, 4:12, 4:12] = 1
    return Batch(
        image=torch.rand(n, 3, size, size, generator=generator),
        mask=masks,
        label=(torch.arange(n) >= n // 2).long(),
        category=torch.zeros(n, dtype=torch.int64),
        index=torch.arange(n),
    )
