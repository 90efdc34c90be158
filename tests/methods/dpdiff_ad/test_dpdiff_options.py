"""DPDiff-AD: every config option changes the computation it names."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from dpdiff_helpers import SIZE, build, forward, images, losses, tiny_config

from adbench.errors import ConfigError
from adbench.methods.dpdiff_ad import DPDiffAD
from adbench.methods.dpdiff_ad.loss import ot_targets

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


@pytest.mark.parametrize(
    ("key", "value"), [("scoring.pooling", "max"), ("scoring.topk_fraction", 0.5)]
)
def test_pooling_options_change_the_image_score(key, value):
    x = images(2, seed=3)
    reference, changed = forward(build(), x), forward(build(**{key: value}), x)
    torch.testing.assert_close(changed.anomaly_map, reference.anomaly_map)
    assert not torch.allclose(changed.score, reference.score, atol=1e-6)


def test_grid_level_and_fusion_change_the_token_grid():
    coarse = build(**{"features.grid_level": 2}).model.extractor(images(1))
    assert coarse[1] == (2, 2)
    vit = {
        "backbone": {
            "name": "vit_tiny_patch16_224",
            "layers": [1, 2],
            "weights": "none",
            "timm_kwargs": {"img_size": SIZE},
        }
    }
    assert (
        DPDiffAD(tiny_config(**vit, **{"features.fusion": "mean"})).model.extractor.channels == 192
    )
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
    for name, extra in [
        ("queue", {}),
        ("short_queue", {"global_prototypes.queue_size": 2}),
        ("batch", {"global_prototypes.ot_target": "batch"}),
        ("unbalanced", {"global_prototypes.ot_target": "unbalanced"}),
    ]:
        model = build(**base, **extra).model
        descriptors = model.glob.descriptor(model.extractor(x)[0])
        targets[name] = model.ot_targets(descriptors)
        if name == "queue":  # the batch plus the 8 descriptors of the initialisation images
            queue = model.glob.queued()
            assert queue.shape == (8, 176)
            w = model.ot_projection()
            expected = ot_targets(
                model.glob.similarity(descriptors, w),
                0.5,
                1000,
                extra=model.glob.similarity(queue, w),
            )
            torch.testing.assert_close(targets[name], expected)
    names = list(targets)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
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
    torch.testing.assert_close(model.glob.similarity(descriptors, weight), projected @ prototypes.T)
    losses(method, x).ot.backward()
    assert weight.grad.abs().sum() > 0 and model.glob.weight.grad.abs().sum() > 0
    assert all(
        p.grad is None
        for name, p in model.denoiser.named_parameters()
        if not name.startswith("condition.")
    )
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
        id(p) for p in adapted.model.adapter.parameters()
    }
    assert prototypes["lr"] == 0.05 and prototypes["weight_decay"] == 0.0
    assert {id(p) for p in prototypes["params"]} == {
        id(method.model.local.weight),
        id(method.model.glob.weight),
    }
