"""DPDiff-AD's losses: feature DDPM, local-prototype VQ loss, entropic-OT regulariser."""

from __future__ import annotations

import numpy as np
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

    Uniform marginals (1/B, 1/K), cost 1 - cos, regularisation ``eps``. The B x K problem is
    tiny, so it is solved on the CPU in float64 (no per-iteration kernel launches on a GPU).
    Iterations stop when the marginals are met to 1e-7, or after ``max_iters``: batches of
    near-identical images converge slowly, and the plan is then used as it is (its marginal
    error is a fraction of a percent); the losses normalise its rows.

    Args:
        similarity: cos(g_b, p_k), (B, K).
        eps: entropic regularisation.
        max_iters: Sinkhorn iteration cap.

    Returns:
        the plan (B, K), no gradient; rows sum to about 1/B and columns to about 1/K.
    """
    cost = 1.0 - similarity.detach().double().cpu().numpy()
    b, k = cost.shape
    plan = ot.sinkhorn(np.full(b, 1.0 / b), np.full(k, 1.0 / k), cost, eps,
                       method="sinkhorn_log", numItermax=max_iters, stopThr=1e-7, warn=False)
    return torch.from_numpy(plan).to(device=similarity.device, dtype=similarity.dtype)


def ot_cross_entropy(similarity: Tensor, plan: Tensor, temperature: float) -> Tensor:
    """L_OT = -mean_b sum_k Q_bk log softmax_k(cos(g_b, p_k) / tau_G), Q = the plan with rows
    normalised to 1 (B times the plan at convergence).

    Args:
        similarity: cos(g_b, p_k), (B, K).
        plan: Sinkhorn plan (B, K), no gradient.
        temperature: tau_G.
    """
    q = plan.detach() / plan.detach().sum(-1, keepdim=True)
    return -(q * torch.log_softmax(similarity / temperature, dim=-1)).sum(-1).mean()


def ot_sinkhorn_cost(similarity: Tensor, plan: Tensor) -> Tensor:
    """L_OT = <Q, C> = sum_bk plan_bk (1 - cos(g_b, p_k)) with the plan held fixed.

    With the plan fixed at the Sinkhorn optimum this has the gradient of the entropic OT value
    with respect to the cost (envelope theorem).
    """
    return (plan.detach() * (1.0 - similarity)).sum()
