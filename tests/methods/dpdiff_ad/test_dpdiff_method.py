"""The DPDiff-AD method: token grids, batching, ablated prototype sets, initialisation,
reconstruction and the denoiser EMA."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from dpdiff_helpers import SIZE, build, forward, images, losses

from adbench.batch import Batch


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
        results[size] = (
            torch.cat([o.score for o in outs]),
            torch.cat([o.anomaly_map for o in outs]),
        )
    for size in (1, 3):
        torch.testing.assert_close(results[size][0], results[8][0])
        torch.testing.assert_close(results[size][1], results[8][1])


# -- ablations ------------------------------------------------------------------------------------
NO_GLOBAL = {"denoiser.conditions": ["local"], "loss.ot": 0.0}
NO_LOCAL = {"denoiser.conditions": ["global"], "loss.local": 0.0, "inference.prototype_weight": 0.0}


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
    batch = Batch(
        x,
        torch.zeros(4, 1, SIZE, SIZE),
        torch.zeros(4, dtype=torch.long),
        torch.tensor([0, 1, 2, 3]),
        torch.arange(4),
    )
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

            def oracle(
                x,
                t,
                grid,
                local,
                glob,
                clean=tokens,
                kind=prediction,
                seen=seen,
                schedule=model.schedule,
            ):
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
    torch.testing.assert_close(
        model.ema_denoiser.head.bias, torch.full_like(model.ema_denoiser.head.bias, 0.5)
    )
    assert not any(p.requires_grad for p in model.ema_denoiser.parameters())
