"""anomalib.inp_former: the paper preset, the offline refusal and the mechanics (forward and
backward of the ViT-B architecture) at a reduced size, against anomalib's model called directly."""

from __future__ import annotations

import pytest
import torch
from baseline_helpers import as_batch, smooth_images
from torchvision.transforms.v2 import CenterCrop

import adbench
from adbench import registry
from adbench.errors import ConfigError, WeightsNotFoundError


def test_paper_preset_and_registration():
    spec = registry.get_method_spec("anomalib.inp_former")
    assert "tiny" not in spec.presets and "arXiv:2503.02424" in spec.paper
    config = adbench.resolve_config("anomalib.inp_former", "paper")
    assert config.backbone.name == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert config.backbone.layers == (2, 3, 4, 5, 6, 7, 8, 9)
    assert (config.data.image_size, config.crop_size, config.data.batch_size) == (448, 392, 16)
    assert (config.inp_num, config.optim.lr, config.final_lr) == (6, 1e-3, 1e-4)
    assert config.scoring.sigma == 0.0  # anomalib's model smooths already
    with pytest.raises(ConfigError, match="8 encoder blocks"):
        adbench.resolve_config(
            "anomalib.inp_former",
            "paper",
            {"backbone.layers": [2, 3, 4, 5], "fuse_groups": [[0, 1], [2, 3]]},
        )


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
