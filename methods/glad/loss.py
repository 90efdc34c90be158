"""Anomaly-oriented training (ATP) of GLAD: latent mix, corrected noise target and loss.

Yao et al., ECCV 2024, arXiv:2406.07487, "anomaly-oriented training paradigm". With ``z_n``
the latent of a normal image and ``z_a`` that of its synthetic anomalous version:

- mix: ``z~ = alpha z_a + (1 - alpha) z_n`` with ``alpha = t / T`` (more anomaly at more noise);
- noising: ``x_t = sqrt(abar_t) z~ + sqrt(1 - abar_t) eps``;
- target: ``eps* = (x_t - sqrt(abar_t) z_n) / sqrt(1 - abar_t)``, the noise whose x0-estimate
  is the *normal* latent, i.e. ``eps + s sqrt(abar_t) (z~ - z_n) / sqrt(1 - abar_t)`` with s = +1.
  ``target_sign = -1`` flips the sign of that correction term (the official code's 2025 variant).
  An x0-predicting denoiser is trained on the x0-estimate of ``eps*`` instead.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def mix_latents(
    z_normal: Tensor, z_anomalous: Tensor, t: Tensor, num_train_timesteps: int
) -> Tensor:
    """``z~ = alpha z_a + (1 - alpha) z_n`` with ``alpha = t / T`` per sample.

    Args:
        z_normal: (B, C, h, w) latents of the normal images.
        z_anomalous: (B, C, h, w) latents of the synthetic anomalies.
        t: (B,) training timesteps in [0, T).
        num_train_timesteps: T.
    """
    alpha = (t.to(z_normal.dtype) / num_train_timesteps).view(-1, *([1] * (z_normal.ndim - 1)))
    return alpha * z_anomalous + (1 - alpha) * z_normal


def atp_noise_target(
    eps: Tensor, z_mixed: Tensor, z_normal: Tensor, abar: Tensor, sign: float = 1.0
) -> Tensor:
    """The corrected noise target ``eps + sign * sqrt(abar) (z~ - z_n) / sqrt(1 - abar)``.

    With ``sign = +1`` this equals ``(x_t - sqrt(abar) z_n) / sqrt(1 - abar)`` for
    ``x_t = sqrt(abar) z~ + sqrt(1 - abar) eps``, so its x0-estimate is the normal latent.

    Args:
        eps: (B, C, h, w) the noise added to ``z_mixed``.
        z_mixed: (B, C, h, w) the mixed latent ``z~``.
        z_normal: (B, C, h, w) the normal latent ``z_n``.
        abar: ``abar_t`` broadcastable to the latents, e.g. (B, 1, 1, 1).
        sign: +1 (consistent with the goal, default) or -1 (flipped correction term).
    """
    correction = abar.sqrt() * (z_mixed - z_normal) / (1 - abar).clamp(min=1e-12).sqrt()
    return eps + sign * correction


def atp_x0_target(z_mixed: Tensor, z_normal: Tensor, sign: float = 1.0) -> Tensor:
    """The x0-estimate of the ATP noise target: ``z~ - sign (z~ - z_n)``.

    This is the normal latent for ``sign = +1``; the target of an x0-predicting denoiser
    (``denoiser.prediction = "x0"``).

    Args:
        z_mixed: (B, C, h, w) the mixed latent ``z~``.
        z_normal: (B, C, h, w) the normal latent ``z_n``.
        sign: as in `atp_noise_target`.
    """
    return z_mixed - sign * (z_mixed - z_normal)


def atp_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """``MSE(eps_theta(x_t, t), eps*)`` (or its x0 form).

    Averaged over every element (the official reduction).
    """
    return F.mse_loss(prediction.float(), target.float())
