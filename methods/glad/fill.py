"""The official 2024 fill of GLAD's synthetic anomalies: the image's own augmented copy.

The multi-class dataset code the published numbers come from (``dataset/dataset_multiclass.py``
at 9de702b, 2024-06-25) fills every anomaly from the image itself; DTD textures replace the
unshuffled half only since a0365d2 (2025-03-15).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from adbench.synthesis import SELF_GRID, photometric_augment, shuffle_patches


class OwnFill(NamedTuple):
    """Output of `own_fill`."""

    augmented: Tensor  # (B, 3, H, W) in [0, 1], the images after the photometric operations
    fill: Tensor  # (B, 3, H, W) in [0, 1], ``augmented`` or its 8 x 8 cells shuffled
    shuffled: Tensor  # (B,) bool, which images' fill is shuffled


def own_fill(images: Tensor, share: float, augment: int) -> OwnFill:
    """The official 2024 fill: each image's augmented copy, shuffled with probability ``share``.

    ``dataset/dataset_multiclass.py`` at 9de702b, lines 271-303: ``augment`` random operations
    of DRAEM's list (`photometric_augment`), then either the result as is (the texture branch,
    whose DTD image is discarded at line 279) or its 8 x 8 cells shuffled. Draws from torch's
    global generator.

    Args:
        images: (B, 3, H, W) in [0, 1].
        share: probability of the shuffled fill.
        augment: photometric operations per image.
    """
    augmented = photometric_augment(images, augment)
    shuffled = torch.rand(len(images), device=images.device) < share
    cells = shuffle_patches(augmented, SELF_GRID, None)
    fill = torch.where(shuffled.view(-1, 1, 1, 1), cells, augmented)
    return OwnFill(augmented, fill, shuffled)
