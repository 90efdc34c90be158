"""DPDiff-AD as a pure torch model: features, dual prototypes, denoiser, scoring."""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from adbench.diffusion import NoiseSchedule, randn_per_image

from .config import DPDiffADConfig
from .denoiser import PrototypeDenoiser
from .features import FeatureAdapter, TokenExtractor
from .loss import (
    diffusion_loss,
    local_prototype_loss,
    ot_cross_entropy,
    ot_sinkhorn_cost,
    ot_targets,
)
from .prototypes import (
    GlobalPrototypes,
    LocalMatch,
    LocalPrototypes,
    broadcast,
    gather_rows,
    is_rank_zero,
    spherical_kmeans,
)
from .scoring import anomaly_scores


def _is_rank_zero() -> bool:
    """Whether this process runs the k-means initialisation (a seam for tests)."""
    return is_rank_zero()


class TrainingLosses(NamedTuple):
    """The loss terms of one training batch, and what the bank updates need afterwards.

    Attributes:
        total: L = L_diff + w_loc L_loc + w_ot L_OT.
        diffusion, local, ot: the three terms.
        tokens: (B, N, C) the batch's normalised tokens (no gradient).
        nearest_index: (B, N) each token's nearest local prototype.
        descriptors: (R, C) the descriptors of the batch gathered over processes (no
            gradient), for the descriptor queue.
    """

    total: Tensor
    diffusion: Tensor
    local: Tensor
    ot: Tensor
    tokens: Tensor
    nearest_index: Tensor
    descriptors: Tensor


class DPDiffModel(nn.Module):
    """Frozen token extractor, local and global prototype banks, prototype-conditioned denoiser.

    The EMA copy of the denoiser (``ema_denoiser``) is the one used by `reconstruct`.
    """

    def __init__(self, config: DPDiffADConfig) -> None:
        super().__init__()
        self.config = config
        self.extractor = TokenExtractor(
            config.backbone, config.features, random_weights=config.random_weights
        )
        channels = self.extractor.channels
        self.local = LocalPrototypes(channels, config.local_prototypes)
        self.glob = GlobalPrototypes(channels, config.global_prototypes)
        # a bank that no loss reaches keeps its k-means start (and DDP sees no unused
        # parameter): the ablations without L_OT or without L_loc
        trained = self._trained_banks()
        self.glob.weight.requires_grad_("global" in trained)
        self.local.weight.requires_grad_(self.local.weight.requires_grad and "local" in trained)
        self.adapter = (
            FeatureAdapter(channels) if config.global_prototypes.ot_acts_on == "adapter" else None
        )
        self.denoiser = PrototypeDenoiser(channels, config.denoiser)
        self.ema_denoiser = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.schedule = NoiseSchedule(config.schedule)
        self.register_buffer("initialized", torch.tensor(False))

    def _trained_banks(self) -> set[str]:
        """The banks a loss reaches.

        Through their own term (L_loc, L_OT), or through the denoiser when the conditions it
        sees are not detached.
        """
        config = self.config
        through_denoiser = (
            set() if config.denoiser.detach_conditions else set(config.denoiser.conditions)
        )
        own = {
            name
            for name, weight in (("local", config.loss.local), ("global", config.loss.ot))
            if weight != 0
        }
        return own | through_denoiser

    # -- features ---------------------------------------------------------------------------
    def tokens(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """The tokens every part uses (B, N, C) and the grid.

        Normalised backbone tokens through the feature adapter (when ``ot_acts_on="adapter"``,
        with its gradient).
        """
        tokens, grid = self.extractor(images)
        return (tokens if self.adapter is None else self.adapter(tokens)), grid

    # -- conditions -------------------------------------------------------------------------
    def conditions(self, match: LocalMatch) -> tuple[Tensor | None, Tensor | None]:
        """Cross-attention conditions: local (B, N, L, C) and global (K_G, C).

        None for a set left out of ``denoiser.conditions`` (ablation).

        Local: the aggregate l_i (L = 1) or the top-k prototypes (L = k). Global prototypes
        are unit vectors; they are scaled by sqrt(C) to the norm of normalised tokens.
        """
        config = self.config
        local = glob = None
        if "local" in config.denoiser.conditions:
            local = (
                match.aggregate[:, :, None]
                if config.local_prototypes.keys == "aggregate"
                else self.local.weight[match.index]
            )
        if "global" in config.denoiser.conditions:
            glob = F.normalize(self.glob.weight, dim=-1) * math.sqrt(self.glob.weight.shape[1])
        if config.denoiser.detach_conditions:
            local, glob = (None if c is None else c.detach() for c in (local, glob))
        return local, glob

    # -- training ---------------------------------------------------------------------------
    def training_losses(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> TrainingLosses:
        """All loss terms for a batch of normal images (B, 3, H, W) in [0, 1]."""
        config = self.config
        adapted, grid = self.tokens(images)
        tokens = adapted.detach()  # only L_OT reaches the adapter (through the descriptors)
        match = self.local(tokens)
        l_local = local_prototype_loss(tokens, match.aggregate)

        descriptors = self.glob.descriptor(adapted)
        gathered, offset = gather_rows(descriptors)
        if config.loss.ot == 0:  # ablation without the OT term: no Sinkhorn solve
            l_ot = descriptors.new_zeros(())
        else:
            similarity = self.glob.similarity(descriptors, self.ot_projection())
            q = self.ot_targets(gathered)[offset : offset + tokens.shape[0]]
            if config.global_prototypes.ot_loss == "cross_entropy":
                l_ot = ot_cross_entropy(similarity, q, config.global_prototypes.temperature)
            else:
                l_ot = ot_sinkhorn_cost(similarity, q / tokens.shape[0])

        t = self.schedule.sample_timesteps(tokens.shape[0], tokens.device, generator)
        noise = torch.randn(tokens.shape, generator=generator, device=tokens.device)
        x_t = self.schedule.add_noise(tokens, noise, t)
        prediction = self.denoiser(x_t, t, grid, *self.conditions(match))
        target = noise if config.denoiser.prediction == "eps" else tokens
        l_diff = diffusion_loss(prediction, target)

        total = l_diff + config.loss.local * l_local + config.loss.ot * l_ot
        return TrainingLosses(
            total, l_diff, l_local, l_ot, tokens.detach(), match.index[..., 0], gathered
        )

    def ot_projection(self) -> Tensor | None:
        """The map OT similarities are taken after.

        The denoiser's condition embedding (D, C) when ``ot_acts_on="denoiser"``, else None
        (cosine in token space).
        """
        if self.config.global_prototypes.ot_acts_on == "denoiser":
            return self.denoiser.condition.weight
        return None

    @torch.no_grad()
    def ot_targets(self, descriptors: Tensor) -> Tensor:
        """OT targets Q (R, K_G) of descriptors (R, C), rows summing to 1.

        ``global_prototypes.ot_target`` picks the plan: with the queue, over the batch, or
        unbalanced.
        """
        glob = self.config.global_prototypes
        projection = self.ot_projection()
        similarity = self.glob.similarity(descriptors, projection)
        queued = self.glob.queued()
        extra = None if queued is None else self.glob.similarity(queued, projection)
        solver = "unbalanced" if glob.ot_target == "unbalanced" else "balanced"
        return ot_targets(
            similarity, glob.sinkhorn_eps, glob.sinkhorn_iters, solver, glob.unbalanced_reg_m, extra
        )

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """EMA of the denoiser, decay min(ema_decay, (1 + step) / (10 + step)) (warm-up)."""
        decay = min(self.config.denoiser.ema_decay, (1 + step) / (10 + step))
        ema = list(self.ema_denoiser.parameters())
        torch._foreach_lerp_(ema, list(self.denoiser.parameters()), 1 - decay)

    # -- initialisation ---------------------------------------------------------------------
    @torch.no_grad()
    def initialization_sample(
        self, images: Tensor, max_tokens: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """What `initialize` needs from one batch of training images (B, 3, H, W).

        Returns:
            at most ``max_tokens`` random raw tokens (P, C) and per-image summaries (B, C): raw
            token means for "standardize" (normalised later, the map is affine), means of
            normalised tokens for "layernorm".
        """
        raw, _ = self.extractor.raw(images)
        flat = raw.reshape(-1, raw.shape[-1])
        keep = torch.randperm(flat.shape[0], generator=generator)[:max_tokens]
        per_token = self.config.features.norm == "layernorm"
        summary = (self.extractor.normalize(raw) if per_token else raw).mean(1)
        return flat[keep.to(flat.device)], summary

    @torch.no_grad()
    def initialize(
        self, raw_tokens: Tensor, summaries: Tensor, generator: torch.Generator | None = None
    ) -> None:
        """Feature statistics and k-means initialisation of both banks (spec, local prototypes).

        K-means runs on rank 0 only; the other processes allocate tensors of the same shapes and
        receive rank 0's banks, statistics and queue by broadcast.

        Args:
            raw_tokens: (P, C) raw training tokens.
            summaries: (I, C) per-image summaries from `initialization_sample`.
            generator: random source of k-means.
        """
        iters = self.config.init.kmeans_iters
        if self.config.features.norm == "standardize":
            self.extractor.set_statistics(raw_tokens)
            summaries = self.extractor.normalize(summaries)
        tokens = self.extractor.normalize(raw_tokens)
        descriptors = F.normalize(summaries, dim=-1)
        num_local, num_global = self.config.local_prototypes.num, self.config.global_prototypes.num
        if _is_rank_zero():
            centres, counts = spherical_kmeans(tokens, num_local, iters, generator)
            global_centres, _ = spherical_kmeans(descriptors, num_global, iters, generator)
        else:  # received from rank 0 below
            centres = tokens.new_zeros(num_local, tokens.shape[1])
            counts = tokens.new_zeros(num_local)
            global_centres = descriptors.new_zeros(num_global, descriptors.shape[1])
        self.local.initialize(centres, counts)
        self.glob.initialize(global_centres, descriptors)
        self.initialized.fill_(True)
        for tensor in (
            self.extractor.mean,
            self.extractor.std,
            *self.local.state_tensors(),
            self.glob.weight.data,
            *self.glob.buffers(),
        ):
            broadcast(tensor)

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(
        self,
        tokens: Tensor,
        grid: tuple[int, int],
        local: Tensor | None,
        glob: Tensor | None,
        noise: Tensor,
    ) -> Tensor:
        """F_hat (B, N, C): noise tokens to t_s, then DDIM (eta = 0) or one x0 step, EMA weights.

        Args:
            tokens: (B, N, C) clean normalised tokens F.
            grid: (h, w).
            local: local conditions (B, N, L, C) from `conditions`, or None.
            glob: global conditions (K_G, C) from `conditions`, or None.
            noise: (B, N, C) starting noise (`adbench.diffusion.randn_per_image`).
        """
        inference = self.config.inference
        schedule = self.schedule
        batch = tokens.shape[0]
        start = torch.full((batch,), inference.t_start, device=tokens.device, dtype=torch.long)
        x = schedule.add_noise(tokens, noise, start)
        if inference.sampler == "one_step":
            return self._predict(x, start, grid, local, glob)[0]
        for t, t_prev in schedule.ddim_timesteps(inference.t_start, inference.steps):
            x0, eps = self._predict(x, torch.full_like(start, t), grid, local, glob)
            x = schedule.ddim_step(x0, eps, torch.full_like(start, t_prev))
        return x

    def _predict(
        self, x: Tensor, t: Tensor, grid: tuple[int, int], local: Tensor | None, glob: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """(x0, eps) estimates at step t from the EMA denoiser, whichever it predicts."""
        out = self.ema_denoiser(x, t, grid, local, glob).float()
        if self.config.denoiser.prediction == "eps":
            return self.schedule.predict_x0(x, out, t), out
        return out, self.schedule.predict_eps(x, out, t)

    @torch.no_grad()
    def anomaly_map(self, images: Tensor, seed: int = 0) -> Tensor:
        """Raw anomaly map (B, 1, h, w) of images (B, 3, H, W) in [0, 1] (`anomaly_scores`).

        Each image's starting noise is seeded by the image and ``seed`` (`randn_per_image`),
        so its map does not depend on the batch it is scored in.
        """
        tokens, (h, w) = self.tokens(images)
        match = self.local(tokens)
        weight = self.config.inference.prototype_weight
        if weight == 1:  # prototype-distance-only scoring: the reconstruction has no weight
            recon = tokens
        else:
            noise = randn_per_image(images, tuple(tokens.shape[1:]), seed)
            recon = self.reconstruct(tokens, (h, w), *self.conditions(match), noise=noise)
        scores = anomaly_scores(tokens, recon, match.nearest, weight)
        return rearrange(scores, "b (h w) -> b 1 h w", h=h, w=w)
