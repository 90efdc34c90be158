"""Shared MDD-Net test settings: the tiny preset with a random teacher, fixed images."""

from __future__ import annotations

import torch

from adbench.methods.mddnet import MDDNet, MDDNetConfig
from adbench.registry import resolve_config


def t(values) -> torch.Tensor:
    """A float32 tensor of ``values``."""
    return torch.tensor(values, dtype=torch.float32)


def tiny_config(**overrides) -> MDDNetConfig:
    """The tiny preset with a randomly initialised teacher (mechanics only) and 3 classes."""
    base = {"backbone.weights": "none", "memory.num_classes": 3, **overrides}
    return resolve_config("mddnet", "tiny", base)


def build(seed: int = 0, **overrides) -> MDDNet:
    """The tiny method (``tiny_config``) seeded with ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return MDDNet(tiny_config(**overrides)).eval()


IMAGES = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
