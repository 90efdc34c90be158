"""GLAD as a pure torch model: ATP training loss, ADS + SAFF reconstruction, anomaly maps.

Yao et al., "GLAD: Towards Better Reconstruction with Global and Local Adaptive Diffusion Models
for Unsupervised Anomaly Detection", ECCV 2024, arXiv:2406.07487.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adbench.backbones import FeatureExtractor
from adbench.diffusion import NoiseSchedule, randn_per_image
from adbench.methods.glad.config import GLADConfig, GLADScoringConfig, SamplerConfig
from adbench.methods.glad.loss import atp_loss, atp_noise_target, atp_x0_target, mix_latents
from adbench.methods.glad.networks import (
    Denoiser,
    FeatureCodec,
    LatentCodec,
    build_codec,
    build_denoiser,
)
from adbench.methods.glad.scoring import (
    add_pixel_term,
    foreground_mask,
    multi_level_map,
    nn_discrepancy,
    topk_mean,
)


class Reconstruction(NamedTuple):
    """Output of `GLADModel.reconstruct`."""

    images: Tensor | None  # (B, 3, H', W') in [0, 1], the decoded x_0; None in feature space
    # (a `FeatureCodec` has no decoder)
    latents: Tensor  # (B, C, h, w) the reconstructed x_0 in the diffusion space
    input_latents: Tensor  # (B, C, h, w) the encoded input z_0 (what the scoring compares
    # with in feature space)
    stop_steps: Tensor  # (B,) int64, the timestep at which each sample stopped adapting; 0 for
    # a sample that never stopped (it followed the whole trajectory to the clean end)
    stop_scores: Tensor  # (B,) the ADS score s at that step


class GLADModel(nn.Module):
    """Codec + denoiser + noise schedule + frozen feature extractor.

    Args:
        codec: frozen autoencoder between images and the diffusion space, or the frozen
            ``features`` extractor itself as the encoder (`FeatureCodec`, no decoder).
        denoiser: eps_theta.
        schedule: the DDPM noise schedule (DDIM steps at inference).
        features: frozen multi-level feature extractor (ADS and scoring).
        sampler: ADS / SAFF settings.
        scoring: anomaly-map settings.
        target_sign: +1 (``eps*`` lands on the normal latent) or -1 (flipped correction).
        prediction: what the denoiser outputs, ``"eps"`` (the noise) or ``"x0"`` (the clean
            latent, from which the noise estimate is derived).
    """

    def __init__(
        self,
        codec: LatentCodec | FeatureCodec,
        denoiser: Denoiser,
        schedule: NoiseSchedule,
        features: FeatureExtractor,
        sampler: SamplerConfig,
        scoring: GLADScoringConfig,
        target_sign: float = 1.0,
        prediction: str = "eps",
    ) -> None:
        super().__init__()
        self.codec = codec
        self.denoiser = denoiser
        self.schedule = schedule
        self.features = features
        self.sampler = sampler
        self.scoring = scoring
        self.target_sign = target_sign
        self.prediction = prediction

    @classmethod
    def from_config(cls, config: GLADConfig) -> GLADModel:
        """Build every part named by ``config`` (pretrained parts are loaded here)."""

        def extractor() -> FeatureExtractor:
            return FeatureExtractor(
                config.features, frozen=True, random_weights=config.random_weights
            )

        if config.autoencoder.kind == "features":  # the extractor is the encoder
            features = extractor()
            codec = build_codec(config.autoencoder, config.random_weights, features)
        else:  # the codec first: its weights are the first a paper run needs
            codec = build_codec(config.autoencoder, config.random_weights)
            features = extractor()
        size = config.autoencoder.size or config.data.image_size
        with torch.no_grad():
            shape = codec.encode(torch.zeros(1, 3, size, size)).shape
        denoiser = build_denoiser(
            config.denoiser,
            image_size=shape[-1],
            channels=shape[1],
            random_weights=config.random_weights,
        )
        sign = 1.0 if config.training.target == "normal_x0" else -1.0
        return cls(
            codec,
            denoiser,
            NoiseSchedule(config.schedule),
            features,
            config.sampler,
            config.scoring,
            sign,
            config.denoiser.prediction,
        )

    @property
    def in_feature_space(self) -> bool:
        """Whether the diffusion space is the feature extractor's (a `FeatureCodec`)."""
        return isinstance(self.codec, FeatureCodec)

    # -- training: anomaly-oriented training (ATP) ----------------------------------------------
    def training_loss(
        self,
        normal: Tensor,
        anomalous: Tensor,
        generator: torch.Generator | None = None,
        observe: Callable[[Tensor], None] | None = None,
    ) -> Tensor:
        """ATP loss for a batch of normal images and their synthetic anomalous versions.

        Args:
            normal: (B, 3, H, W) in [0, 1].
            anomalous: (B, 3, H, W) in [0, 1]; equal to ``normal`` where no anomaly was drawn.
            generator: source of the random draws (VAE posterior samples, timesteps, noise);
                None = torch's global generator.
            observe: called with the normal latents (B, C, h, w), so that statistics of them
                need no second encoding.
        """
        with torch.no_grad():
            z = self.codec.encode(torch.cat([normal, anomalous]), sample=True, generator=generator)
        z_normal, z_anomalous = z.chunk(2)
        if observe is not None:
            observe(z_normal)
        B = z_normal.shape[0]
        t = self.schedule.sample_timesteps(B, z.device, generator)
        eps = torch.randn(z_normal.shape, device=z.device, generator=generator)
        z_mixed = mix_latents(z_normal, z_anomalous, t, self.schedule.num_train_timesteps)
        x_t = self.schedule.add_noise(z_mixed, eps, t)
        if self.prediction == "x0":
            target = atp_x0_target(z_mixed, z_normal, self.target_sign)
        else:
            target = atp_noise_target(
                eps, z_mixed, z_normal, self.schedule.abar(t, z_mixed), self.target_sign
            )
        return atp_loss(self.denoiser(x_t, t), target)

    def predict_noise(self, x_t: Tensor, t: Tensor, context: Tensor | None = None) -> Tensor:
        """eps_hat (B, C, h, w) at inference (guided), derived from x0 for x0-prediction.

        Args:
            x_t: noisy latents (B, C, h, w).
            t: timesteps (B,).
            context: (B, L, D) per-image prompt embeddings; None = the fixed prompt.
        """
        out = self.denoiser(x_t, t, guided=True, context=context).float()
        return self.schedule.predict_eps(x_t, out, t) if self.prediction == "x0" else out

    # -- inference: adaptive denoising step (ADS) and feature fusion (SAFF) ---------------------
    def ddim_trajectory(self) -> list[tuple[int, int]]:
        """The (t, t_prev) pairs of the DDIM trajectory (``sampler.spacing``).

        "leading": over the first t_max training steps, as the official scheduler (625, 599,
        ..., 1 for t_max 650 and 25 steps); "linspace": from the noising step to 0.
        """
        cfg = self.sampler
        start = cfg.t_max - 1 if cfg.spacing == "leading" else cfg.noise_step
        return self.schedule.ddim_timesteps(start, cfg.steps, cfg.spacing)

    def decode(self, latents: Tensor, raw: bool = False) -> Tensor:
        """Decode latents (N, C, h, w) -> images (N, 3, H, W), ``sampler.decode_chunk`` at a time.

        Raw decodes are in about [-1, 1] (`LatentCodec.decode_raw`), the others in [0, 1]. The
        decoder's peak memory grows with the chunk, not with N: SD v1.4's VAE decoder keeps about
        six 128-channel maps of the output size per image, ~6 x 128 x H x W x 4 bytes in fp32,
        0.75 GiB at 512 px (measured on CPU with random weights: 1.5 GiB for 2 and 3.0 GiB for
        4 images), half of it in fp16; DINO ViT-B/8 on the chunk's 512 px decodes adds about
        0.23 GiB per image. With the default chunk of 8 an ADS check of a test batch of 32 (64
        decodes) peaks at about 6 GiB (+ 2 GiB) in fp32 instead of 48 GiB (+ 15 GiB).
        """
        decode = self.codec.decode_raw if raw else self.codec.decode
        return torch.cat([decode(chunk) for chunk in latents.split(self.sampler.decode_chunk)])

    def ads_discrepancy(self, x0_in: Tensor, x0_gen: Tensor) -> Tensor:
        """A(p) = min_q (1 - cos(f_in(p), f_gen(q))) on the decoded latents (B, 1, h, w).

        ``sampler.ads_input`` picks the features: of the raw or of the normalised decodes; in
        feature space the latents' own level ``sampler.feature_level``. The latents are decoded
        and their features taken ``sampler.decode_chunk`` at a time (`decode`).
        """
        latents = torch.cat([x0_in, x0_gen])
        cfg = self.sampler
        if self.in_feature_space:
            f_in, f_gen = self.codec.levels(latents)[cfg.feature_level].chunk(2)
            return nn_discrepancy(f_in, f_gen)
        raw = cfg.ads_input == "raw"
        levels = []
        for chunk in latents.split(cfg.decode_chunk):
            images = self.decode(chunk, raw)
            size = cfg.feature_size
            if size is not None and images.shape[-2:] != (size, size):
                images = F.interpolate(
                    images, size=(size, size), mode="bilinear", align_corners=False
                )
            levels.append(self.features(images, normalize=not raw)[cfg.feature_level])
        f_in, f_gen = torch.cat(levels).chunk(2)
        return nn_discrepancy(f_in, f_gen)

    @torch.no_grad()
    def reconstruct(
        self,
        images: Tensor,
        seed: int = 0,
        noise: Tensor | None = None,
        context: Tensor | None = None,
    ) -> Reconstruction:
        """Reconstruct a normal version of ``images`` (B, 3, H, W) in [0, 1].

        Every sample is noised to ``sampler.noise_step`` and follows the same DDIM trajectory
        (`ddim_trajectory`); while it is still adapting, its generated x0 is compared with the
        input's x0 (the input re-noised with the same eps and cleaned with the same eps_hat). It
        stops at the first step where s > tau (taking the SAFF fusion) or t < min_step (taking
        the input-anchored x0). Stopping is a per-sample flag; the batch is never split into a
        Python loop over samples.

        Args:
            images: (B, 3, H, W) in [0, 1].
            seed: seeds each image's noise eps with the image (`randn_per_image`) when ``noise``
                is not given, so a reconstruction does not depend on the batch.
            noise: eps (B, C, h, w) in the diffusion space, to fix it from outside.
            context: (B, L, D) each image's prompt embedding (its category's); None = the
                fixed prompt (conditional denoisers only).
        """
        cfg = self.sampler
        z0 = self.codec.encode(images)
        B = z0.shape[0]
        device = z0.device
        eps = randn_per_image(images, tuple(z0.shape[1:]), seed) if noise is None else noise
        active = torch.ones(B, dtype=torch.bool, device=device)
        stop_steps = torch.full((B,), -1, dtype=torch.long, device=device)
        stop_scores = torch.zeros(B, device=device)
        x_t = self.schedule.add_noise(z0, eps, torch.full((B,), cfg.noise_step, device=device))
        for t_int, t_prev_int in self.ddim_trajectory():
            t = torch.full((B,), t_int, device=device, dtype=torch.long)
            eps_hat = self.predict_noise(x_t, t, context)
            x0 = self.schedule.predict_x0(x_t, eps_hat, t)
            if bool(active.any()):
                idx = active.nonzero().squeeze(1)
                x0[idx], stopped, s = self._adapt(
                    z0[idx], eps[idx], eps_hat[idx], x0[idx], t[idx], t_int
                )
                stop_steps[idx[stopped]] = t_int
                stop_scores[idx[stopped]] = s[stopped]
                active[idx[stopped]] = False
            x_t = self.schedule.ddim_step(x0, eps_hat, torch.full_like(t, t_prev_int))
        stop_steps[active] = 0  # never stopped: the generated trajectory to the end
        images = None if self.in_feature_space else self.decode(x_t)
        return Reconstruction(images, x_t, z0, stop_steps, stop_scores)

    def _adapt(
        self, z0: Tensor, eps: Tensor, eps_hat: Tensor, x0_gen: Tensor, t: Tensor, t_int: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One ADS decision for the still-adapting samples (b of them).

        Returns:
            the x0 to step with (b, C, h, w), the stop flags (b,) and the scores s (b,).
        """
        x0_in = self.schedule.predict_x0(self.schedule.add_noise(z0, eps, t), eps_hat, t)
        discrepancy = self.ads_discrepancy(x0_in, x0_gen)
        s = topk_mean(discrepancy, self.sampler.score_topk)
        fuse = s > self.sampler.tau
        stop = fuse | (t_int < self.sampler.min_step)
        mask = torch.sigmoid(
            F.interpolate(discrepancy, size=x0_gen.shape[-2:], mode="bilinear", align_corners=False)
        )
        fused = torch.where(fuse.view(-1, 1, 1, 1), mask * x0_gen + (1 - mask) * x0_in, x0_in)
        return torch.where(stop.view(-1, 1, 1, 1), fused, x0_gen), stop, s

    # -- scoring --------------------------------------------------------------------------------
    def _discrepancy(
        self,
        feats: list[tuple[Tensor, Tensor]],
        size: tuple[int, int],
        both_directions: bool,
        radius: int | tuple[int | None, ...] | None,
    ) -> Tensor:
        """`multi_level_map` (B, 1, *size) of the (input, reconstruction) level pairs.

        The search is within ``radius`` (one radius, or one per level), blended with the search
        over all positions by ``scoring.global_weight``.
        """
        query, reference = [f[0] for f in feats], [f[1] for f in feats]
        weight = self.scoring.global_weight
        maps = multi_level_map(query, reference, size, both_directions, radius)
        if radius is None or weight == 0:
            return maps
        anywhere = multi_level_map(query, reference, size, both_directions, None)
        return (1 - weight) * maps + weight * anywhere

    @torch.no_grad()
    def anomaly_map(
        self,
        images: Tensor,
        reconstructions: Tensor,
        foreground: Tensor | None = None,
        bidirectional: Tensor | None = None,
        input_latents: Tensor | None = None,
        stationary: Tensor | None = None,
        polarity: Tensor | None = None,
    ) -> Tensor:
        """Multi-level NN feature discrepancy between input and reconstruction (B, 1, h, w).

        Args:
            images: (B, 3, H, W) in [0, 1].
            reconstructions: (B, 3, H', W') in [0, 1] (resized to the scoring size); in feature
                space the reconstructed latents (B, C, h, w), compared with the input's.
            foreground: (B,) bool, which maps are multiplied by the object mask; None =
                ``scoring.foreground`` for all.
            bidirectional: (B,) bool, which maps use both NN directions; None =
                ``scoring.bidirectional`` for all.
            input_latents: in feature space, the input's latents (B, C, h, w) if already
                encoded (`Reconstruction.input_latents`); None encodes ``images``.
            stationary: (B,) bool, which maps use ``scoring.stationary_search_radius`` instead
                of ``scoring.search_radius``; None = none.
            polarity: (B,) int, each image's object class for the object mask
                (`adbench.synthesis.otsu_foreground`); None = the class rarer on the border.
        """
        cfg = self.scoring
        batch = len(images)
        size = (cfg.feature_size,) * 2 if cfg.feature_size else tuple(images.shape[-2:])
        if self.in_feature_space:  # no decoded image: the input alone (for the object mask)
            pair = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            if input_latents is None:
                input_latents = self.codec.encode(images)
            latents = torch.cat([input_latents, reconstructions])
            feats = [f.chunk(2) for f in self.codec.levels(latents)]
        else:
            pair = torch.cat(
                [
                    F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                    if x.shape[-2:] != size
                    else x
                    for x in (images, reconstructions)
                ]
            )
            feats = [f.chunk(2) for f in self.features(pair)]
        if bidirectional is None:
            bidirectional = torch.full((batch,), cfg.bidirectional)
        if stationary is None:
            stationary = torch.zeros(batch, dtype=torch.bool)
        maps = images.new_zeros((batch, 1, *size))
        for both in (False, True):  # each group of images with the same settings at once
            for textured, radius in (
                (False, cfg.search_radius),
                (True, cfg.stationary_search_radius),
            ):
                group = ((bidirectional.cpu() == both) & (stationary.cpu() == textured)).nonzero()
                if len(group):
                    idx = group.squeeze(1).to(images.device)
                    maps[idx] = self._discrepancy(
                        [(q[idx], r[idx]) for q, r in feats], size, both, radius
                    )
        if cfg.pixel_weight:
            normalised = self.features.normalize(pair).chunk(2)
            maps = add_pixel_term(maps, normalised[0], normalised[1], cfg.pixel_weight)
        if foreground is None:
            foreground = torch.full((batch,), cfg.foreground)
        foreground = foreground.to(images.device).view(batch, 1, 1, 1)
        if bool(foreground.any()):
            sigma = cfg.sigma * size[0] / images.shape[-2]  # the scoring sigma, at this size
            mask = foreground_mask(pair[:batch], sigma, polarity)
            maps = torch.where(foreground, maps * mask, maps)
        return maps
