"""Noise schedules and deterministic DDIM stepping shared by the diffusion-based methods.

The beta schedule comes from diffusers' `DDPMScheduler` (so "linear" and "scaled_linear" mean
exactly what they mean in diffusers and in Stable Diffusion); the per-sample arithmetic below
works with a different timestep for every sample in a batch, which batched adaptive stopping
(GLAD) and partial-noise reconstruction (DPDiff-AD) need.

Notation (Ho et al. 2020; Song et al., DDIM, 2021): ``abar_t`` = cumulative product of
``1 - beta``; ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from adbench.errors import ConfigError


@dataclass(frozen=True)
class ScheduleConfig:
    """A DDPM noise schedule."""

    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear"] = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02


class NoiseSchedule(nn.Module):
    """Forward noising, x0/eps conversions and DDIM (eta = 0) steps for per-sample timesteps."""

    def __init__(self, config: ScheduleConfig) -> None:
        super().__init__()
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
        )
        self.config = config
        self.num_train_timesteps = config.num_train_timesteps
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.float(), persistent=False)

    def abar(self, t: Tensor, like: Tensor) -> Tensor:
        """``abar_t`` per sample, shaped to broadcast against ``like`` (B, ...); t = -1 gives 1."""
        t = t.long()
        values = torch.where(
            t >= 0,
            self.alphas_cumprod[t.clamp(min=0)],
            torch.ones_like(t, dtype=self.alphas_cumprod.dtype),
        )
        return values.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)

    def sample_timesteps(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
    ) -> Tensor:
        """Uniform training timesteps (B,) in [0, T)."""
        return torch.randint(
            0, self.num_train_timesteps, (batch_size,), device=device, generator=generator
        )

    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` for per-sample t (B,)."""
        abar = self.abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    def predict_x0(self, x_t: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The clean sample implied by noise ``eps`` at step t."""
        abar = self.abar(t, x_t)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def predict_eps(self, x_t: Tensor, x0: Tensor, t: Tensor) -> Tensor:
        """The noise implied by a clean-sample estimate ``x0`` at step t."""
        abar = self.abar(t, x_t)
        return (x_t - abar.sqrt() * x0) / (1 - abar).clamp(min=1e-12).sqrt()

    def ddim_step(self, x0: Tensor, eps: Tensor, t_prev: Tensor) -> Tensor:
        """Deterministic DDIM update (eta = 0): ``sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps``."""
        abar_prev = self.abar(t_prev, x0)
        return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps

    def ddim_timesteps(
        self, t_start: int, steps: int, spacing: str = "linspace", offset: int = 1
    ) -> list[tuple[int, int]]:
        """(t, t_prev) pairs of a DDIM trajectory from noise index ``t_start`` to clean (-1).

        ``spacing="linspace"``: ``steps`` evenly spaced timesteps from t_start to 0 (rounded);
        e.g. t_start=200, steps=5 gives 200, 150, 100, 50, 0. ``spacing="leading"`` (diffusers'
        DDIM with ``steps_offset``, over the first t_start + 1 training steps): ratio
        r = (t_start + 1) // steps and the timesteps (steps - 1) r + offset, ..., r + offset,
        offset; e.g. t_start=649, steps=25 gives 625, 599, ..., 27, 1, so the first step is
        below the noising step.
        """
        if not 0 <= t_start < self.num_train_timesteps:
            raise ConfigError(f"t_start must be in [0, {self.num_train_timesteps}), got {t_start}")
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        if spacing == "leading":
            ratio = (t_start + 1) // steps
            if ratio < 1 or (steps - 1) * ratio + offset > t_start:
                raise ConfigError(
                    f"leading spacing needs (steps - 1) * ratio + offset <= t_start, "
                    f"got steps={steps}, offset={offset}, t_start={t_start}"
                )
            ts = [k * ratio + offset for k in reversed(range(steps))]
        elif spacing == "linspace":
            ts = (
                torch.linspace(t_start, 0, steps).round().long().tolist()
                if steps > 1
                else [t_start]
            )
        else:
            raise ConfigError(f"spacing must be 'linspace' or 'leading', got {spacing!r}")
        return list(zip(ts, [*ts[1:], -1], strict=True))


def image_seeds(images: Tensor, seed: int) -> list[int]:
    """One seed per image, from its pixels (quantised to 8 bits) and ``seed``.

    Noise drawn from these seeds depends on the image alone, never on its batch position, the
    batch size or the other images of the batch, so scores do not depend on batching.

    Args:
        images: (B, C, H, W) in [0, 1].
        seed: the method's inference seed.
    """
    quantised = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    seeds = []
    for image in quantised.numpy():
        digest = hashlib.blake2b(image.tobytes(), digest_size=8, key=str(seed).encode())
        seeds.append(int.from_bytes(digest.digest(), "little") & (2**63 - 1))
    return seeds


def randn_per_image(images: Tensor, shape: tuple[int, ...], seed: int) -> Tensor:
    """(B, *shape) standard normal noise on ``images.device``, one generator per image.

    Args:
        images: (B, C, H, W) in [0, 1]; each image's noise is seeded by `image_seeds`.
        shape: the noise shape of one image.
        seed: the method's inference seed.
    """
    draws = []
    for image_seed in image_seeds(images, seed):
        generator = torch.Generator(device=images.device).manual_seed(image_seed)
        draws.append(torch.randn(shape, generator=generator, device=images.device))
    return torch.stack(draws)
