"""Which categories are stationary textures, measured on their training latents.

For the training latents z (N, C, h, w) of one category the ratio

    r = mean_{c,p} var_n z[n, c, p]  /  mean_c var_{n,p} z[n, c, p]

is the share of the latent's variance that is left at a fixed position. An aligned product (an
object, a printed label, a board at a fixed place) has features that depend on where they are, so
little variance is left per position (r well below 1); a texture photographed at random offsets
looks alike everywhere (r near 1). GLAD's scoring can then compare the same position for aligned
categories and search all positions for stationary ones (``scoring.stationary_threshold``).
Variances are population variances; a category with one training image has r = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class StationarityStats(nn.Module):
    """Running sums of training latents per category index, for the ratio r of each category.

    Buffers (not saved: the ratios are, see `GLAD.stationarity`): ``count`` (K,), ``first``
    (K, C, h, w) the sum of z over images, ``second`` (K, C) the sum of z^2 over images and
    positions. K grows with the largest category index seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(0, dtype=torch.float64), persistent=False)
        self.register_buffer("first", torch.zeros(0, dtype=torch.float64), persistent=False)
        self.register_buffer("second", torch.zeros(0, dtype=torch.float64), persistent=False)

    def reset(self) -> None:
        """Forget every sum."""
        for name in ("count", "first", "second"):
            setattr(self, name, getattr(self, name).new_zeros(0))

    def update(self, latents: Tensor, categories: Tensor, num_categories: int) -> None:
        """Add latents (B, C, h, w) of images with category indices (B,) < ``num_categories``."""
        z = latents.detach().double()
        if self.first.numel() == 0 or len(self.count) < num_categories:
            grown = z.new_zeros((num_categories, *z.shape[1:]))
            grown_second = z.new_zeros((num_categories, z.shape[1]))
            grown_count = z.new_zeros(num_categories)
            if self.first.numel():
                k = len(self.count)
                grown[:k], grown_second[:k], grown_count[:k] = self.first, self.second, self.count
            self.first, self.second, self.count = grown, grown_second, grown_count
        self.first.index_add_(0, categories, z)
        self.second.index_add_(0, categories, z.pow(2).sum(dim=(2, 3)))
        self.count.index_add_(0, categories, torch.ones_like(categories, dtype=z.dtype))

    def ratios(self) -> Tensor:
        """(K,) r per category index.

        NaN for categories without training images (K = 0 before the first `update`).
        """
        if self.count.numel() == 0:
            return self.count.clone()
        n = self.count.view(-1, 1, 1, 1)
        positions = self.first.shape[2] * self.first.shape[3]
        mean = self.first / n.clamp(min=1)  # (K, C, h, w): E_n z per position
        moment = self.second / (n.view(-1, 1).clamp(min=1) * positions)  # (K, C): E_{n,p} z^2
        per_position = moment.mean(dim=1) - mean.pow(2).mean(dim=(1, 2, 3))
        total = (moment - mean.mean(dim=(2, 3)).pow(2)).mean(dim=1)
        ratio = per_position / total.clamp(min=1e-12)
        return torch.where(self.count > 0, ratio, torch.full_like(ratio, float("nan")))
