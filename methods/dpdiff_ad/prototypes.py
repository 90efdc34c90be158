"""The two prototype banks: local (nearest-prototype aggregation) and global (OT-regularised)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .config import GlobalPrototypeConfig, LocalPrototypeConfig


def distributed() -> bool:
    """Whether a torch.distributed process group is running."""
    return dist.is_available() and dist.is_initialized()


def is_rank_zero() -> bool:
    """True on rank 0 of a process group, and always when not running distributed."""
    return not distributed() or dist.get_rank() == 0


def gather_rows(tensor: Tensor) -> tuple[Tensor, int]:
    """Concatenate the rows (R_r, ...) of every process in rank order, without gradient.

    Processes may hold different numbers of rows (e.g. a last, smaller batch).

    Returns:
        all rows (sum_r R_r, ...) and the offset of this process's rows in them; the tensor
        itself and 0 when not running distributed.
    """
    tensor = tensor.detach()
    if not distributed():
        return tensor, 0
    world = dist.get_world_size()
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    counts = [int(size) for size in sizes]
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    rank = dist.get_rank()
    return torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)]), sum(counts[:rank])


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` in place over processes when running distributed; returns it."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def broadcast(tensor: Tensor) -> Tensor:
    """Copy rank 0's ``tensor`` to every process when running distributed; returns it."""
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(tensor, src=0)
    return tensor


@torch.no_grad()
def spherical_kmeans(
    points: Tensor, k: int, iters: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """K-means with cosine assignment: k-means++ seeding, then Lloyd iterations.

    Centres are the means of their members (they live in token space, like the tokens).

    Args:
        points: (P, C).
        k: number of centres M; with fewer distinct points than centres, points are chosen
            again with a little jitter, so every centre is distinct.
        iters: Lloyd iterations (0: the k-means++ seeds themselves).
        generator: random source of the seeding (a CPU generator).

    Returns:
        centres (M, C) and the number of points assigned to each (M,).
    """
    points = points.float()
    unit = F.normalize(points, dim=1)
    chosen = _kmeanspp(unit, k, generator)
    centres = points[chosen].clone()
    seen: set[int] = set()
    repeats = []
    for slot, index in enumerate(chosen.tolist()):
        if index in seen:
            repeats.append(slot)
        seen.add(index)
    if repeats:
        noise = torch.randn(len(repeats), points.shape[1], generator=generator)
        centres[repeats] += 1e-2 * points.std() * noise.to(points.device)
    for _ in range(iters):
        assign = _nearest(unit, F.normalize(centres, dim=1))
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    assign = _nearest(unit, F.normalize(centres, dim=1))
    return centres, torch.bincount(assign, minlength=k).float()


def _kmeanspp(unit: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with distance 1 - cos; (M,) indices."""
    n = unit.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    distance = (1 - unit @ unit[chosen[0]]).clamp(min=0)
    for _ in range(k - 1):
        weights = distance.pow(2).cpu().double()
        if weights.sum() <= 0:  # every point is already a centre: draw uniformly
            weights = torch.ones_like(weights)
        chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
        distance = torch.minimum(distance, (1 - unit @ unit[chosen[-1]]).clamp(min=0))
    return torch.tensor(chosen, device=unit.device)


def _nearest(unit_points: Tensor, unit_centres: Tensor, chunk: int = 32768) -> Tensor:
    """Index of the most similar centre for each point, in chunks to bound memory."""
    return torch.cat([(block @ unit_centres.T).argmax(1) for block in unit_points.split(chunk)])


class LocalMatch(NamedTuple):
    """The local prototypes matched to every token.

    Attributes:
        aggregate: l (B, N, C), softmax(s / tau_L)-weighted sum of the top-k prototypes.
        index: (B, N, k) indices of the top-k prototypes, most similar first.
        nearest: (B, N) cosine similarity to the nearest prototype.
    """

    aggregate: Tensor
    index: Tensor
    nearest: Tensor


class LocalPrototypes(nn.Module):
    """The local bank P_L (M = K_L prototypes in token space).

    With ``update="vq"`` the prototypes are parameters trained by L_loc; with ``update="ema"``
    they follow EMA k-means statistics (`ema_update`; the buffers ``ema_count`` (M,) and
    ``ema_sum`` (M, C) exist in this mode only) and receive no gradient. Both modes track usage
    and re-seed dead prototypes from training tokens (`reseed`).
    """

    def __init__(self, channels: int, config: LocalPrototypeConfig) -> None:
        super().__init__()
        self.config = config
        num = config.num
        self.weight = nn.Parameter(torch.randn(num, channels), requires_grad=config.update == "vq")
        self.register_buffer("usage", torch.full((num,), 1.0 / num))
        self.ema = config.update == "ema"
        if self.ema:
            self.register_buffer("ema_count", torch.ones(num))
            self.register_buffer("ema_sum", self.weight.detach().clone())

    def state_tensors(self) -> list[Tensor]:
        """The tensors every process must share: prototypes, usage and the EMA statistics."""
        ema = [self.ema_count, self.ema_sum] if self.ema else []
        return [self.weight.data, self.usage, *ema]

    def similarity(self, tokens: Tensor) -> Tensor:
        """Cosine similarity (B, N, M) of tokens (B, N, C) to every prototype."""
        return F.normalize(tokens, dim=-1) @ F.normalize(self.weight, dim=-1).T

    def forward(self, tokens: Tensor) -> LocalMatch:
        """Top-k nearest-prototype aggregation of tokens (B, N, C) (spec, local prototypes).

        Computed in float32 even under autocast, so the top-k choice is not rounded away.
        """
        with torch.autocast(tokens.device.type, enabled=False):
            sim = self.similarity(tokens.float())
            top, index = sim.topk(self.config.topk, dim=-1)
            weights = torch.softmax(top / self.config.temperature, dim=-1)
            dense = torch.zeros_like(sim).scatter(-1, index, weights)
            return LocalMatch(dense @ self.weight, index, top[..., 0])

    @torch.no_grad()
    def initialize(self, centres: Tensor, counts: Tensor) -> None:
        """Set the bank from k-means centres (M, C) and cluster sizes (M,)."""
        self.weight.copy_(centres)
        if self.ema:
            self.ema_sum.copy_(centres)
            self.ema_count.fill_(1.0)
        self.usage.copy_(counts / counts.sum().clamp(min=1))

    @torch.no_grad()
    def track_usage(self, nearest_index: Tensor) -> None:
        """EMA of each prototype's share of nearest-prototype assignments (B, N)."""
        counts = all_reduce_sum(
            torch.bincount(nearest_index.flatten(), minlength=self.config.num).float()
        )
        share = counts / counts.sum().clamp(min=1)
        self.usage.lerp_(share, 1 - self.config.momentum)

    @torch.no_grad()
    def ema_update(self, tokens: Tensor, nearest_index: Tensor) -> None:
        """One EMA k-means step from tokens (B, N, C) and their nearest prototype (B, N).

        Counts and sums are averaged over processes, counts are Laplace-smoothed so an unused
        prototype keeps its position until it is re-seeded.
        """
        flat = tokens.reshape(-1, tokens.shape[-1]).float()
        index = nearest_index.flatten()
        counts = all_reduce_sum(torch.bincount(index, minlength=self.config.num).float())
        sums = all_reduce_sum(torch.zeros_like(self.ema_sum).index_add_(0, index, flat))
        decay = 1 - self.config.momentum
        self.ema_count.lerp_(counts, decay)
        self.ema_sum.lerp_(sums, decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (total + self.config.num * 1e-5) * total
        self.weight.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    def reseed(self, tokens: Tensor, generator: torch.Generator | None = None) -> int:
        """Move dead prototypes onto random training tokens (B, N, C); returns how many moved.

        A prototype is dead when its usage share is below ``reseed_threshold / M``. Rank 0's
        choice is broadcast so every process keeps the same bank.
        """
        num = self.config.num
        dead = (self.usage < self.config.reseed_threshold / num).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        flat = tokens.reshape(-1, tokens.shape[-1]).float()
        pick = torch.randint(flat.shape[0], (dead.numel(),), generator=generator, device="cpu").to(
            flat.device
        )
        self.weight[dead] = flat[pick]
        if self.ema:
            self.ema_count[dead] = self.ema_count.mean()
            self.ema_sum[dead] = flat[pick] * self.ema_count[dead, None]
        self.usage[dead] = 1.0 / num
        for tensor in self.state_tensors():
            broadcast(tensor)
        return int(dead.numel())


class GlobalPrototypes(nn.Module):
    """The global bank P_G (K_G prototypes of L2-normalised image descriptors).

    With ``ot_target="queue"`` it also holds a ring buffer of the most recent descriptors
    (SwAV's queue), which joins each batch in the OT problem; every process enqueues the same
    gathered batch, so the queues stay identical under DDP.
    """

    def __init__(self, channels: int, config: GlobalPrototypeConfig) -> None:
        super().__init__()
        self.config = config
        self.weight = nn.Parameter(F.normalize(torch.randn(config.num, channels), dim=1))
        if config.ot_target == "queue":
            self.register_buffer("queue", torch.zeros(config.queue_size, channels))
            self.register_buffer("queue_filled", torch.tensor(0))
            self.register_buffer("queue_next", torch.tensor(0))

    @staticmethod
    def descriptor(tokens: Tensor) -> Tensor:
        """Image descriptors g (B, C): mean-pooled tokens (B, N, C), L2-normalised."""
        return F.normalize(tokens.float().mean(1), dim=-1)

    def similarity(self, descriptors: Tensor, projection: Tensor | None = None) -> Tensor:
        """cos(g_b, p_k) (B, K_G) for descriptors (B, C), in float32 even under autocast.

        With a ``projection`` (D, C) the cosine is taken after it: cos(W g_b, W p_k), with the
        gradient to W (``ot_acts_on="denoiser"``: W is the denoiser's condition embedding).
        """
        with torch.autocast(descriptors.device.type, enabled=False):
            prototypes = F.normalize(self.weight.float(), dim=-1)
            descriptors = descriptors.float()
            if projection is not None:
                prototypes = F.normalize(prototypes @ projection.float().T, dim=-1)
                descriptors = F.normalize(descriptors @ projection.float().T, dim=-1)
            return descriptors @ prototypes.T

    def queued(self) -> Tensor | None:
        """The descriptors in the queue (Q', C), oldest first; None without a queue."""
        if not hasattr(self, "queue"):
            return None
        filled, start = int(self.queue_filled), int(self.queue_next)
        if filled < self.queue.shape[0]:
            return self.queue[:filled]
        return torch.cat([self.queue[start:], self.queue[:start]])

    @torch.no_grad()
    def enqueue(self, descriptors: Tensor) -> None:
        """Push descriptors (R, C) into the queue, dropping the oldest; no-op without one."""
        if not hasattr(self, "queue"):
            return
        size = self.queue.shape[0]
        descriptors = descriptors.detach()[-size:].to(self.queue.dtype)
        slots = (int(self.queue_next) + torch.arange(descriptors.shape[0])) % size
        self.queue[slots.to(self.queue.device)] = descriptors
        self.queue_next.fill_((int(self.queue_next) + descriptors.shape[0]) % size)
        self.queue_filled.fill_(min(size, int(self.queue_filled) + descriptors.shape[0]))

    @torch.no_grad()
    def initialize(self, centres: Tensor, descriptors: Tensor | None = None) -> None:
        """Set the bank from k-means centres (K_G, C) of training descriptors.

        The queue (if any) is filled with those descriptors (I, C).
        """
        self.weight.copy_(F.normalize(centres, dim=-1))
        if hasattr(self, "queue") and descriptors is not None:
            self.queue_filled.zero_()
            self.queue_next.zero_()
            self.enqueue(descriptors)
