"""Frozen backbone -> one normalised token grid F (B, N, C)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from adbench.backbones import BackboneConfig, FeatureExtractor, levels_on_grid
from adbench.errors import ConfigError

from .config import FeatureConfig


class TokenExtractor(nn.Module):
    """Frozen multi-level features fused into one grid of normalised tokens.

    Levels are resized to the grid of ``features.grid_level`` and averaged ("mean", equal widths,
    e.g. ViT blocks) or concatenated ("concat", e.g. CNN stages). With ``norm="standardize"`` the
    per-channel statistics are buffers, set from training tokens by `set_statistics`.

    Attributes:
        channels: C, the token width.
    """

    def __init__(
        self, backbone: BackboneConfig, config: FeatureConfig, random_weights: bool = False
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = FeatureExtractor(backbone, frozen=True, random_weights=random_weights)
        widths = self.backbone.channels
        if not 0 <= config.grid_level < len(widths):
            raise ConfigError(
                f"features.grid_level must index backbone.layers "
                f"({len(widths)} levels), got {config.grid_level}"
            )
        if config.fusion == "mean" and len(set(widths)) > 1:
            raise ConfigError(
                f"features.fusion='mean' needs levels of equal width, got {widths}; "
                "use features.fusion='concat'"
            )
        self.channels = widths[0] if config.fusion == "mean" else sum(widths)
        self.register_buffer("mean", torch.zeros(self.channels))
        self.register_buffer("std", torch.ones(self.channels))

    @torch.no_grad()
    def raw(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Fused, un-normalised tokens.

        Args:
            images: (B, 3, H, W) in [0, 1].

        Returns:
            tokens (B, N, C) in float32 and the grid (h, w).
        """
        resized = levels_on_grid(self.backbone(images), self.config.grid_level)
        size = resized[0].shape[-2:]
        fused = (
            torch.stack(resized).mean(0)
            if self.config.fusion == "mean"
            else torch.cat(resized, dim=1)
        )
        return rearrange(fused, "b c h w -> b (h w) c"), (int(size[0]), int(size[1]))

    def normalize(self, tokens: Tensor) -> Tensor:
        """(B, N, C) raw tokens -> normalised tokens."""
        if self.config.norm == "layernorm":
            return F.layer_norm(tokens, tokens.shape[-1:])
        return (tokens - self.mean) / self.std

    @torch.no_grad()
    def set_statistics(self, tokens: Tensor) -> None:
        """Per-channel mean and std from raw training tokens (M, C)."""
        self.mean.copy_(tokens.mean(0))
        self.std.copy_(tokens.std(0).clamp(min=1e-6))

    def forward(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Images (B, 3, H, W) in [0, 1] -> normalised tokens (B, N, C) and the grid (h, w)."""
        tokens, grid = self.raw(images)
        return self.normalize(tokens), grid


class FeatureAdapter(nn.Module):
    """F_a = F + F W^T + b, a residual linear map of tokens (B, N, C).

    W and b start at zero, so the adapter starts as the identity
    (``global_prototypes.ot_acts_on="adapter"``).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """Tokens (B, N, C) -> adapted tokens F_a (B, N, C)."""
        return tokens + self.linear(tokens)
