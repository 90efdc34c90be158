"""DPDiff-AD: losses and scoring against hand-written references, module shapes, every config
option, the paper preset offline and learning on the built-in synthetic dataset."""

from __future__ import annotations

import dataclasses
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures.learning import FixedBatchLoss, synthetic_task

import adbench
from adbench.batch import Batch, Sample
from adbench.config import from_dict
from adbench.errors import ConfigError, WeightsNotFoundError
from adbench.methods.dpdiff_ad import DPDiffAD, DPDiffADConfig
from adbench.methods.dpdiff_ad.config import (
    DenoiserConfig,
    GlobalPrototypeConfig,
    LocalPrototypeConfig,
)
from adbench.methods.dpdiff_ad.denoiser import PrototypeCrossAttention, PrototypeDenoiser
from adbench.methods.dpdiff_ad.loss import (
    diffusion_loss,
    local_prototype_loss,
    ot_cross_entropy,
    ot_sinkhorn_cost,
    ot_targets,
    sinkhorn_log_torch,
    sinkhorn_plan,
)
from adbench.methods.dpdiff_ad.module import stratified_indices
from adbench.methods.dpdiff_ad.prototypes import (
    GlobalPrototypes,
    LocalPrototypes,
    spherical_kmeans,
)
from adbench.methods.dpdiff_ad.scoring import anomaly_scores
from adbench.registry import resolve_config

SIZE = 32  # images of the option tests: 4 x 4 tokens on the tiny preset's stride-8 grid


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
    torch.testing.assert_close(plan, torch.tensor([[near, far], [far, near]]), atol=1e-6,
                               rtol=0)


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
    similarity = F.normalize(torch.randn(3, 4, generator=g), dim=1) @ F.normalize(
        torch.randn(5, 4, generator=g), dim=1).T
    plan = sinkhorn_plan(similarity, eps=0.2, max_iters=1000)
    expected = _sinkhorn_reference(1 - similarity.double().numpy(), 0.2)
    np.testing.assert_allclose(plan.double().numpy(), expected, atol=1e-6)
    torch.testing.assert_close(plan.sum(1), torch.full((3,), 1 / 3))
    torch.testing.assert_close(plan.sum(0), torch.full((5,), 1 / 5))


def test_torch_sinkhorn_matches_plain_scaling():
    g = torch.Generator().manual_seed(1)
    similarity = F.normalize(torch.randn(6, 4, generator=g), dim=1) @ F.normalize(
        torch.randn(3, 4, generator=g), dim=1).T
    plan = sinkhorn_log_torch(similarity.double(), eps=0.2, max_iters=1000)
    np.testing.assert_allclose(plan.numpy(), _sinkhorn_reference(1 - similarity.double().numpy(),
                                                                 0.2), atol=1e-9)


# Well-separated descriptors: K_G = 64 orthogonal prototypes, a batch of B = 8 images (B / K_G
# = 1/8 as in the paper preset, 16 / 128), image b near prototype 8 b (cos ~ 0.9 to it, ~ 0 to
# the others), and a queue of 1024 descriptors spread evenly over the prototypes (16 each, as
# the paper preset's 2048 over 128).
def _separated(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.eye(64)

    def near(index: torch.Tensor) -> torch.Tensor:
        return F.normalize(prototypes[index] + 0.05 * torch.randn(len(index), 64, generator=g),
                           dim=1)

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
    torch.testing.assert_close(ot_targets(similarity, 0.05, 1000, "unbalanced", reg_m=1e-6),
                               softmax, atol=1e-5, rtol=0)
    mass = [ot_targets(similarity, 0.05, 1000, "unbalanced", reg_m=reg_m)[range(2), own].min()
            for reg_m in (0.05, 0.5, 5.0)]
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
        math.log(1 + math.exp(-2)))


def test_ot_sinkhorn_cost_by_hand():
    similarity = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    plan = torch.full((2, 2), 0.25)
    assert ot_sinkhorn_cost(similarity, plan).item() == pytest.approx(0.25 * (0 + 1 + 1 + 0))


def test_ot_losses_treat_the_plan_as_a_constant():
    similarity = torch.tensor([[0.3, 0.1]], requires_grad=True)
    plan = torch.tensor([[0.6, 0.4]], requires_grad=True)
    (ot_cross_entropy(similarity, plan, 0.1) + ot_sinkhorn_cost(similarity, plan)).backward()
    assert plan.grad is None and similarity.grad is not None


# -- scoring ------------------------------------------------------------------------------------
def test_anomaly_score_fuses_reconstruction_and_prototype_distance():
    tokens = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    recon = torch.tensor([[[0.0, 2.0], [2.0, 2.0]]])  # cos 0 and cos 1
    nearest = torch.tensor([[0.8, 0.4]])
    scores = anomaly_scores(tokens, recon, nearest, prototype_weight=0.5)
    torch.testing.assert_close(scores, torch.tensor([[0.5 * 1 + 0.5 * 0.2, 0.5 * 0 + 0.5 * 0.6]]))
    torch.testing.assert_close(anomaly_scores(tokens, recon, nearest, 0.0),
                               torch.tensor([[1.0, 0.0]]))


def test_local_aggregation_by_hand():
    bank = LocalPrototypes(2, LocalPrototypeConfig(num=3, topk=2, temperature=0.5))
    with torch.no_grad():
        bank.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    match = bank(torch.tensor([[[2.0, 0.0], [1.0, 1.0]]]))
    # token (2, 0): cos = (1, 0, -1); top-2 = p0, p1 with softmax((1, 0) / 0.5) weights
    w0 = math.exp(2) / (math.exp(2) + 1)
    torch.testing.assert_close(match.aggregate[0, 0], torch.tensor([w0, 1 - w0]))
    # token (1, 1): cos = (0.707, 0.707, -0.707); equal weights on p0 and p1
    torch.testing.assert_close(match.aggregate[0, 1], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(match.nearest, torch.tensor([[1.0, 1 / math.sqrt(2)]]))
    assert match.index[0, 0].tolist() == [0, 1]


def test_forward_score_is_the_mean_of_the_top_one_percent_of_the_map():
    method = build()
    out = forward(method, images(2, seed=3))
    flat = out.anomaly_map.flatten(1)
    k = max(1, round(0.01 * flat.shape[1]))
    torch.testing.assert_close(out.score, flat.topk(k, dim=1).values.mean(1))


# -- prototype banks ------------------------------------------------------------------------------
def test_spherical_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    points = torch.cat([c + 0.1 * torch.randn(20, 3, generator=g) for c in centres])
    found, counts = spherical_kmeans(points, 3, iters=10, generator=g)
    order = found.argmax(1).argsort()
    torch.testing.assert_close(found[order], centres, atol=0.1, rtol=0)
    assert counts.tolist() == [20.0, 20.0, 20.0]


def test_spherical_kmeans_with_fewer_points_than_centres_gives_distinct_centres():
    found, counts = spherical_kmeans(torch.randn(3, 4), 5, iters=3)
    assert found.shape == (5, 4) and counts.sum() == 3
    assert torch.cdist(found, found).add(torch.eye(5)).min() > 0


def test_ema_update_is_exponential_averaging_of_cluster_means():
    bank = LocalPrototypes(2, LocalPrototypeConfig(num=2, topk=1, update="ema", momentum=0.5))
    bank.initialize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1.0, 1.0]))
    tokens = torch.tensor([[[3.0, 0.0], [5.0, 0.0], [0.0, 1.0]]])
    bank.ema_update(tokens, torch.tensor([[0, 0, 1]]))
    # counts: 0.5 * 1 + 0.5 * 2 = 1.5 and 0.5 * 1 + 0.5 * 1 = 1; sums: 0.5 * (1, 0) + 0.5 * (8, 0)
    torch.testing.assert_close(bank.ema_count, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(bank.weight.data, torch.tensor([[4.5 / 1.5, 0.0], [0.0, 1.0]]),
                               atol=1e-4, rtol=0)
    assert not bank.weight.requires_grad


def test_usage_tracking_and_dead_prototype_reseeding():
    bank = LocalPrototypes(2, LocalPrototypeConfig(num=4, topk=1, momentum=0.5,
                                                   reseed_threshold=0.6))
    bank.initialize(torch.eye(4, 2), torch.tensor([1.0, 1.0, 1.0, 1.0]))
    bank.track_usage(torch.tensor([[0, 0, 1, 1]]))
    torch.testing.assert_close(bank.usage, torch.tensor([0.375, 0.375, 0.125, 0.125]))
    tokens = torch.tensor([[[7.0, 7.0], [8.0, 8.0]]])
    before = bank.weight.detach().clone()
    assert bank.reseed(tokens) == 2  # usage 0.125 < 0.6 / 4 < 0.375
    assert torch.equal(bank.weight[:2], before[:2])
    for row in bank.weight[2:]:
        assert any(torch.equal(row, t) for t in tokens[0])
    torch.testing.assert_close(bank.usage[2:], torch.full((2,), 0.25))


def test_global_descriptor_is_the_normalised_token_mean():
    tokens = torch.tensor([[[1.0, 0.0], [3.0, 4.0]]])
    torch.testing.assert_close(GlobalPrototypes.descriptor(tokens),
                               F.normalize(torch.tensor([[2.0, 2.0]]), dim=1))


# -- denoiser -------------------------------------------------------------------------------------
def test_cross_attention_equals_masked_full_attention():
    torch.manual_seed(0)
    attention = PrototypeCrossAttention(width=8, heads=2)
    x, local, glob = torch.randn(2, 3, 8), torch.randn(2, 3, 2, 8), torch.randn(4, 8)
    out = attention(x, local, glob)
    # reference: every token attends over all 3 * 2 local keys and 4 global keys, with a mask
    # that hides the other tokens' local keys
    keys = torch.cat([local.flatten(1, 2), glob.expand(2, 4, 8)], dim=1)  # (B, 10, D)
    k, v = attention.kv(keys).chunk(2, dim=-1)
    q = attention.q(x)
    split = lambda t: t.unflatten(-1, (2, 4)).transpose(1, 2)  # noqa: E731 (B, h, n, d)
    own = torch.zeros(3, 10, dtype=torch.bool)
    for i in range(3):
        own[i, 2 * i: 2 * i + 2] = True
    own[:, 6:] = True
    ref = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=own)
    torch.testing.assert_close(out, attention.out(ref.transpose(1, 2).flatten(2)))


@pytest.mark.parametrize("kept", ["local", "global"])
def test_cross_attention_with_one_prototype_set_attends_over_its_keys_only(kept):
    torch.manual_seed(0)
    attention = PrototypeCrossAttention(width=8, heads=2)
    x, local, glob = torch.randn(2, 3, 8), torch.randn(2, 3, 2, 8), torch.randn(4, 8)
    out = attention(x, local if kept == "local" else None, glob if kept == "global" else None)
    q = attention.q(x).unflatten(-1, (2, 4))  # (B, N, h, d)
    if kept == "local":  # token i attends over its own 2 local keys
        k, v = attention.kv(local).unflatten(-1, (2, 2, 4)).unbind(-3)  # (B, N, L, h, d)
        attn = torch.softmax(torch.einsum("bnhd,bnlhd->bnhl", q, k) / 2, dim=-1)
        ref = torch.einsum("bnhl,bnlhd->bnhd", attn, v)
    else:  # every token attends over the 4 global keys
        k, v = attention.kv(glob).unflatten(-1, (2, 2, 4)).unbind(-3)  # (G, h, d)
        attn = torch.softmax(torch.einsum("bnhd,ghd->bnhg", q, k) / 2, dim=-1)
        ref = torch.einsum("bnhg,ghd->bnhd", attn, v)
    torch.testing.assert_close(out, attention.out(ref.flatten(2)))


def test_denoiser_shapes_and_zero_initialised_output():
    denoiser = PrototypeDenoiser(6, DenoiserConfig(width=16, depth=2, heads=4))
    args = (torch.randn(2, 12, 6), torch.tensor([3, 900]), (3, 4), torch.randn(2, 12, 1, 6),
            torch.randn(5, 6))
    out = denoiser(*args)
    assert out.shape == (2, 12, 6) and torch.equal(out, torch.zeros_like(out))  # adaLN-Zero
    torch.nn.init.normal_(denoiser.head.weight)
    assert denoiser(*args).abs().sum() > 0


# -- helpers for the method-level tests ----------------------------------------------------------
def tiny_config(**overrides) -> DPDiffADConfig:
    """The tiny preset at 32 px with K_L = 64 (k-means then has more tokens than prototypes)."""
    return resolve_config("dpdiff_ad", "tiny", {"data.image_size": SIZE,
                                               "local_prototypes.num": 64, **overrides})


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def build(**overrides) -> DPDiffAD:
    """A tiny method with initialised banks and random (non-zero) denoiser weights."""
    torch.manual_seed(0)
    method = DPDiffAD(tiny_config(**overrides))
    model = method.model
    model.initialize(*model.initialization_sample(images(8), 10_000), torch.Generator())
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.denoiser.parameters():
            param.normal_(0, 0.05)
    model.ema_denoiser.load_state_dict(model.denoiser.state_dict())
    return method


def forward(method: DPDiffAD, x: torch.Tensor):
    method.eval()
    with torch.no_grad():
        return method(x)


def losses(method: DPDiffAD, x: torch.Tensor):
    return method.model.training_losses(x, torch.Generator().manual_seed(0))


# -- shapes -------------------------------------------------------------------------------------
def test_token_grid_shapes_of_the_tiny_preset():
    method = build()
    tokens, grid = method.model.extractor(images(2))
    assert grid == (4, 4) and tokens.shape == (2, 16, 24 + 40 + 112)
    match = method.model.local(tokens)
    assert match.aggregate.shape == tokens.shape and match.index.shape == (2, 16, 4)
    local, glob = method.model.conditions(match)
    assert local.shape == (2, 16, 1, 176) and glob.shape == (8, 176)
    out = forward(method, images(2))
    assert out.anomaly_map.shape == (2, 1, SIZE, SIZE) and out.score.shape == (2,)


def test_scores_do_not_depend_on_batching():
    method = build()
    x = images(8, seed=9)
    results = {}
    for size in (1, 3, 8):
        outs = [forward(method, chunk) for chunk in x.split(size)]
        results[size] = (torch.cat([o.score for o in outs]),
                         torch.cat([o.anomaly_map for o in outs]))
    for size in (1, 3):
        torch.testing.assert_close(results[size][0], results[8][0])
        torch.testing.assert_close(results[size][1], results[8][1])


# -- ablations ------------------------------------------------------------------------------------
NO_GLOBAL = {"denoiser.conditions": ["local"], "loss.ot": 0.0}
NO_LOCAL = {"denoiser.conditions": ["global"], "loss.local": 0.0,
            "inference.prototype_weight": 0.0}


@pytest.mark.parametrize(("overrides", "dropped"), [(NO_GLOBAL, "global"), (NO_LOCAL, "local")])
def test_ablated_prototype_set_is_no_condition_and_its_bank_gets_no_gradient(overrides, dropped):
    method = build(**overrides)
    model = method.model
    local, glob = model.conditions(model.local(model.tokens(images(2))[0]))
    assert (local is None, glob is None) == (dropped == "local", dropped == "global")
    bank = model.local if dropped == "local" else model.glob
    assert not bank.weight.requires_grad
    assert all(p is not bank.weight for g in method.parameter_groups() for p in g["params"])
    out = losses(method, images(4))
    out.total.backward()
    assert out.diffusion > 0 and model.denoiser.embed.weight.grad.abs().sum() > 0
    # the denoiser's output depends on the condition set that is kept
    kept = model.glob if dropped == "local" else model.local
    before = forward(method, images(2, seed=3)).score
    with torch.no_grad():
        kept.weight.copy_(torch.randn_like(kept.weight))
    assert not torch.allclose(forward(method, images(2, seed=3)).score, before)


def test_without_the_ot_term_no_sinkhorn_runs_and_the_global_bank_keeps_its_start(monkeypatch):
    method = build(**{"loss.ot": 0.0})
    model = method.model
    called = []
    monkeypatch.setattr(model, "ot_targets", lambda *a: called.append(a))
    out = losses(method, images(4))
    assert not called and out.ot == 0 and not model.glob.weight.requires_grad
    # the global prototypes still condition the denoiser
    assert model.conditions(model.local(model.tokens(images(2))[0]))[1] is not None


def test_prototype_distance_only_scoring_skips_the_reconstruction(monkeypatch):
    method = build(**{"inference.prototype_weight": 1.0})
    model = method.model
    monkeypatch.setattr(model, "reconstruct", lambda *a, **k: pytest.fail("reconstructed"))
    x = images(2, seed=4)
    raw = model.anomaly_map(x)
    tokens, (h, w) = model.tokens(x)
    torch.testing.assert_close(raw, (1 - model.local(tokens).nearest).view(2, 1, h, w))


def test_initialisation_sets_statistics_and_banks_from_training_tokens():
    method = build()
    model = method.model
    raw, _ = model.extractor.raw(images(8))
    flat = raw.flatten(0, 1)
    torch.testing.assert_close(model.extractor.mean, flat.mean(0))
    normalised, _ = model.extractor(images(8))
    assert normalised.flatten(0, 1).std(0).mean().item() == pytest.approx(1.0, abs=1e-3)
    assert bool(model.initialized) and model.local.usage.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(model.glob.weight.norm(dim=1), torch.ones(8))


def test_initialisation_kmeans_runs_on_rank_zero_only(monkeypatch):
    import adbench.methods.dpdiff_ad.model as model_module

    single = build().model
    rank_zero = []
    monkeypatch.setattr(model_module, "_is_rank_zero", lambda: True)
    monkeypatch.setattr(model_module, "broadcast", lambda t: rank_zero.append(t) or t)
    same = build().model  # the single-process path, explicitly as rank 0
    for name, tensor in single.state_dict().items():
        torch.testing.assert_close(same.state_dict()[name], tensor, msg=name)

    def refuse(*args, **kwargs):
        raise AssertionError("spherical_kmeans called on a non-zero rank")

    received = []
    monkeypatch.setattr(model_module, "_is_rank_zero", lambda: False)
    monkeypatch.setattr(model_module, "spherical_kmeans", refuse)
    monkeypatch.setattr(model_module, "broadcast", lambda t: received.append(t) or t)
    other = build().model  # would raise if it ran k-means
    assert [t.shape for t in received] == [t.shape for t in rank_zero]
    assert other.local.weight.shape == single.local.weight.shape
    assert other.glob.weight.shape == single.glob.weight.shape


def test_training_never_reads_category_labels():
    method = build()
    x = images(4)
    batch = Batch(x, torch.zeros(4, 1, SIZE, SIZE), torch.zeros(4, dtype=torch.long),
                  torch.tensor([0, 1, 2, 3]), torch.arange(4))
    relabelled = dataclasses.replace(batch, category=torch.tensor([3, 3, 0, 1]))
    method.log = lambda *args, **kwargs: None
    torch.manual_seed(5)
    first = method.training_step(batch, 0)
    torch.manual_seed(5)
    assert method.training_step(relabelled, 0).item() == first.item()


def test_reconstruction_with_an_oracle_denoiser_returns_the_clean_tokens():
    for prediction in ("eps", "x0"):
        for sampler in ("ddim", "one_step"):
            method = build(**{"denoiser.prediction": prediction, "inference.sampler": sampler})
            model = method.model
            tokens = torch.randn(2, 16, 176)
            seen = []

            def oracle(x, t, grid, local, glob, clean=tokens, kind=prediction, seen=seen,
                       schedule=model.schedule):
                seen.append(t[0].item())
                return clean if kind == "x0" else schedule.predict_eps(x, clean, t)

            model.ema_denoiser.forward = oracle
            local, glob = torch.zeros(2, 16, 1, 176), torch.zeros(8, 176)
            recon = model.reconstruct(tokens, (4, 4), local, glob, torch.randn(tokens.shape))
            torch.testing.assert_close(recon, tokens, atol=1e-4, rtol=1e-4)
            assert seen == ([200, 150, 100, 50, 0] if sampler == "ddim" else [200])


def test_denoiser_ema_follows_the_trained_weights():
    method = build(**{"denoiser.ema_decay": 0.5})
    model = method.model
    with torch.no_grad():
        model.ema_denoiser.head.bias.fill_(0.0)
        model.denoiser.head.bias.fill_(1.0)
    model.update_ema(step=1000)  # warm-up bound (1001 / 1010) is above the decay 0.5
    torch.testing.assert_close(model.ema_denoiser.head.bias,
                               torch.full_like(model.ema_denoiser.head.bias, 0.5))
    assert not any(p.requires_grad for p in model.ema_denoiser.parameters())


# -- every option changes the computation -------------------------------------------------------
MAP_OPTIONS = [
    ("features.norm", "layernorm"),
    ("local_prototypes.num", 32),
    ("local_prototypes.topk", 2),
    ("local_prototypes.temperature", 1.0),
    ("local_prototypes.keys", "topk"),
    ("global_prototypes.num", 4),
    ("init.kmeans_iters", 0),
    ("denoiser.width", 64),
    ("denoiser.depth", 1),
    ("denoiser.heads", 2),
    ("denoiser.mlp_ratio", 2.0),
    ("denoiser.prediction", "eps"),
    ("inference.t_start", 400),
    ("inference.steps", 2),
    ("inference.sampler", "one_step"),
    ("inference.prototype_weight", 0.0),
    ("inference.seed", 1),
    ("schedule.beta_end", 0.03),
    ("schedule.beta_start", 1e-3),
    ("schedule.beta_schedule", "scaled_linear"),
    ("schedule.num_train_timesteps", 500),
    ("scoring.sigma", 0.0),
    ("backbone.layers", [1, 2]),
]


@pytest.fixture(scope="module")
def reference_map():
    return forward(build(), images(2, seed=3)).anomaly_map


@pytest.mark.parametrize(("key", "value"), MAP_OPTIONS)
def test_option_changes_the_anomaly_map(key, value, reference_map):
    changed = forward(build(**{key: value}), images(2, seed=3)).anomaly_map
    assert changed.shape == reference_map.shape
    assert not torch.allclose(changed, reference_map, atol=1e-6)


@pytest.mark.parametrize(("key", "value"), [("scoring.pooling", "max"),
                                            ("scoring.topk_fraction", 0.5)])
def test_pooling_options_change_the_image_score(key, value):
    x = images(2, seed=3)
    reference, changed = forward(build(), x), forward(build(**{key: value}), x)
    torch.testing.assert_close(changed.anomaly_map, reference.anomaly_map)
    assert not torch.allclose(changed.score, reference.score, atol=1e-6)


def test_grid_level_and_fusion_change_the_token_grid():
    coarse = build(**{"features.grid_level": 2}).model.extractor(images(1))
    assert coarse[1] == (2, 2)
    vit = {"backbone": {"name": "vit_tiny_patch16_224", "layers": [1, 2], "weights": "none",
                        "timm_kwargs": {"img_size": SIZE}}}
    assert DPDiffAD(tiny_config(**vit, **{"features.fusion": "mean"})).model.extractor.channels \
        == 192
    assert DPDiffAD(tiny_config(**vit)).model.extractor.channels == 384  # concat
    equal_widths = re.escape("features.fusion='mean' needs levels of equal width")
    with pytest.raises(ConfigError, match=equal_widths):
        DPDiffAD(tiny_config(**{"features.fusion": "mean"}))


LOSS_OPTIONS = [
    ("global_prototypes.temperature", 0.5, "ot"),
    ("global_prototypes.sinkhorn_eps", 0.5, "ot"),
    ("global_prototypes.sinkhorn_iters", 1, "ot"),
    ("global_prototypes.ot_loss", "sinkhorn_cost", "ot"),
    ("denoiser.prediction", "eps", "diffusion"),
    ("loss.local", 0.5, "total"),
    ("loss.ot", 1.0, "total"),
]


@pytest.mark.parametrize(("key", "value", "term"), LOSS_OPTIONS)
def test_option_changes_the_training_loss(key, value, term):
    x = torch.cat([images(4, seed=5), 0.2 * images(4, seed=6)])
    reference = getattr(losses(build(), x), term)
    changed = getattr(losses(build(**{key: value}), x), term)
    assert not torch.isclose(changed, reference, rtol=1e-5, atol=0)


def test_ot_target_options_change_the_target_of_a_batch():
    base = {"global_prototypes.sinkhorn_eps": 0.5}
    x = torch.cat([images(4, seed=5), 0.2 * images(4, seed=6)])
    targets = {}
    for name, extra in [("queue", {}), ("short_queue", {"global_prototypes.queue_size": 2}),
                        ("batch", {"global_prototypes.ot_target": "batch"}),
                        ("unbalanced", {"global_prototypes.ot_target": "unbalanced"})]:
        model = build(**base, **extra).model
        descriptors = model.glob.descriptor(model.extractor(x)[0])
        targets[name] = model.ot_targets(descriptors)
        if name == "queue":  # the batch plus the 8 descriptors of the initialisation images
            queue = model.glob.queued()
            assert queue.shape == (8, 176)
            w = model.ot_projection()
            expected = ot_targets(model.glob.similarity(descriptors, w), 0.5, 1000,
                                  extra=model.glob.similarity(queue, w))
            torch.testing.assert_close(targets[name], expected)
    names = list(targets)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not torch.allclose(targets[first], targets[second], atol=1e-4), (first, second)


def test_local_update_vq_trains_by_gradient_and_ema_by_statistics():
    x = images(4)
    vq = build()
    losses(vq, x).total.backward()
    assert vq.model.local.weight.grad.abs().sum() > 0
    assert not hasattr(vq.model.local, "ema_sum") and not hasattr(vq.model.local, "ema_count")
    assert not any("ema_" in key for key in vq.model.local.state_dict())
    ema = build(**{"local_prototypes.update": "ema", "loss.local": 0.0})
    assert {"ema_sum", "ema_count"} <= set(ema.model.local.state_dict())
    assert not ema.model.local.weight.requires_grad
    out = losses(ema, x)
    before = ema.model.local.weight.detach().clone()
    ema.model.local.ema_update(out.tokens, out.nearest_index)
    assert not torch.equal(before, ema.model.local.weight)
    groups = ema.parameter_groups()
    assert all(p is not ema.model.local.weight for p in groups[1]["params"])


def test_momentum_and_reseed_threshold_change_the_bank_statistics():
    index = torch.zeros(1, 16, dtype=torch.long)
    usage = []
    for momentum in (0.9, 0.5):
        bank = build(**{"local_prototypes.momentum": momentum}).model.local
        bank.track_usage(index)
        usage.append(bank.usage.clone())
    assert not torch.allclose(*usage)
    tokens = torch.randn(1, 16, 176)
    counts = []
    for threshold in (0.1, 1.0):
        bank = build(**{"local_prototypes.reseed_threshold": threshold}).model.local
        bank.usage.fill_(0.5 / bank.config.num)  # every prototype at half the uniform share
        counts.append(bank.reseed(tokens))
    assert counts == [0, 64]


def test_detach_conditions_controls_the_gradient_from_the_denoiser_to_the_banks():
    weights = {"loss.local": 0.0, "loss.ot": 0.0}
    grads = []
    for detach in (True, False):
        method = build(**weights, **{"denoiser.detach_conditions": detach})
        losses(method, images(4)).total.backward()
        grad = method.model.glob.weight.grad
        grads.append(0.0 if grad is None else grad.abs().sum().item())
    assert grads[0] == 0.0 and grads[1] > 0


def test_ot_loss_trains_the_denoiser_condition_embedding():
    x = torch.cat([images(4, seed=5), 0.2 * images(4, seed=6)])
    method = build()  # ot_acts_on = "denoiser"
    model = method.model
    weight = model.denoiser.condition.weight
    # the OT cosines are taken after the condition embedding W: cos(W g, W p)
    descriptors = model.glob.descriptor(model.tokens(x)[0])
    projected = F.normalize(descriptors @ weight.T, dim=1)
    prototypes = F.normalize(F.normalize(model.glob.weight, dim=1) @ weight.T, dim=1)
    torch.testing.assert_close(model.glob.similarity(descriptors, weight),
                               projected @ prototypes.T)
    losses(method, x).ot.backward()
    assert weight.grad.abs().sum() > 0 and model.glob.weight.grad.abs().sum() > 0
    assert all(p.grad is None for name, p in model.denoiser.named_parameters()
               if not name.startswith("condition."))
    # today's behaviour as an option: L_OT moves the global prototypes only
    legacy = build(**{"global_prototypes.ot_acts_on": "prototypes"})
    assert legacy.model.adapter is None and legacy.model.ot_projection() is None
    losses(legacy, x).ot.backward()
    assert legacy.model.glob.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in legacy.model.denoiser.parameters())


def test_ot_loss_trains_the_feature_adapter_and_only_the_ot_loss_does():
    x = torch.cat([images(4, seed=5), 0.2 * images(4, seed=6)])
    method = build(**{"global_prototypes.ot_acts_on": "adapter"})
    adapter = method.model.adapter.linear
    assert torch.equal(adapter.weight, torch.zeros_like(adapter.weight))  # starts as identity
    out = losses(method, x)
    (out.diffusion + out.local).backward()
    assert adapter.weight.grad is None or not adapter.weight.grad.any()
    out.ot.backward()
    assert adapter.weight.grad.abs().sum() > 0 and adapter.bias.grad.abs().sum() > 0
    assert method.model.glob.weight.grad.abs().sum() > 0


def test_the_reconstruction_and_the_scores_use_the_adapted_tokens():
    method = build(**{"global_prototypes.ot_acts_on": "adapter"})
    x = images(2, seed=3)
    before = forward(method, x).anomaly_map
    with torch.no_grad():
        method.model.adapter.linear.bias.normal_(0, 0.5)
    raw, _ = method.model.extractor(x)
    adapted, _ = method.model.tokens(x)
    torch.testing.assert_close(adapted, raw + method.model.adapter.linear.bias)
    assert not torch.allclose(forward(method, x).anomaly_map, before, atol=1e-6)


def test_learning_rates_per_parameter_group():
    method = build(prototype_lr=0.05)
    denoiser, prototypes = method.parameter_groups()
    assert "lr" not in denoiser  # the optimiser's lr (optim.lr)
    adapted = build(**{"global_prototypes.ot_acts_on": "adapter"})
    adapter = adapted.parameter_groups()[2]
    assert "lr" not in adapter and {id(p) for p in adapter["params"]} == {
        id(p) for p in adapted.model.adapter.parameters()}
    assert prototypes["lr"] == 0.05 and prototypes["weight_decay"] == 0.0
    assert {id(p) for p in prototypes["params"]} == {id(method.model.local.weight),
                                                     id(method.model.glob.weight)}


class _Loader:
    """An iterable of batches that counts how many were drawn."""

    def __init__(self, n: int) -> None:
        self.batches = [Batch(images(2, seed=i), torch.zeros(2, 1, SIZE, SIZE),
                              torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                              torch.arange(2)) for i in range(n)]
        self.drawn = 0

    def __iter__(self):
        for batch in self.batches:
            self.drawn += 1
            yield batch


def test_init_batches_and_reseed_every_act_in_the_training_hooks():
    method = DPDiffAD(tiny_config(**{"init.batches": 2, "init.max_tokens": 40,
                                     "local_prototypes.reseed_every": 3,
                                     "local_prototypes.reseed_threshold": 1.0}))
    loader = _Loader(5)
    method.trainer = SimpleNamespace(train_dataloader=loader, global_step=0)
    method.log = lambda *args, **kwargs: None
    initialize = method.model.initialize
    seen = {}

    def spy(tokens, summaries, generator=None):
        seen.update(tokens=tokens.shape[0], images=summaries.shape[0])
        initialize(tokens, summaries, generator)

    method.model.initialize = spy
    method.on_train_start()
    assert loader.drawn == 2 and bool(method.model.initialized)
    assert seen == {"tokens": 40, "images": 4}  # 20 of the 2 x 16 tokens of each batch
    tokens = torch.randn(1, 16, 176)
    reseeded = []
    for step in (1, 2, 3):
        method.trainer.global_step = step
        before = method.model.local.weight.detach().clone()
        method._pending = (tokens, torch.zeros(1, 16, dtype=torch.long), torch.zeros(0, 176))
        method.on_train_batch_end(None, loader.batches[0], 0)
        reseeded.append(not torch.equal(before, method.model.local.weight))
    assert reseeded == [False, False, True]


def test_stratified_sample_has_every_category_then_proportional_shares():
    categories = [0] * 100 + [1] * 10 + [2] + [3] + [4] * 50
    chosen = stratified_indices(categories, 20, torch.Generator().manual_seed(0))
    # one each, then 15 places shared by 99 / 9 / 0 / 0 / 49 spare images: 9.46, 0.86, 0, 0,
    # 4.68 -> 9, 0, 0, 0, 4 and the two largest remainders (0.86, 0.68) -> 10, 2, 1, 1, 6
    assert len(set(chosen)) == 20
    counts = np.bincount([categories[i] for i in chosen], minlength=5)
    assert counts.tolist() == [10, 2, 1, 1, 6]
    few = stratified_indices(categories, 3)  # raised to one per category
    assert sorted(categories[i] for i in few) == [0, 1, 2, 3, 4]
    assert sorted(stratified_indices([0, 1, 1], 10)) == [0, 1, 2]  # capped at the dataset


class _Dataset:
    """Training images with categories; records which positions were read."""

    def __init__(self, categories: list[int]) -> None:
        self.category_ids = categories
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.category_ids)

    def __getitem__(self, item: int) -> Sample:
        self.read.append(item)
        return Sample(images(1, seed=item)[0], torch.zeros(1, SIZE, SIZE), 0,
                      self.category_ids[item], item)


def test_start_up_sample_is_stratified_per_category():
    method = DPDiffAD(tiny_config(**{"init.batches": 2, "init.max_tokens": 40}))
    dataset = _Dataset([0] * 30 + [1] + [2] * 5)
    loader = _Loader(3)
    loader.dataset, loader.batch_size = dataset, 2
    method.trainer = SimpleNamespace(train_dataloader=loader, global_step=0)
    seen = {}
    initialize = method.model.initialize

    def spy(tokens, summaries, generator=None):
        seen.update(tokens=tokens.shape[0], images=summaries.shape[0])
        initialize(tokens, summaries, generator)

    method.model.initialize = spy
    method.on_train_start()
    assert loader.drawn == 0 and seen == {"tokens": 40, "images": 4}
    # 4 images: one of each category, the spare place to the largest category
    assert sorted(dataset.category_ids[i] for i in dataset.read) == [0, 0, 1, 2]
    loader_mode = DPDiffAD(tiny_config(**{"init.batches": 2, "init.sampling": "loader"}))
    loader_mode.trainer = SimpleNamespace(train_dataloader=loader, global_step=0)
    dataset.read.clear()
    loader_mode.on_train_start()
    assert loader.drawn == 2 and dataset.read == []


# -- config and presets -------------------------------------------------------------------------
def test_defaults_are_the_paper_configuration():
    config = DPDiffADConfig()
    assert config.backbone.name == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert config.backbone.timm_kwargs == {"img_size": 392} and config.data.image_size == 392
    assert (config.local_prototypes.num, config.local_prototypes.topk) == (1024, 8)
    assert (config.local_prototypes.temperature, config.global_prototypes.temperature) == (
        0.07, 0.1)
    assert (config.global_prototypes.num, config.global_prototypes.sinkhorn_eps) == (128, 0.05)
    assert (config.denoiser.depth, config.schedule.num_train_timesteps) == (8, 1000)
    assert (config.inference.t_start, config.inference.steps) == (200, 5)
    assert (config.loss.local, config.loss.ot, config.prototype_lr, config.optim.lr) == (
        1.0, 0.1, 1e-3, 1e-4)
    assert (config.scoring.sigma, config.scoring.pooling) == (4.0, "topk_mean")
    assert resolve_config("dpdiff_ad", "paper") == config


@pytest.mark.parametrize(("overrides", "message"), [
    ({"local_prototypes": {"num": 4, "topk": 8}}, "local_prototypes.topk must be in"),
    ({"denoiser": {"width": 10, "heads": 4}}, "denoiser.width must be divisible"),
    ({"inference": {"t_start": 1000}}, "inference.t_start must be below"),
    ({"inference": {"prototype_weight": 1.5}}, "inference.prototype_weight must be in"),
    ({"local_prototypes": {"update": "ema"}},
     r"loss\.local must be 0 with local_prototypes\.update = 'ema'"),
    ({"local_prototypes": {"reseed_threshold": 0.0}},
     r"local_prototypes\.reseed_threshold must be in \(0, 1\], got 0\.0"),
    ({"local_prototypes": {"reseed_threshold": 2.0}},
     r"local_prototypes\.reseed_threshold must be in \(0, 1\], got 2\.0"),
    ({"denoiser": {"conditions": []}}, r"denoiser\.conditions must be one or both"),
    ({"denoiser": {"conditions": ["local", "local"]}}, r"denoiser\.conditions must be one or"),
    ({"denoiser": {"conditions": ["local"]}},
     r"loss\.ot must be 0 without 'global' in denoiser\.conditions"),
    ({"denoiser": {"conditions": ["global"]}, "inference": {"prototype_weight": 0.0}},
     r"loss\.local must be 0 without 'local' in denoiser\.conditions"),
    ({"denoiser": {"conditions": ["global"]}, "loss": {"local": 0.0}},
     r"inference\.prototype_weight must be 0 without 'local'"),
    ({"global_prototypes": {"ot_acts_on": "adapter"}, "loss": {"ot": 0.0}},
     r"loss\.ot must be non-zero with global_prototypes\.ot_acts_on = 'adapter'"),
])
def test_invalid_values_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DPDiffADConfig, overrides, context="dpdiff_ad")


def test_invalid_grid_level_names_the_field():
    with pytest.raises(ConfigError, match=r"features\.grid_level must index"):
        DPDiffAD(tiny_config(**{"features.grid_level": 5}))


def test_overriding_one_backbone_key_of_the_paper_preset_keeps_the_others():
    config = resolve_config("dpdiff_ad", "paper", {"backbone.weights": "/weights/dinov2.pth"})
    assert config.backbone == dataclasses.replace(DPDiffADConfig().backbone,
                                                  weights="/weights/dinov2.pth")


def test_paper_preset_offline_raises_weights_not_found(empty_offline_hub):
    with pytest.raises(WeightsNotFoundError,
                       match=r"vit_base_patch14_reg4_dinov2\.lvd142m.*looked in"):
        adbench.create("dpdiff_ad", preset="paper")


@pytest.mark.slow
def test_paper_architecture_trains_one_step_and_scores_in_mechanics_mode():
    method = adbench.create("dpdiff_ad", preset="paper", random_weights=True,
                            **{"backbone.timm_kwargs": {"img_size": 56}})
    model = method.model
    assert method.config.random_weights
    assert model.extractor.channels == 768 and model.local.weight.shape == (1024, 768)
    assert model.glob.weight.shape == (128, 768) and len(model.denoiser.blocks) == 8
    # ViT-B/14 up to block 9, the last one read (7.1 M parameters per block)
    assert 70e6 < sum(p.numel() for p in model.extractor.parameters()) < 75e6
    x = torch.rand(4, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    model.initialize(*model.initialization_sample(x, 10_000), torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(method.parameter_groups(), lr=1e-4)
    before = model.denoiser.head.weight.detach().clone()
    method.train()
    loss = model.training_losses(x, torch.Generator().manual_seed(0))
    loss.total.backward()
    optimizer.step()
    assert torch.isfinite(loss.total) and not torch.equal(model.denoiser.head.weight, before)
    out = forward(method, x[:2])
    assert out.anomaly_map.shape == (2, 1, 56, 56) and torch.isfinite(out.score).all()


# -- learning -------------------------------------------------------------------------------------
MARGIN = 0.1  # image AUROC points above the mean-image baseline
RECONSTRUCTION_MARGIN = 0.05  # ... for the reconstruction term alone


@pytest.mark.slow
def test_tiny_preset_learns_and_beats_the_naive_baseline(tmp_path):
    datamodule, naive = synthetic_task(tmp_path / "data", 3, n_train=24, n_test=32, batch_size=8)
    method = adbench.create("dpdiff_ad", preset="tiny")
    train = datamodule.dataset("train")
    images = torch.stack([train[i].image for i in range(0, len(train), 9)])
    fixed = FixedBatchLoss(lambda m: m.model.training_losses(images,
                                                             torch.Generator().manual_seed(0)))
    adbench.fit(method, datamodule, max_steps=120, accelerator="cpu", devices=1,
                enable_progress_bar=False, callbacks=[fixed])
    first, last = fixed.values
    assert last.total < first.total and last.diffusion < 0.8 * first.diffusion
    table = adbench.evaluate(method, datamodule, accelerator="cpu", devices=1,
                             enable_progress_bar=False).to_frame()
    assert table.loc["mean", "I-AUROC"] >= naive + MARGIN, (table.loc["mean"], naive)
    # the diffusion part on its own: the same weights scored by the reconstruction alone
    reconstruction = adbench.create("dpdiff_ad", preset="tiny",
                                    **{"inference.prototype_weight": 0.0})
    reconstruction.load_state_dict(method.state_dict())
    alone = adbench.evaluate(reconstruction, datamodule, accelerator="cpu", devices=1,
                             enable_progress_bar=False).to_frame()
    assert alone.loc["mean", "I-AUROC"] > naive + RECONSTRUCTION_MARGIN, (alone.loc["mean"], naive)
