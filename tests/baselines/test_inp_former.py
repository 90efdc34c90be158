"""anomalib.inp_former: the paper preset (the official multi-class script), patch tokens only in
the INP extractor and decoder, the official MLP biases, the offline refusal and the mechanics
(forward and backward of the ViT-B architecture) at a reduced size, against anomalib's model called
directly."""

from __future__ import annotations

import pytest
import torch
from anomalib.models.image.inp_former import torch_model as inp_torch
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


def official_trainable(dim: int, heads: int, inp_num: int = 6) -> int:
    """Trainable parameters of the official INP-Former (INP_Former_Multi_Class.py, main()): Mlp
    bottleneck, the INPs, 1 Aggregation_Block and 8 Prototype_Blocks (qkv_bias=True, Mlp, all
    biased; a Prototype_Attention also learns one scale per head)."""
    mlp = linear(dim, 4 * dim) + linear(4 * dim, dim)
    block = 2 * dim + linear(dim, dim) + linear(dim, 2 * dim) + linear(dim, dim) + 2 * dim + mlp
    return mlp + inp_num * dim + 9 * block + 8 * heads


def trainable_count(method) -> int:
    return sum(p.numel() for p in method.parameters() if p.requires_grad)


def test_paper_preset_and_registration():
    spec = registry.get_method_spec("anomalib.inp_former")
    assert "tiny" not in spec.presets and "arXiv:2503.02424" in spec.paper
    config = adbench.resolve_config("anomalib.inp_former", "paper")
    assert config.backbone.name == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert config.backbone.layers == (2, 3, 4, 5, 6, 7, 8, 9)
    assert (config.data.image_size, config.crop_size, config.data.batch_size) == (448, 392, 16)
    assert (config.inp_num, config.optim.lr, config.final_lr) == (6, 1e-3, 1e-4)
    assert (config.optim.warmup_steps, config.optim.weight_decay, config.adam_eps) == (
        100,
        1e-4,
        1e-10,
    )
    assert config.remove_class_token and config.mlp_bias
    # INP_Former_Multi_Class.py: --total_epochs 200, no iteration budget; clipping 0.1
    trainer = config.trainer
    assert (trainer.max_epochs, trainer.max_steps, trainer.gradient_clip_val) == (200, -1, 0.1)
    assert config.scoring.sigma == 4.0  # the model's own 5 x 5 kernel (official, anomalib)
    with pytest.raises(ConfigError, match="8 encoder blocks"):
        adbench.resolve_config(
            "anomalib.inp_former",
            "paper",
            {"backbone.layers": [2, 3, 4, 5], "fuse_groups": [[0, 1], [2, 3]]},
        )


@pytest.mark.slow
@pytest.mark.parametrize("remove_class_token", [True, False])
def test_only_patch_tokens_reach_the_inp_extractor_and_decoder(remove_class_token):
    torch.manual_seed(0)
    method = adbench.create(
        "anomalib.inp_former",
        "paper",
        random_weights=True,
        crop_size=56,
        data={"image_size": 56},
        backbone=SMALL,
        remove_class_token=remove_class_token,
    )
    seen = {}
    # the token counts of the encoder features the INP extractor attends to (its second input)
    # and of the decoder's input
    for name, module, arg in (
        ("extractor", method.model.aggregation[0], 1),
        ("decoder", method.model.decoder[0], 0),
    ):
        module.register_forward_pre_hook(
            lambda _, args, name=name, arg=arg: seen.update({name: args[arg].shape[1]})
        )
    method.train()
    loss = method.training_step(as_batch(smooth_images(2, size=56, seed=6)), 0)
    assert torch.isfinite(loss)
    # (56 / 14)^2 = 16 patch tokens; DINOv2-R adds 1 CLS and 4 register tokens
    expected = 16 if remove_class_token else 16 + 1 + 4
    assert seen == {"extractor": expected, "decoder": expected}
    # the INP coherence loss: distances of every token to the INPs, (B, tokens, INPs)
    assert method.model.distribution.shape == (2, expected, 6)


@pytest.mark.slow
def test_mlp_biases_are_the_official_ones_and_mlp_bias_false_is_anomalibs_model():
    torch.manual_seed(0)
    options = {"random_weights": True, "crop_size": 28, "backbone": SMALL}
    official = adbench.create("anomalib.inp_former", "paper", **options)
    bias_free = adbench.create("anomalib.inp_former", "paper", mlp_bias=False, **options)
    dim = official.model.encoder.feature_extractor.embed_dim  # 384 (ViT-S), 6 heads
    # anomalib's bottleneck MLP has biases; fc1 and fc2 of the INP extractor's and the 8 decoder
    # blocks' MLPs have none: 9 x 5 x dim
    assert trainable_count(official) - trainable_count(bias_free) == 9 * 5 * dim == 17_280
    assert trainable_count(official) == official_trainable(dim, heads=6)
    linears = [m for t in official.trainable() for m in t.modules() if isinstance(m, nn.Linear)]
    assert all(m.bias is not None and not m.bias.any() for m in linears)  # zero-initialised
    with encoder_without_download(inp_torch):
        anomalib = inp_torch.InpFormerModel(encoder_name="vit_small_patch14_reg4_dinov2")
    shapes = {n: p.shape for n, p in anomalib.named_parameters() if n.split(".")[0] != "encoder"}
    mine = {n: p.shape for n, p in bias_free.model.named_parameters() if p.requires_grad}
    assert mine == shapes

    images = smooth_images(2, size=28, seed=7)
    for method in (official, bias_free):
        with torch.no_grad():
            out = method.eval()(images)
        assert out.anomaly_map.shape == (2, 1, 28, 28) and torch.isfinite(out.score).all()


def test_offline_paper_preset_names_the_dinov2_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(
        WeightsNotFoundError, match=r"vit_base_patch14_reg4_dinov2\.lvd142m.*backbone\.weights="
    ):
        adbench.create("anomalib.inp_former", "paper")


@pytest.mark.slow
def test_mechanics_forward_and_backward_of_the_paper_architecture_at_56_px():
    torch.manual_seed(0)
    method = adbench.create(
        "anomalib.inp_former",
        "paper",
        random_weights=True,
        seed=0,
        crop_size=56,
        data={"image_size": 56, "batch_size": 2},
    )
    assert method.model.encoder.feature_extractor.embed_dim == 768  # ViT-B
    assert trainable_count(method) == official_trainable(768, heads=12) == 68_517_984
    images = smooth_images(2, size=56, seed=4)
    method.train()
    loss = method.training_step(as_batch(images), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = [p for p in method.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert all(p.grad is None for p in method.model.encoder.parameters())
    names = {n.split(".")[1] for n, p in method.named_parameters() if p.requires_grad}
    assert names == {"bottleneck", "decoder", "aggregation", "prototype_token"}

    method.eval()
    with torch.no_grad():
        out = method(images)
        reference = method.model((CenterCrop(56)(images) - method.mean) / method.std)
    torch.testing.assert_close(out.score, reference.pred_score.reshape(-1))
    torch.testing.assert_close(out.anomaly_map, reference.anomaly_map)


@pytest.mark.slow
def test_the_map_is_smoothed_once_inside_the_model_and_not_under_a_smoothing_protocol():
    """Default: anomalib's 5 x 5 sigma-4 blur in the model and no second smoothing; a protocol
    that smooths itself sets scoring.sigma to 0, which leaves the model's raw map."""
    torch.manual_seed(0)
    small = {"backbone": SMALL, "crop_size": 56, "data.image_size": 56}
    smoothed = adbench.create("anomalib.inp_former", "paper", random_weights=True, **small)
    assert isinstance(smoothed.model.gaussian_blur, inp_torch.GaussianBlur2d)
    raw = adbench.create(
        "anomalib.inp_former", "paper", random_weights=True, **small, **{"scoring.sigma": 0.0}
    )
    assert isinstance(raw.model.gaussian_blur, nn.Identity)
    keys = raw.load_state_dict(smoothed.state_dict(), strict=False)
    assert not keys.missing_keys and keys.unexpected_keys == ["model.gaussian_blur.kernel"]
    images = smooth_images(2, 56)
    with torch.no_grad():
        maps = smoothed.eval()(images).anomaly_map
        unsmoothed = raw.eval()(images).anomaly_map
    torch.testing.assert_close(maps, smoothed.model.gaussian_blur(unsmoothed))
