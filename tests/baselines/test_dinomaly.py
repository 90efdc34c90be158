"""anomalib.dinomaly: the paper presets, the official MLP biases and optimiser eps, the offline
refusal, weights reaching the encoder, and the mechanics (forward and backward) at a reduced size;
unified training on several categories with an anomalib model that has an offline preset."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import timm
import torch
from anomalib.models.image.dinomaly import torch_model as dinomaly_torch
from anomalib.models.image.dinomaly.components.loss import CosineHardMiningLoss
from baseline_helpers import as_batch, smooth_images
from torch import nn
from torchvision.transforms.v2 import CenterCrop

import adbench
from adbench import registry
from adbench.baselines.dino_reconstruction import encoder_without_download
from adbench.errors import ConfigError, WeightsNotFoundError

SMALL = {"name": "vit_small_patch14_reg4_dinov2.lvd142m", "layers": [2, 3, 4, 5, 6, 7, 8, 9]}


def linear(fan_in: int, fan_out: int) -> int:
    """Parameters of ``nn.Linear(fan_in, fan_out)`` with its default bias."""
    return fan_in * fan_out + fan_out


def official_trainable(dim: int, depth: int = 8) -> int:
    """Trainable parameters of the official Dinomaly (dinomaly_mvtec_uni.py, train()): bMlp
    bottleneck and ``depth`` Blocks (qkv_bias=True, LinearAttention2, Mlp), all biased."""
    mlp = linear(dim, 4 * dim) + linear(4 * dim, dim)
    block = 2 * dim + linear(dim, 3 * dim) + linear(dim, dim) + 2 * dim + mlp  # norm1 ... mlp
    return mlp + depth * block


def trainable_count(method) -> int:
    return sum(p.numel() for p in method.parameters() if p.requires_grad)


def test_paper_preset_is_the_papers_multi_class_setting():
    config = adbench.resolve_config("anomalib.dinomaly", "paper")
    assert config.backbone.name == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert config.backbone.weights == "pretrained" and not config.random_weights
    assert config.backbone.layers == (2, 3, 4, 5, 6, 7, 8, 9)
    assert config.fuse_groups == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert (config.data.image_size, config.crop_size, config.data.batch_size) == (448, 392, 16)
    assert (config.decoder_depth, config.bottleneck_dropout) == (8, 0.2)
    assert (config.optim.lr, config.final_lr, config.optim.warmup_steps) == (2e-3, 2e-4, 100)
    assert (config.optim.weight_decay, config.adam_eps, config.mlp_bias) == (1e-4, 1e-10, True)
    assert (config.trainer.max_steps, config.trainer.gradient_clip_val) == (10_000, 0.1)
    assert (config.hard_mining_p, config.hard_mining_steps, config.hard_mining_factor) == (
        0.9,
        1000,
        0.1,
    )
    assert "tiny" not in registry.get_method_spec("anomalib.dinomaly").presets


def test_realiad_preset_is_the_official_realiad_script():
    # dinomaly_realiad_uni.py differs from dinomaly_mvtec_uni.py in total_iters and dropout only
    assert "paper-realiad" in registry.get_method_spec("anomalib.dinomaly").presets
    paper = adbench.resolve_config("anomalib.dinomaly", "paper")
    realiad = adbench.resolve_config("anomalib.dinomaly", "paper-realiad")
    assert (realiad.trainer.max_steps, realiad.bottleneck_dropout) == (50_000, 0.4)
    assert realiad == dataclasses.replace(
        paper,
        bottleneck_dropout=0.4,
        trainer=dataclasses.replace(paper.trainer, max_steps=50_000),
    )


@pytest.mark.slow
def test_mlp_biases_are_the_official_ones_and_mlp_bias_false_is_anomalibs_model():
    torch.manual_seed(0)
    options = {"random_weights": True, "crop_size": 28, "backbone": SMALL}
    official = adbench.create("anomalib.dinomaly", "paper", **options)
    bias_free = adbench.create("anomalib.dinomaly", "paper", mlp_bias=False, **options)
    dim = official.model.encoder.feature_extractor.embed_dim  # 384 (ViT-S)
    # fc1 and fc2 biases of the bottleneck and of each of the 8 decoder MLPs: 9 x 5 x dim
    assert trainable_count(official) - trainable_count(bias_free) == 9 * 5 * dim == 17_280
    assert trainable_count(official) == official_trainable(dim)
    linears = [m for t in official.trainable() for m in t.modules() if isinstance(m, nn.Linear)]
    assert all(m.bias is not None and not m.bias.any() for m in linears)  # zero-initialised
    assert all(m.weight.abs().max() <= 0.03 for m in linears)  # truncated normal, official init
    # mlp_bias=False: anomalib's DinomalyModel, parameter for parameter
    with encoder_without_download(dinomaly_torch):
        anomalib = dinomaly_torch.DinomalyModel(encoder_name="vit_small_patch14_reg4_dinov2")
    shapes = {n: p.shape for n, p in anomalib.named_parameters() if n.split(".")[0] != "encoder"}
    mine = {n: p.shape for n, p in bias_free.model.named_parameters() if p.requires_grad}
    assert mine == shapes

    images = smooth_images(2, size=28, seed=5)
    for method in (official, bias_free):
        with torch.no_grad():
            out = method.eval()(images)
        assert out.anomaly_map.shape == (2, 1, 28, 28) and torch.isfinite(out.score).all()

    # StableAdamW with the official eps 1e-10 (dinomaly_mvtec_uni.py)
    official._trainer = SimpleNamespace(estimated_stepping_batches=1000)
    optimizer = official.configure_optimizers()["optimizer"]
    assert optimizer.param_groups[0]["eps"] == 1e-10 and optimizer.param_groups[0]["amsgrad"]


def test_offline_paper_preset_names_the_dinov2_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(
        WeightsNotFoundError, match=r"vit_base_patch14_reg4_dinov2\.lvd142m.*backbone\.weights="
    ):
        adbench.create("anomalib.dinomaly", "paper")


def test_bad_settings_are_named_errors():
    with pytest.raises(ConfigError, match=r"backbone\.name must be a timm DINOv2 ViT"):
        adbench.resolve_config("anomalib.dinomaly", "paper", {"backbone.name": "resnet18"})
    with pytest.raises(ConfigError, match="decoder_depth is 6"):
        adbench.resolve_config("anomalib.dinomaly", "paper", {"decoder_depth": 6})
    with pytest.raises(ConfigError, match="crop_size must be in"):
        adbench.resolve_config("anomalib.dinomaly", "paper", {"crop_size": 500})
    with pytest.raises(ConfigError, match="adam_eps must be positive, got 0"):
        adbench.resolve_config("anomalib.dinomaly", "paper", {"adam_eps": 0})


@pytest.mark.slow
def test_a_weights_file_reaches_the_encoder(tmp_path):
    source = timm.create_model(
        "vit_small_patch14_reg4_dinov2", pretrained=False, dynamic_img_size=True
    )
    path = tmp_path / "dinov2_small.pth"
    torch.save(source.state_dict(), path)
    method = adbench.create(
        "anomalib.dinomaly", "paper", crop_size=28, backbone={**SMALL, "weights": str(path)}
    )
    encoder = method.model.encoder.feature_extractor.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(encoder[key], value), key
    assert not any(p.requires_grad for p in method.model.encoder.parameters())
    assert torch.allclose(method.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


@pytest.mark.slow
def test_mechanics_forward_and_backward_of_the_paper_architecture_at_56_px():
    torch.manual_seed(0)
    method = adbench.create(
        "anomalib.dinomaly",
        "paper",
        random_weights=True,
        seed=0,
        crop_size=56,
        data={"image_size": 64, "batch_size": 2},
    )
    assert len(method.model.decoder) == 8
    assert method.model.encoder.feature_extractor.embed_dim == 768  # ViT-B
    assert trainable_count(method) == official_trainable(768) == 61_425_408
    images = smooth_images(2, size=64, seed=3)
    method.train()
    loss = method.training_step(as_batch(images), 0)
    assert loss.ndim == 0 and torch.isfinite(loss) and 0 < loss < 2
    loss.backward()
    trainable = [p for p in method.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert all(p.grad is None for p in method.model.encoder.parameters())
    names = {n.split(".")[1] for n, p in method.named_parameters() if p.requires_grad}
    assert names == {"bottleneck", "decoder"}

    method.eval()
    with torch.no_grad():
        out = method(images)
        # independent reference: anomalib's model on the torchvision centre crop
        crop = CenterCrop(56)(images)
        reference = method.model((crop - method.mean) / method.std)
    assert out.anomaly_map.shape == (2, 1, 64, 64) and out.score.shape == (2,)
    torch.testing.assert_close(out.score, reference.pred_score.reshape(-1))
    # inside the crop the map (before smoothing) is anomalib's map; the border replicates it
    raw = torch.nn.functional.pad(reference.anomaly_map, (4, 4, 4, 4), mode="replicate")
    torch.testing.assert_close(out.anomaly_map, method.postprocess(raw, (64, 64)).anomaly_map)


def test_hard_mining_loss_is_the_cosine_distance_of_the_flattened_groups():
    generator = torch.Generator().manual_seed(0)
    en = [torch.randn(2, 5, 3, 3, generator=generator) for _ in range(2)]
    de = [torch.randn(2, 5, 3, 3, generator=generator, requires_grad=True) for _ in range(2)]
    loss = CosineHardMiningLoss()(en, de, global_step=0)
    by_hand = (
        sum(
            (1 - torch.nn.functional.cosine_similarity(e.flatten(1), d.flatten(1))).mean()
            for e, d in zip(en, de, strict=True)
        )
        / 2
    )
    torch.testing.assert_close(loss, by_hand)


def test_unified_training_of_an_anomalib_model_on_several_categories(tmp_path):
    root = tmp_path / "synthetic"
    adbench.make_synthetic(root, n_categories=3, seed=0, image_size=64, n_train=4, n_test=6)
    datamodule = adbench.UnifiedDataModule(
        adbench.load_index("synthetic", root), image_size=64, batch_size=4, seed=0
    )
    method = adbench.create("anomalib.stfpm", "tiny")
    seen = []
    original = method.training_step

    def record(batch, batch_idx):
        seen.extend(batch.category.tolist())
        return original(batch, batch_idx)

    method.training_step = record
    adbench.fit(
        method,
        datamodule,
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    assert set(seen) == {0, 1, 2}  # one model trained on every category's images
    table = adbench.evaluate(
        method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False
    ).to_frame()
    assert list(table.index) == [*datamodule.categories, "mean"]
    assert table.loc["mean"].notna().all()
