"""DPDiff-AD's losses: feature DDPM, local-prototype VQ loss, entropic-OT regulariser."""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot
import torch
import torch.nn.functional as F
from torch import Tensor

from adbench.errors import ConfigError


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
    plan = ot.sinkhorn(
        np.full(b, 1.0 / b),
        np.full(k, 1.0 / k),
        cost,
        eps,
        method="sinkhorn_log",
        numItermax=max_iters,
        stopThr=1e-7,
        warn=False,
    )
    return torch.from_numpy(plan).to(device=similarity.device, dtype=similarity.dtype)


@torch.no_grad()
def sinkhorn_log_torch(similarity: Tensor, eps: float, max_iters: int, tol: float = 1e-7) -> Tensor:
    """The balanced entropic plan of `sinkhorn_plan` by the same log-domain iterations, in torch.

    It runs on the tensor's device (float64 on a CPU, float32 elsewhere).

    For the queue's problem ((B + Q) x K rows, thousands) POT's numpy iterations take
    milliseconds each; here one iteration is two log-sum-exps. The marginal error is checked
    every 10 iterations, as POT does.
    """
    dtype = torch.float64 if similarity.device.type == "cpu" else torch.float32
    log_kernel = (similarity.detach().to(dtype) - 1.0) / eps  # -C / eps
    n, k = log_kernel.shape
    log_a, log_b = -math.log(n), -math.log(k)
    f = torch.zeros(n, dtype=dtype, device=similarity.device)
    g = torch.zeros(k, dtype=dtype, device=similarity.device)
    for it in range(max_iters):
        f = log_a - torch.logsumexp(log_kernel + g[None], dim=1)
        g = log_b - torch.logsumexp(log_kernel + f[:, None], dim=0)
        if it % 10 == 9:
            rows = torch.logsumexp(log_kernel + f[:, None] + g[None], dim=1).exp()
            if float((rows - 1.0 / n).abs().sum()) < tol:
                break
    return (log_kernel + f[:, None] + g[None]).exp().to(similarity.dtype)


@torch.no_grad()
def ot_targets(
    similarity: Tensor,
    eps: float,
    max_iters: int,
    solver: str = "balanced",
    reg_m: float = 0.05,
    extra: Tensor | None = None,
) -> Tensor:
    """OT targets Q (B, K) of the first B rows of an assignment problem, rows summing to 1.

    The problem has the rows of ``similarity`` and of ``extra`` (e.g. a queue of recent
    descriptors; their targets are discarded), uniform row marginals, cost 1 - cos and entropic
    regularisation ``eps``. ``solver="balanced"``: uniform prototype marginals (POT's
    log-domain Sinkhorn, `sinkhorn_plan`; with ``extra`` rows the same iterations in torch,
    `sinkhorn_log_torch`). ``solver="unbalanced"``: semi-relaxed OT, the rows
    keep their mass and the prototype marginal is relaxed by ``reg_m`` KL(Q^T 1 || 1 / K)
    (POT's ``ot.unbalanced.sinkhorn_unbalanced``); as ``reg_m`` -> 0 each row becomes
    softmax(-C / eps), as ``reg_m`` -> inf the balanced plan.

    Args:
        similarity: cos(g_b, p_k), (B, K), the rows whose targets are returned.
        eps: entropic regularisation.
        max_iters: iteration cap.
        solver: "balanced" or "unbalanced".
        reg_m: KL weight of the relaxed prototype marginal ("unbalanced").
        extra: (E, K) further rows of the problem, or None.

    Returns:
        Q (B, K), no gradient, on the device and dtype of ``similarity``.
    """
    queue = extra is not None and extra.shape[0] > 0
    rows = torch.cat([similarity, extra]) if queue else similarity
    if solver == "balanced" and queue:
        plan = sinkhorn_log_torch(rows, eps, max_iters)
    elif solver == "balanced":
        plan = sinkhorn_plan(rows, eps, max_iters)
    elif solver == "unbalanced":
        cost = 1.0 - rows.detach().double().cpu().numpy()
        n, k = cost.shape
        with warnings.catch_warnings():  # POT warns when the iteration cap is reached
            warnings.simplefilter("ignore")
            plan = ot.unbalanced.sinkhorn_unbalanced(
                np.full(n, 1.0 / n),
                np.full(k, 1.0 / k),
                cost,
                eps,
                (float("inf"), reg_m),
                method="sinkhorn_stabilized",
                numItermax=max_iters,
                stopThr=1e-7,
            )
        plan = torch.from_numpy(plan).to(device=similarity.device, dtype=similarity.dtype)
    else:
        raise ConfigError(f"solver must be 'balanced' or 'unbalanced', got {solver!r}")
    q = plan[: similarity.shape[0]]
    return q / q.sum(-1, keepdim=True).clamp(min=1e-30)


def ot_cross_entropy(similarity: Tensor, plan: Tensor, temperature: float) -> Tensor:
    """L_OT = -mean_b sum_k Q_bk log softmax_k(cos(g_b, p_k) / tau_G).

    Q is the plan with rows normalised to 1 (B times the plan at convergence).

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
