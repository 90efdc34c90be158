"""DPDiff-AD parts against hand-written references: the anomaly score, the prototype banks
and the prototype-conditioned denoiser."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from dpdiff_helpers import build, forward, images

from adbench.methods.dpdiff_ad.config import DenoiserConfig, LocalPrototypeConfig
from adbench.methods.dpdiff_ad.denoiser import PrototypeCrossAttention, PrototypeDenoiser
from adbench.methods.dpdiff_ad.prototypes import GlobalPrototypes, LocalPrototypes, spherical_kmeans
from adbench.methods.dpdiff_ad.scoring import anomaly_scores


# -- scoring ------------------------------------------------------------------------------------
def test_anomaly_score_fuses_reconstruction_and_prototype_distance():
    tokens = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    recon = torch.tensor([[[0.0, 2.0], [2.0, 2.0]]])  # cos 0 and cos 1
    nearest = torch.tensor([[0.8, 0.4]])
    scores = anomaly_scores(tokens, recon, nearest, prototype_weight=0.5)
    torch.testing.assert_close(scores, torch.tensor([[0.5 * 1 + 0.5 * 0.2, 0.5 * 0 + 0.5 * 0.6]]))
    torch.testing.assert_close(
        anomaly_scores(tokens, recon, nearest, 0.0), torch.tensor([[1.0, 0.0]])
    )


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
    torch.testing.assert_close(
        bank.weight.data, torch.tensor([[4.5 / 1.5, 0.0], [0.0, 1.0]]), atol=1e-4, rtol=0
    )
    assert not bank.weight.requires_grad


def test_usage_tracking_and_dead_prototype_reseeding():
    bank = LocalPrototypes(
        2, LocalPrototypeConfig(num=4, topk=1, momentum=0.5, reseed_threshold=0.6)
    )
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
    torch.testing.assert_close(
        GlobalPrototypes.descriptor(tokens), F.normalize(torch.tensor([[2.0, 2.0]]), dim=1)
    )


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
        own[i, 2 * i : 2 * i + 2] = True
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
    args = (
        torch.randn(2, 12, 6),
        torch.tensor([3, 900]),
        (3, 4),
        torch.randn(2, 12, 1, 6),
        torch.randn(5, 6),
    )
    out = denoiser(*args)
    assert out.shape == (2, 12, 6) and torch.equal(out, torch.zeros_like(out))  # adaLN-Zero
    torch.nn.init.normal_(denoiser.head.weight)
    assert denoiser(*args).abs().sum() > 0
