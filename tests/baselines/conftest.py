"""Fixtures for the anomalib adapter tests."""

from __future__ import annotations

import pytest
import torch
from baseline_helpers import smooth_images


@pytest.fixture(scope="module")
def train_images() -> torch.Tensor:
    return smooth_images(12, seed=1)


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    images = smooth_images(4, seed=2)
    images[2:, :, 8:16, 8:16] = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)  # a defect
    return images
