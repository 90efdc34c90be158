"""DPDiff-AD's losses: feature DDPM, local-prototype VQ loss, entropic-OT regulariser."""

from __future__ import annotations

import ot
import torch
import torch.nn.functional as F
from torch import Tensor


def diffusion_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """L_diff = mean squared error between the denoiser output and its target (eps or x0)."""
    return F.mse_loss(prediction.float(), target.float())


def local_prototype_loss(tokens: Tensor, aggregate: Tensor) -> Tensor:
    """L_loc = mean_i ||sg(f_i) - l_i||^2 over tokens (B, N, C) and their aggregates (B, N, C)."""
    return (tokens.detach().float() - aggregate.float()).pow(2).sum(-1).mean()


@torch.no_grad()
def sinkhorn_plan(similarity: Tensor, eps: float, max_iters: int) -> Tensor:
    """Balanced entropic OT plan between B descriptors and K prototypes (POT, log domain).

    Uniform marginals (1/B, 1/K), cost 1 - cos, regularisation ``eps``; computed in float64
    (the B x K problem is tiny) and returned without gradient.

    Args:
        similarity: cos(g_b, p_k), (B, K).
        eps: entropic regularisation.
        max_iters: Sinkhorn iteration cap.

    Returns:
        the plan (B, K); its rows sum to 1/B and its columns to 1/K.
    """
    cost = 1.0 - similarity.detach().double()
    b, k = cost.shape
    rows = torch.full((b,), 1.0 / b, dtype=cost.dtype, device=cost.device)
    cols = torch.full((k,), 1.0 / k, dtype=cost.dtype, device=cost.device)
    plan = ot.sinkhorn(rows, cols, cost, eps, method="sinkhorn_log", numItermax=max_iters)
    return plan.to(similarity.dtype)


def ot_cross_entropy(similarity: Tensor, plan: Tensor, temperature: float) -> Tensor:
    """L_OT = -mean_b sum_k Q_bk log softmax_k(cos(g_b, p_k) / tau_G), Q = B * plan (rows sum 1).

    Args:
        similarity: cos(g_b, p_k), (B, K).
        plan: Sinkhorn plan (B, K), no gradient.
        temperature: tau_G.
    """
    q = plan.detach() * plan.shape[0]
    return -(q * torch.log_softmax(similarity / temperature, dim=-1)).sum(-1).mean()


def ot_sinkhorn_cost(similarity: Tensor, plan: Tensor) -> Tensor:
    """L_OT = <Q, C> = sum_bk plan_bk (1 - cos(g_b, p_k)) with the plan held fixed.

    With the plan fixed at the Sinkhorn optimum this has the gradient of the entropic OT value
    with respect to the cost (envelope theorem).
    """
    return (plan.detach() * (1.0 - similarity)).sum()
