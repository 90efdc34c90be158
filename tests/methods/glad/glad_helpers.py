"""Shared GLAD test settings: the tiny preset at 32 px, its pixel and feature spaces, inputs."""

from __future__ import annotations

import torch
from torch import nn

import adbench
from adbench.methods.glad import GLAD

SIZE = 32
PIXELS = {
    "autoencoder.kind": "identity",
    "autoencoder.patch_size": 1,
    "autoencoder.scaling_factor": 1.0,
    "scoring.pixel_weight": 0.0,
    "sampler.ads_input": "normalised",
}  # latent = 2 x - 1
# the pixel-space CPU configuration (the tiny preset before the feature space; README)
PIXEL_PRESET = {
    "autoencoder.kind": "identity",
    "autoencoder.scaling_factor": 3.0,
    "autoencoder.patch_size": 2,
    "scoring.pixel_weight": 2.0,
    "scoring.search_radius": None,
    "sampler.tau": 0.2,
    "sampler.ads_input": "normalised",
    "scoring.stationary_threshold": None,
}
FEATURES = {
    "autoencoder.kind": "features",
    "autoencoder.patch_size": 1,
    "autoencoder.scaling_factor": 1.0,
    "autoencoder.grid_level": 0,
    "scoring.pixel_weight": 0.0,
    "scoring.search_radius": 0,
    "scoring.stationary_threshold": None,
}  # the EfficientNet levels as the latent


def tiny(**overrides) -> GLAD:
    """The tiny preset at 32 px with a fixed initialisation (so options are compared fairly)."""
    torch.manual_seed(0)
    return adbench.create("glad", preset="tiny", **{"data.image_size": SIZE, **overrides}).eval()


def images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Seeded uniform images: (batch, 3, SIZE, SIZE)."""
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def small_conditional_unet() -> nn.Module:
    """A seeded 2-block text-conditioned UNet (4 latent channels, 16-dim cross-attention)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=4,
        attention_head_dim=2,
    )


def objects() -> torch.Tensor:
    """Two images of a textured object on a plain bright background."""
    x = torch.full((2, 3, SIZE, SIZE), 0.9)
    x[..., 10:22, 8:24] = images(2, seed=7)[..., 10:22, 8:24] * 0.5
    return x
