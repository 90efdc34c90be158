"""DPDiff-AD configuration: the paper defaults, invalid values, presets, and the paper
architecture offline and in mechanics mode."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from dpdiff_helpers import forward, tiny_config

import adbench
from adbench.config import from_dict
from adbench.errors import ConfigError, WeightsNotFoundError
from adbench.methods.dpdiff_ad import DPDiffAD, DPDiffADConfig
from adbench.registry import resolve_config


# -- config and presets -------------------------------------------------------------------------
def test_defaults_are_the_paper_configuration():
    config = DPDiffADConfig()
    assert config.backbone.name == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert config.backbone.timm_kwargs == {"img_size": 392} and config.data.image_size == 392
    assert (config.local_prototypes.num, config.local_prototypes.topk) == (1024, 8)
    assert (config.local_prototypes.temperature, config.global_prototypes.temperature) == (
        0.07,
        0.1,
    )
    assert (config.global_prototypes.num, config.global_prototypes.sinkhorn_eps) == (128, 0.05)
    assert (config.denoiser.depth, config.schedule.num_train_timesteps) == (8, 1000)
    assert (config.inference.t_start, config.inference.steps) == (200, 5)
    assert (config.loss.local, config.loss.ot, config.prototype_lr, config.optim.lr) == (
        1.0,
        0.1,
        1e-3,
        1e-4,
    )
    assert (config.scoring.sigma, config.scoring.pooling) == (4.0, "topk_mean")
    assert resolve_config("dpdiff_ad", "paper") == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"local_prototypes": {"num": 4, "topk": 8}}, "local_prototypes.topk must be in"),
        ({"denoiser": {"width": 10, "heads": 4}}, "denoiser.width must be divisible"),
        ({"inference": {"t_start": 1000}}, "inference.t_start must be below"),
        ({"inference": {"prototype_weight": 1.5}}, "inference.prototype_weight must be in"),
        (
            {"local_prototypes": {"update": "ema"}},
            r"loss\.local must be 0 with local_prototypes\.update = 'ema'",
        ),
        (
            {"local_prototypes": {"reseed_threshold": 0.0}},
            r"local_prototypes\.reseed_threshold must be in \(0, 1\], got 0\.0",
        ),
        (
            {"local_prototypes": {"reseed_threshold": 2.0}},
            r"local_prototypes\.reseed_threshold must be in \(0, 1\], got 2\.0",
        ),
        ({"denoiser": {"conditions": []}}, r"denoiser\.conditions must be one or both"),
        ({"denoiser": {"conditions": ["local", "local"]}}, r"denoiser\.conditions must be one or"),
        (
            {"denoiser": {"conditions": ["local"]}},
            r"loss\.ot must be 0 without 'global' in denoiser\.conditions",
        ),
        (
            {"denoiser": {"conditions": ["global"]}, "inference": {"prototype_weight": 0.0}},
            r"loss\.local must be 0 without 'local' in denoiser\.conditions",
        ),
        (
            {"denoiser": {"conditions": ["global"]}, "loss": {"local": 0.0}},
            r"inference\.prototype_weight must be 0 without 'local'",
        ),
        (
            {"global_prototypes": {"ot_acts_on": "adapter"}, "loss": {"ot": 0.0}},
            r"loss\.ot must be non-zero with global_prototypes\.ot_acts_on = 'adapter'",
        ),
    ],
)
def test_invalid_values_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DPDiffADConfig, overrides, context="dpdiff_ad")


def test_invalid_grid_level_names_the_field():
    with pytest.raises(ConfigError, match=r"features\.grid_level must index"):
        DPDiffAD(tiny_config(**{"features.grid_level": 5}))


def test_overriding_one_backbone_key_of_the_paper_preset_keeps_the_others():
    config = resolve_config("dpdiff_ad", "paper", {"backbone.weights": "/weights/dinov2.pth"})
    assert config.backbone == dataclasses.replace(
        DPDiffADConfig().backbone, weights="/weights/dinov2.pth"
    )


def test_paper_preset_offline_raises_weights_not_found(empty_offline_hub):
    with pytest.raises(
        WeightsNotFoundError, match=r"vit_base_patch14_reg4_dinov2\.lvd142m.*looked in"
    ):
        adbench.create("dpdiff_ad", preset="paper")


@pytest.mark.slow
def test_paper_architecture_trains_one_step_and_scores_in_mechanics_mode():
    method = adbench.create(
        "dpdiff_ad",
        preset="paper",
        random_weights=True,
        **{"backbone.timm_kwargs": {"img_size": 56}},
    )
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
