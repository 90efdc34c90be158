"""Shared reverse-distillation test settings: the tiny preset and a fixed synthetic batch."""

from __future__ import annotations

import torch

import adbench
from adbench.batch import Batch
from adbench.methods.rd import RD


def build(seed: int = 0, **overrides) -> RD:
    """The tiny preset (offline EfficientNet-Lite0 teacher) seeded with ``seed``."""
    return adbench.create("rd", preset="tiny", seed=seed, **overrides)


def synthetic_batch(root, n: int = 8) -> Batch:
    """The first ``n`` training images of 2 built-in synthetic categories at 64 px."""
    data = adbench.make_synthetic(root, n_categories=2, seed=0, image_size=64, n_train=4, n_test=2)
    datamodule = adbench.UnifiedDataModule(
        adbench.load_index("synthetic", data), image_size=64, batch_size=n, seed=0
    )
    dataset = datamodule.dataset("train")
    return Batch.collate([dataset[i] for i in range(n)])


IMAGES = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
