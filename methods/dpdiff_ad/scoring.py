"""DPDiff-AD's token anomaly score (the map before upsampling, smoothing and pooling)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def anomaly_scores(
    tokens: Tensor, reconstruction: Tensor, nearest: Tensor, prototype_weight: float
) -> Tensor:
    """a_i = (1 - w) (1 - cos(F_i, F_hat_i)) + w (1 - max_m cos(F_i, P_L,m)).

    Args:
        tokens: F (B, N, C), the test image's normalised tokens.
        reconstruction: F_hat (B, N, C).
        nearest: (B, N) cosine similarity of each token to its nearest local prototype.
        prototype_weight: w; 0 scores by reconstruction alone.

    Returns:
        (B, N) token scores, higher = more anomalous.
    """
    discrepancy = 1 - F.cosine_similarity(tokens.float(), reconstruction.float(), dim=-1)
    return (1 - prototype_weight) * discrepancy + prototype_weight * (1 - nearest)
