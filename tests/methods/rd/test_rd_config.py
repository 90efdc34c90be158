"""Reverse distillation configuration: the official defaults, the tiny preset, config errors,
the paper preset offline and the official architecture in mechanics mode."""

from __future__ import annotations

import pytest
import torch

import adbench
from adbench.backbones import BackboneConfig
from adbench.config import from_dict
from adbench.errors import ConfigError, WeightsNotFoundError
from adbench.methods.rd import RDConfig
from adbench.registry import resolve_config


def test_defaults_are_the_official_mvtec_setting():
    config = RDConfig()
    assert config.backbone == BackboneConfig("wide_resnet50_2.tv_in1k", (1, 2, 3), "pretrained")
    assert (config.data.image_size, config.data.batch_size) == (256, 16)
    neck = config.bottleneck
    assert (neck.channels, neck.blocks, neck.mid_ratio, neck.stride) == (2048, 3, 0.5, 2)
    assert config.decoder.blocks == (3, 4, 6) and config.decoder.output_relu
    assert config.loss.form == "flattened"
    optim = config.optim
    assert (optim.name, optim.lr, optim.betas, optim.schedule) == (
        "adam",
        5e-3,
        (0.5, 0.999),
        "constant",
    )
    assert (config.scoring.sigma, config.scoring.pooling) == (4.0, "max")
    assert config.trainer.max_epochs == 200
    assert resolve_config("rd", "paper") == config


def test_tiny_preset_is_the_same_design_reduced_with_the_offline_teacher():
    tiny = resolve_config("rd", "tiny")
    assert tiny.backbone == BackboneConfig(
        "tf_efficientnet_lite0", (1, 2, 3), "efficientnet-lite0-pypi"
    )
    assert (tiny.data.image_size, tiny.data.batch_size) == (64, 16)
    neck = tiny.bottleneck
    assert (neck.channels, neck.blocks, neck.stride) == (128, 1, 1)
    assert tiny.decoder.blocks == (1, 1, 1) and not tiny.decoder.output_relu
    assert tiny.scoring.sigma == 1.0 and tiny.trainer.max_epochs == 40
    paper = RDConfig()  # the design choices are the official ones
    assert (tiny.loss, tiny.optim, tiny.scoring.pooling) == (
        paper.loss,
        paper.optim,
        paper.scoring.pooling,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"decoder.blocks": [1, 1]}, r"rd: decoder\.blocks needs one entry per backbone level"),
        ({"decoder.blocks": [1, 0, 1]}, r"rd: decoder\.blocks and bottleneck\.blocks must be >= 1"),
        ({"bottleneck.stride": 4}, r"rd: bottleneck\.stride must be 1 or 2, got 4"),
        ({"loss.form": "pixel"}, r"loss\.form"),
    ],
)
def test_invalid_settings_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("rd", "tiny", overrides)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'loss\.form'"):
        from_dict(RDConfig, {"loss": {"from": "position"}}, context="rd")


def test_paper_preset_offline_raises_weights_not_found(empty_offline_hub):
    with pytest.raises(WeightsNotFoundError, match=r"wide_resnet50_2\.tv_in1k.*looked in"):
        adbench.create("rd", preset="paper")


@pytest.mark.slow
def test_official_architecture_in_mechanics_mode_at_256_px():
    """Parameter counts against independent builds of RD's networks: timm's WideResNet-50-2,
    anomalib's one-class bottleneck (wide: 128 channels per group) without the conv4/bn4 that it,
    like the official BN_layer, defines but never calls, and anomalib's RD decoder."""
    import timm
    from anomalib.models.components.backbone.resnet_decoder import get_decoder
    from anomalib.models.image.reverse_distillation.components.bottleneck import (
        get_bottleneck_layer,
    )

    def count(module: torch.nn.Module, skip: tuple[str, ...] = ()) -> int:
        return sum(p.numel() for n, p in module.named_parameters() if not n.startswith(skip))

    with pytest.warns(UserWarning, match="random"):
        method = adbench.create("rd", "paper", random_weights=True)
    model = method.model
    teacher = timm.create_model(
        "wide_resnet50_2", pretrained=False, features_only=True, out_indices=(1, 2, 3)
    )
    ocbe = get_bottleneck_layer("wide_resnet50_2", width_per_group=128)
    assert count(model.teacher) == count(teacher) == 24_862_528
    assert count(model.bottleneck) == count(ocbe, skip=("conv4", "bn4")) == 58_885_120
    assert count(model.decoder) == count(get_decoder("wide_resnet50_2")) == 24_917_504

    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    method.eval()
    with torch.no_grad():
        features = model.encode(images)
        z = model.bottleneck(features)
        decoded = model.decoder(z)
        out = method(images)
    shapes = [(256, 64, 64), (512, 32, 32), (1024, 16, 16)]
    assert [tuple(f.shape[1:]) for f in features] == shapes
    assert [tuple(f.shape[1:]) for f in decoded] == shapes
    assert z.shape == (2, 2048, 8, 8)
    assert out.anomaly_map.shape == (2, 1, 256, 256) and torch.isfinite(out.score).all()
