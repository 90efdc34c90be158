"""DPDiff-AD losses against hand-written references: the diffusion and local prototype
losses, Sinkhorn plans, the OT targets and the OT losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adbench.methods.dpdiff_ad.config import GlobalPrototypeConfig
from adbench.methods.dpdiff_ad.loss import (
    diffusion_loss,
    local_prototype_loss,
    ot_cross_entropy,
    ot_sinkhorn_cost,
    ot_targets,
    sinkhorn_log_torch,
    sinkhorn_plan,
)
from adbench.methods.dpdiff_ad.prototypes import GlobalPrototypes


# -- losses against the paper's equations -------------------------------------------------------
def test_diffusion_loss_is_the_mean_squared_error():
    assert diffusion_loss(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)).item() == 2.5


def test_local_loss_is_the_mean_over_tokens_of_the_squared_distance():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (B=1, N=2, C=2)
    aggregate = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    loss = local_prototype_loss(tokens, aggregate)
    assert loss.item() == pytest.approx((1.0 + 1.0) / 2)  # ||(1,0)||^2 = 1, ||(0,1)||^2 = 1
    loss.backward()
    torch.testing.assert_close(aggregate.grad, torch.tensor([[[-1.0, 0.0], [0.0, -1.0]]]))


def test_local_loss_stops_the_gradient_at_the_features():
    tokens = torch.ones(1, 1, 2, requires_grad=True)
    local_prototype_loss(tokens, torch.zeros(1, 1, 2, requires_grad=True)).backward()
    assert tokens.grad is None


def test_sinkhorn_plan_of_a_symmetric_problem_is_the_gibbs_kernel():
    # cost 1 - cos = [[0, 1], [1, 0]]; by symmetry the scalings are constant, so the plan is
    # proportional to exp(-C / eps) with rows summing to 1/2.
    eps = 0.5
    plan = sinkhorn_plan(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), eps, max_iters=1000)
    near = 0.5 / (1 + math.exp(-1 / eps))
    far = 0.5 * math.exp(-1 / eps) / (1 + math.exp(-1 / eps))
    torch.testing.assert_close(plan, torch.tensor([[near, far], [far, near]]), atol=1e-6, rtol=0)


def _sinkhorn_reference(cost: np.ndarray, eps: float, iters: int = 5000) -> np.ndarray:
    """Plain Sinkhorn-Knopp scaling (Cuturi 2013) with uniform marginals."""
    b, k = cost.shape
    kernel = np.exp(-cost / eps)
    u, v = np.ones(b), np.ones(k)
    for _ in range(iters):
        u = (1 / b) / (kernel @ v)
        v = (1 / k) / (kernel.T @ u)
    return u[:, None] * kernel * v[None]


def test_sinkhorn_plan_matches_plain_scaling_and_has_uniform_marginals():
    g = torch.Generator().manual_seed(0)
    similarity = (
        F.normalize(torch.randn(3, 4, generator=g), dim=1)
        @ F.normalize(torch.randn(5, 4, generator=g), dim=1).T
    )
    plan = sinkhorn_plan(similarity, eps=0.2, max_iters=1000)
    expected = _sinkhorn_reference(1 - similarity.double().numpy(), 0.2)
    np.testing.assert_allclose(plan.double().numpy(), expected, atol=1e-6)
    torch.testing.assert_close(plan.sum(1), torch.full((3,), 1 / 3))
    torch.testing.assert_close(plan.sum(0), torch.full((5,), 1 / 5))


def test_torch_sinkhorn_matches_plain_scaling():
    g = torch.Generator().manual_seed(1)
    similarity = (
        F.normalize(torch.randn(6, 4, generator=g), dim=1)
        @ F.normalize(torch.randn(3, 4, generator=g), dim=1).T
    )
    plan = sinkhorn_log_torch(similarity.double(), eps=0.2, max_iters=1000)
    np.testing.assert_allclose(
        plan.numpy(), _sinkhorn_reference(1 - similarity.double().numpy(), 0.2), atol=1e-9
    )


# Well-separated descriptors: K_G = 64 orthogonal prototypes, a batch of B = 8 images (B / K_G
# = 1/8 as in the paper preset, 16 / 128), image b near prototype 8 b (cos ~ 0.9 to it, ~ 0 to
# the others), and a queue of 1024 descriptors spread evenly over the prototypes (16 each, as
# the paper preset's 2048 over 128).
def _separated(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.eye(64)

    def near(index: torch.Tensor) -> torch.Tensor:
        return F.normalize(
            prototypes[index] + 0.05 * torch.randn(len(index), 64, generator=g), dim=1
        )

    own = torch.arange(8) * 8
    return near(own) @ prototypes.T, near(torch.arange(1024) % 64) @ prototypes.T, own


def test_balanced_target_over_one_batch_is_capped_at_b_over_k():
    similarity, _, own = _separated()
    q = ot_targets(similarity, 0.05, 1000, "balanced")
    torch.testing.assert_close(q.sum(1), torch.ones(8))
    assert q.max() <= 8 / 64 + 1e-6  # the cap of issue 17: no image above B / K_G = 12.5 %
    assert q[torch.arange(8), own].min() > 0.12


@pytest.mark.parametrize("target", ["queue", "unbalanced"])
def test_queue_and_unbalanced_targets_put_an_image_on_its_own_prototype(target):
    similarity, queue, own = _separated()
    if target == "queue":
        q = ot_targets(similarity, 0.05, 1000, "balanced", extra=queue)
    else:
        q = ot_targets(similarity, 0.05, 1000, "unbalanced", reg_m=0.05)
    torch.testing.assert_close(q.sum(1), torch.ones(8))
    assert q[torch.arange(8), own].min() >= 0.9


def test_unbalanced_target_goes_from_the_softmax_towards_balanced_ot_as_reg_m_grows():
    similarity, _, own = _separated()
    similarity, own = similarity[:2], own[:2]  # 2 images, 64 prototypes: balanced caps at 1/32
    softmax = torch.softmax((similarity - 1) / 0.05, dim=1)
    torch.testing.assert_close(
        ot_targets(similarity, 0.05, 1000, "unbalanced", reg_m=1e-6), softmax, atol=1e-5, rtol=0
    )
    mass = [
        ot_targets(similarity, 0.05, 1000, "unbalanced", reg_m=reg_m)[range(2), own].min()
        for reg_m in (0.05, 0.5, 5.0)
    ]
    balanced = ot_targets(similarity, 0.05, 1000, "balanced")[range(2), own].max()
    assert mass[0] > mass[1] > mass[2] > balanced and balanced <= 1 / 32 + 1e-6


def test_descriptor_queue_is_a_ring_buffer():
    glob = GlobalPrototypes(2, GlobalPrototypeConfig(num=2, queue_size=4))
    assert glob.queued().shape == (0, 2)
    rows = torch.arange(12.0).reshape(6, 2)
    glob.enqueue(rows[:3])
    torch.testing.assert_close(glob.queued(), rows[:3])
    glob.enqueue(rows[3:])
    torch.testing.assert_close(glob.queued(), rows[2:])  # the 4 newest, oldest first
    glob.initialize(torch.eye(2), rows[:1])
    torch.testing.assert_close(glob.queued(), rows[:1])
    assert GlobalPrototypes(2, GlobalPrototypeConfig(ot_target="batch")).queued() is None


def test_ot_cross_entropy_by_hand():
    # Q = 2 * plan = identity; -log softmax([1, 0] / 1)[0] = log(1 + e^-1) for both rows.
    similarity = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plan = torch.tensor([[0.5, 0.0], [0.0, 0.5]])
    loss = ot_cross_entropy(similarity, plan, temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    # tau = 0.5 sharpens the softmax: log(1 + e^-2)
    assert ot_cross_entropy(similarity, plan, 0.5).item() == pytest.approx(
        math.log(1 + math.exp(-2))
    )


def test_ot_sinkhorn_cost_by_hand():
    similarity = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plan = torch.full((2, 2), 0.25)
    assert ot_sinkhorn_cost(similarity, plan).item() == pytest.approx(0.25 * (0 + 1 + 1 + 0))


def test_ot_losses_treat_the_plan_as_a_constant():
    similarity = torch.tensor([[0.3, 0.1]], requires_grad=True)
    plan = torch.tensor([[0.6, 0.4]], requires_grad=True)
    (ot_cross_entropy(similarity, plan, 0.1) + ot_sinkhorn_cost(similarity, plan)).backward()
    assert plan.grad is None and similarity.grad is not None
