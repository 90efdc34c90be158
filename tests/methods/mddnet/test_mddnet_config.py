"""MDD-Net configuration: the paper defaults, the number of classes, the paper preset
offline and its architecture in mechanics mode."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from mddnet_helpers import tiny_config

import adbench
from adbench.backbones import BackboneConfig
from adbench.batch import Batch
from adbench.config import from_dict
from adbench.errors import ConfigError, WeightsNotFoundError
from adbench.methods.mddnet import MDDNet, MDDNetConfig
from adbench.registry import resolve_config


def test_paper_defaults_are_the_specification():
    config = MDDNetConfig()
    assert config.backbone == BackboneConfig("wide_resnet50_2.tv_in1k", (1, 2, 3), "pretrained")
    assert (config.data.image_size, config.data.batch_size) == (256, 16)
    assert config.bottleneck.channels == 2048 and config.bottleneck.stride == 2
    assert config.bottleneck.blocks == 3  # RD's one-class bottleneck
    assert (config.memory.slots, config.memory.temperature) == (32, 0.07)
    assert config.decoder.blocks == (3, 4, 6) and config.decoder.inputs == "split"
    assert config.decoder.output_relu
    assert dataclasses.astuple(config.loss) == (1.0, 1.0, 1.0, 0.1, 0.1)
    assert (config.scoring.sigma, config.scoring.pooling, config.scoring.fusion) == (
        4.0,
        "max",
        "sum",
    )
    assert (config.optim.name, config.optim.lr, config.optim.betas) == ("adam", 5e-3, (0.5, 0.999))
    synthesis = config.synthesis  # p 0.5, scales 2^[0, 6), threshold 0.5, opacity ~ U(0.1, 1)
    assert synthesis.probability == 0.5 and synthesis.threshold == 0.5 and synthesis.rotate
    assert synthesis.perlin_scales == (0, 5) and synthesis.beta == (0.0, 0.9)  # beta = 1 - opacity
    assert resolve_config("mddnet", "paper") == config


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'memory\.slots'"):
        from_dict(MDDNetConfig, {"memory": {"slot": 3}}, context="mddnet")


def test_paper_preset_offline_raises_weights_not_found(empty_offline_hub):
    with pytest.raises(WeightsNotFoundError, match=r"wide_resnet50_2\.tv_in1k.*looked in"):
        adbench.create("mddnet", preset="paper")


# -- number of classes -------------------------------------------------------------------------
def test_num_classes_from_the_data_is_filled_at_build_and_rebuilds_from_the_checkpoint():
    method = adbench.create("mddnet", "tiny", num_classes=5, **{"backbone.weights": "none"})
    assert method.model.memory.slots.shape == (5, 8, 128)
    assert method.hparams["config"]["memory"]["num_classes"] == 5
    rebuilt = MDDNet(method.hparams["config"])
    rebuilt.load_state_dict(method.state_dict(), strict=True)
    torch.testing.assert_close(rebuilt.model.memory.slots, method.model.memory.slots)


@pytest.mark.parametrize(
    ("num_classes", "message"),
    [
        (2, r"memory\.num_classes=2 but the training data has 3 categories.*cannot hold"),
        (4, r"memory\.num_classes=4 but the training data has 3 categories.*never be trained"),
        (0, r"memory\.num_classes is 0.*num_classes=3"),
    ],
)
def test_fit_refuses_a_memory_not_sized_for_the_training_categories(num_classes, message):
    method = MDDNet(tiny_config(**{"memory.num_classes": num_classes}))
    datamodule = SimpleNamespace(categories=["a", "b", "c"])  # all the check reads
    with pytest.raises(ConfigError, match=message):
        adbench.fit(method, datamodule)


# -- the paper architecture in mechanics mode --------------------------------------------------
def rd_bottleneck_reference() -> torch.nn.Module:
    """RD's one-class bottleneck for WideResNet-50-2 from torchvision's blocks: 3x3 stride-2
    convolutions (level 1: 256 -> 512 -> 1024, level 2: 512 -> 1024) and a stage of 3 bottleneck
    blocks (width 128 per group, as the wide ResNet) from 3 x 1024 to 2048 channels at stride 2."""
    from torch import nn
    from torchvision.models.resnet import Bottleneck

    def conv(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out)]

    down = nn.Sequential(nn.Conv2d(3072, 2048, 1, stride=2, bias=False), nn.BatchNorm2d(2048))
    stage = [
        Bottleneck(3072, 512, 2, down, base_width=128),
        *(Bottleneck(2048, 512, base_width=128) for _ in range(2)),
    ]
    return nn.Sequential(*conv(256, 512), *conv(512, 1024), *conv(512, 1024), *stage)


@pytest.mark.slow
def test_paper_architecture_in_mechanics_mode_trains_and_scores_at_256_px():
    import timm
    from anomalib.models.components.backbone.resnet_decoder import get_decoder

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    with pytest.warns(UserWarning, match="random"):
        method = adbench.create("mddnet", "paper", random_weights=True, num_classes=15)
    model = method.model
    teacher = timm.create_model(
        "wide_resnet50_2", pretrained=False, features_only=True, out_indices=(1, 2, 3)
    )
    assert count(model.teacher) == count(teacher) == 24_862_528
    assert count(model.bottleneck) == count(rd_bottleneck_reference()) == 58_885_120
    assert (
        count(model.restoration)
        == count(model.identity)
        == count(get_decoder("wide_resnet50_2"))
        == 24_917_504
    )  # RD's decoder, as anomalib builds it
    assert model.memory.slots.shape == (15, 32, 2048)

    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    method.train()
    method.log_dict = lambda *args, **kwargs: None
    method.log = lambda *args, **kwargs: None
    batch = Batch(
        images,
        torch.zeros(2, 1, 256, 256),
        torch.zeros(2, dtype=torch.long),
        torch.tensor([0, 14]),
        torch.arange(2),
    )
    loss = method.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert (
        model.memory.slots.grad is not None
        and model.bottleneck.fuse[0].body[0].weight.grad is not None
    )
    method.eval()
    with torch.no_grad():
        features = model.encode(images)
        z = model.student(features).z
        out = method(images)
    assert [tuple(f.shape[1:]) for f in features] == [(256, 64, 64), (512, 32, 32), (1024, 16, 16)]
    assert z.shape == (2, 2048, 8, 8)
    assert out.anomaly_map.shape == (2, 1, 256, 256) and torch.isfinite(out.score).all()
