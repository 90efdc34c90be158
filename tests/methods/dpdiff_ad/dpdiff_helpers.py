"""Shared DPDiff-AD test settings: the tiny preset at 32 px, a built method, its outputs."""

from __future__ import annotations

import torch

from adbench.methods.dpdiff_ad import DPDiffAD, DPDiffADConfig
from adbench.registry import resolve_config

SIZE = 32  # images of the option tests: 4 x 4 tokens on the tiny preset's stride-8 grid


def tiny_config(**overrides) -> DPDiffADConfig:
    """The tiny preset at 32 px with K_L = 64 (k-means then has more tokens than prototypes)."""
    return resolve_config(
        "dpdiff_ad", "tiny", {"data.image_size": SIZE, "local_prototypes.num": 64, **overrides}
    )


def images(n: int, seed: int = 0) -> torch.Tensor:
    """Seeded uniform images: (n, 3, SIZE, SIZE)."""
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def build(**overrides) -> DPDiffAD:
    """A tiny method with initialised banks and random (non-zero) denoiser weights."""
    torch.manual_seed(0)
    method = DPDiffAD(tiny_config(**overrides))
    model = method.model
    model.initialize(*model.initialization_sample(images(8), 10_000), torch.Generator())
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.denoiser.parameters():
            param.normal_(0, 0.05)
    model.ema_denoiser.load_state_dict(model.denoiser.state_dict())
    return method


def forward(method: DPDiffAD, x: torch.Tensor):
    """The method's output for ``x`` in eval mode, without gradients."""
    method.eval()
    with torch.no_grad():
        return method(x)


def losses(method: DPDiffAD, x: torch.Tensor):
    """The training losses of ``x`` with fixed draws (seed 0)."""
    return method.model.training_losses(x, torch.Generator().manual_seed(0))
