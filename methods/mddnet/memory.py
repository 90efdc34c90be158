"""The class-aware memory module (CMM) of MDD-Net (Xing et al., arXiv 2504.14884).

The memory holds ``M`` learnable normal prototypes per class, shape (K, M, D). Every bottleneck
token reads all K * M slots by softmax attention over cosine similarity / tau (class-agnostic, the
same in training and at test time), z_hat = sum_j w_j m_j. Class labels enter only the training
losses (`adbench.methods.mddnet.loss`), through the attention weights and the slots returned here.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from adbench.errors import ConfigError


class MemoryRead(NamedTuple):
    """What one read of the memory returns.

    Attributes:
        readout: z_hat (B, D, h, w), the attention-weighted sum of slots.
        log_weights: (B, N, K, M) log attention weights of each token over every slot.
        tokens: (B, N, D) the query tokens (z flattened).
    """

    readout: Tensor
    log_weights: Tensor
    tokens: Tensor


class ClassAwareMemory(nn.Module):
    """K classes x M slots of D-dimensional normal prototypes, read by cosine attention.

    Args:
        num_classes: K; 0 leaves the memory empty (build with ``num_classes`` from the data).
        slots: M prototypes per class.
        dim: D, the channels of the bottleneck embedding.
        temperature: tau of the softmax over cosine similarities.
        init_std: standard deviation of the Gaussian initialisation of the slots.
    """

    def __init__(
        self, num_classes: int, slots: int, dim: int, temperature: float, init_std: float
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.slots = nn.Parameter(torch.randn(num_classes, slots, dim) * init_std)

    @property
    def num_classes(self) -> int:
        """K, the number of classes the memory holds."""
        return self.slots.shape[0]

    def forward(self, z: Tensor) -> MemoryRead:
        """Read the memory with every token of z (B, D, h, w); see `MemoryRead`."""
        if self.num_classes == 0:
            raise ConfigError(
                "mddnet: the class-aware memory has no classes; set memory.num_classes to the "
                "number of training categories, or build with adbench.create('mddnet', preset, "
                "num_classes=k)"
            )
        h, w = z.shape[-2:]
        tokens = rearrange(z, "b d h w -> b (h w) d")
        slots = rearrange(self.slots, "k m d -> (k m) d").to(tokens.dtype)
        similarity = F.normalize(tokens, dim=-1) @ F.normalize(slots, dim=-1).T
        log_weights = torch.log_softmax(similarity.float() / self.temperature, dim=-1)
        readout = log_weights.exp().to(slots.dtype) @ slots
        return MemoryRead(
            readout=rearrange(readout, "b (h w) d -> b d h w", h=h, w=w),
            log_weights=rearrange(log_weights, "b n (k m) -> b n k m", k=self.num_classes),
            tokens=tokens,
        )
