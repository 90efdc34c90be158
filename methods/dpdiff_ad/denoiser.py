"""The feature denoiser: a token transformer with adaLN time conditioning.

Its prototype-aware cross-attention lets each token attend to its own local prototype(s) and to
every global one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .config import DenoiserConfig


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding (B, dim) of integer timesteps (B,) (Vaswani et al.; Ho et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return F.pad(emb, (0, dim % 2))


def sincos_2d(h: int, w: int, dim: int, device: torch.device) -> Tensor:
    """Fixed 2D sine-cosine position embedding (h * w, dim), half of the channels per axis."""
    quarter = dim // 4
    omega = 1.0 / 10_000 ** (torch.arange(quarter, device=device) / max(quarter, 1))
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angles = coord.float()[:, None] * omega[None]
        parts += [angles.sin(), angles.cos()]
    return F.pad(torch.cat(parts, dim=1), (0, dim - 4 * quarter))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (B, N, D) * (1 + scale) + shift with per-sample (B, D) shift and scale."""
    return x * (1 + scale[:, None]) + shift[:, None]


class PrototypeCrossAttention(nn.Module):
    """Cross-attention whose keys for token i are its local conditions plus every global one.

    This is the locality-masked attention of the spec computed without a mask: local scores are
    per-token dot products, global scores a shared matrix product, one softmax over both.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, local: Tensor | None, glob: Tensor | None) -> Tensor:
        """Attend.

        Args:
            x: queries (B, N, D).
            local: local conditions (B, N, L, D), L = 1 (aggregate) or k (top-k); None when
                the local prototypes are ablated.
            glob: global conditions (G, D), shared by every token and image; None when the
                global prototypes are ablated.

        Returns:
            (B, N, D).
        """
        h = self.heads
        q = rearrange(self.q(x), "b n (h d) -> b n h d", h=h)
        scale = q.shape[-1] ** -0.5
        scores, values = [], []
        if local is not None:
            k_l, v_l = rearrange(self.kv(local), "b n l (two h d) -> two b n l h d", two=2, h=h)
            scores.append(torch.einsum("bnhd,bnlhd->bnhl", q, k_l) * scale)
            values.append(lambda a: torch.einsum("bnhl,bnlhd->bnhd", a, v_l))
        if glob is not None:
            k_g, v_g = rearrange(self.kv(glob), "g (two h d) -> two g h d", two=2, h=h)
            scores.append(torch.einsum("bnhd,ghd->bnhg", q, k_g) * scale)
            values.append(lambda a: torch.einsum("bnhg,ghd->bnhd", a, v_g))
        attn = torch.softmax(torch.cat(scores, dim=-1), dim=-1)
        parts = attn.split([s.shape[-1] for s in scores], dim=-1)
        out = sum(value(a) for value, a in zip(values, parts, strict=True))
        return self.out(rearrange(out, "b n h d -> b n (h d)"))


class DenoiserBlock(nn.Module):
    """Self-attention, prototype-aware cross-attention and MLP, each with adaLN-Zero (DiT)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norms = nn.ModuleList(
            nn.LayerNorm(width, elementwise_affine=False, eps=1e-6) for _ in range(3)
        )
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.cross = PrototypeCrossAttention(width, heads)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width)
        )
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 9 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, temb: Tensor, local: Tensor | None, glob: Tensor | None) -> Tensor:
        """One block on tokens x (B, N, D) -> (B, N, D).

        Args:
            x: tokens (B, N, D).
            temb: timestep embedding (B, D), the adaLN conditioning.
            local: local conditions (B, N, L, D), or None (see `PrototypeCrossAttention`).
            glob: global conditions (G, D), or None.
        """
        mods = self.ada(temb).chunk(9, dim=-1)
        y = modulate(self.norms[0](x), mods[0], mods[1])
        q, k, v = rearrange(self.qkv(y), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        y = rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")
        x = x + mods[2][:, None] * self.proj(y)
        y = modulate(self.norms[1](x), mods[3], mods[4])
        x = x + mods[5][:, None] * self.cross(y, local, glob)
        y = modulate(self.norms[2](x), mods[6], mods[7])
        return x + mods[8][:, None] * self.mlp(y)


class PrototypeDenoiser(nn.Module):
    """Denoise noisy feature tokens conditioned on the timestep and on both prototype sets.

    Args:
        channels: C, the feature width.
        config: width D, depth, heads, MLP ratio.
    """

    def __init__(self, channels: int, config: DenoiserConfig) -> None:
        super().__init__()
        width = config.width
        self.width = width
        self.embed = nn.Linear(channels, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.condition = nn.Linear(channels, width)
        self.type_embedding = nn.Parameter(torch.zeros(2, width))  # 0 local, 1 global
        nn.init.normal_(self.type_embedding, std=0.02)
        self.blocks = nn.ModuleList(
            DenoiserBlock(width, config.heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.head = nn.Linear(width, channels)
        for layer in (self.final_ada[1], self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        grid: tuple[int, int],
        local: Tensor | None,
        glob: Tensor | None,
    ) -> Tensor:
        """Predict eps or x0 (as trained) for noisy tokens.

        Args:
            x_t: (B, N, C) noisy tokens, N = h * w.
            t: (B,) integer timesteps.
            grid: (h, w) of the token grid.
            local: (B, N, L, C) local prototype condition(s) of each token (None: ablated).
            glob: (G, C) the global prototypes (None: ablated).

        Returns:
            (B, N, C).
        """
        x = self.embed(x_t) + sincos_2d(*grid, self.width, x_t.device).to(x_t.dtype)
        temb = self.time(timestep_embedding(t, self.width).to(x.dtype))
        if local is not None:
            local = self.condition(local) + self.type_embedding[0]
        if glob is not None:
            glob = self.condition(glob) + self.type_embedding[1]
        for block in self.blocks:
            x = block(x, temb, local, glob)
        shift, scale = self.final_ada(temb).chunk(2, dim=-1)
        return self.head(modulate(self.final_norm(x), shift, scale))
