"""The GLAD paper preset: weights only from the hub when asked, the published SD v1.4 shapes, and
its architecture in mechanics mode (random weights)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import adbench
from adbench.backbones import load_diffusers_component
from adbench.batch import Batch
from adbench.errors import WeightsNotFoundError
from adbench.methods.glad.config import SD_V1_4


@pytest.mark.parametrize(("allow", "local_only"), [(None, True), ("1", False)])
def test_a_hub_repo_id_downloads_only_when_asked(monkeypatch, allow, local_only):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # online: the opt-in decides
    if allow is None:
        monkeypatch.delenv("ADBENCH_ALLOW_DOWNLOAD", raising=False)
    else:
        monkeypatch.setenv("ADBENCH_ALLOW_DOWNLOAD", allow)
    seen = {}

    class Component:
        @classmethod
        def from_pretrained(cls, source, **kwargs):
            seen.update(kwargs, source=source)
            raise OSError("not in the cache")

    with pytest.raises(WeightsNotFoundError, match="ADBENCH_ALLOW_DOWNLOAD=1"):
        load_diffusers_component(Component, SD_V1_4, subfolder="unet")
    assert seen["source"] == SD_V1_4 and seen["local_files_only"] is local_only


def test_paper_preset_offline_raises_weights_not_found(empty_offline_hub):
    with pytest.raises(WeightsNotFoundError, match=r"CompVis/stable-diffusion-v1-4.*weights="):
        adbench.create("glad", preset="paper")


def test_sd_configurations_are_the_published_v1_4_ones():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from adbench.methods.glad.networks import sd_config

    unet = sd_config("unet")
    assert unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert unet["cross_attention_dim"] == 768 and unet["in_channels"] == 4
    assert sd_config("vae")["latent_channels"] == 4
    text = sd_config("text_encoder")
    assert (text["hidden_size"], text["num_hidden_layers"], text["max_position_embeddings"]) == (
        768,
        12,
        77,
    )
    # shapes without allocating the weights: the meta device
    with torch.device("meta"):
        assert (
            sum(p.numel() for p in UNet2DConditionModel.from_config(unet).parameters())
            == 859_520_964
        )  # SD v1's UNet
        assert (
            sum(p.numel() for p in AutoencoderKL.from_config(sd_config("vae")).parameters())
            == 83_653_863
        )


def test_mechanics_prompts_are_clip_shaped_and_differ():
    from adbench.methods.glad.networks import build_prompt_encoder

    torch.manual_seed(0)
    prompt, empty = build_prompt_encoder(SD_V1_4, random_weights=True)(["a photo of sks", ""])
    assert prompt.shape == empty.shape == (77, 768)
    assert not torch.allclose(prompt, empty)


def test_paper_preset_without_transformers_names_the_extra(monkeypatch):
    import builtins

    from adbench.errors import MissingDependencyError
    from adbench.methods.glad.networks import build_prompt_encoder

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name.startswith("transformers"):
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(MissingDependencyError, match=r"adbench-uad\[glad\]"):
        build_prompt_encoder(SD_V1_4, random_weights=True)


@pytest.mark.slow
def test_paper_architecture_in_mechanics_mode_trains_and_runs_ads():
    """SD v1.4 VAE and UNet, the CLIP prompt and DINO ViT-B/8, all with random weights, at 64 px
    (8 x 8 latents) with 3 DDIM steps: one training step and one ADS test batch."""
    with pytest.warns(UserWarning, match="random"):
        method = adbench.create(
            "glad",
            "paper",
            random_weights=True,
            **{
                "data.image_size": 64,
                "autoencoder.size": 64,
                "sampler.steps": 3,
                "scoring.feature_size": 64,
            },
        )
    model = method.model

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(model.denoiser.unet) == 859_520_964
    assert count(model.codec.vae) == 83_653_863
    assert count(model.features) == pytest.approx(85.8e6, rel=1e-3)  # DINO ViT-B/8
    assert model.denoiser.prompt.shape == (1, 77, 768)
    assert model.denoiser.unet.is_gradient_checkpointing  # the official training flag
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    method.train()
    method.log = lambda *args, **kwargs: None
    batch = Batch(
        images,
        torch.zeros(2, 1, 64, 64),
        torch.zeros(2, dtype=torch.long),
        torch.zeros(2, dtype=torch.long),
        torch.arange(2),
    )
    loss = method.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.denoiser.unet.conv_in.weight.grad is not None
    assert all(p.grad is None for p in model.codec.parameters())  # the VAE stays frozen
    method.eval()
    with torch.no_grad():
        out = method(images, ["bottle", "wood"])  # each image with its category's prompt
    assert model.denoiser.class_prompts(["bottle"]).shape == (1, 77, 768)
    assert out.anomaly_map.shape == (2, 1, 64, 64) and torch.isfinite(out.score).all()
    # every sample stops at a DDIM step above min_step or at the first below it (noised at 649,
    # leading steps 433, 217, 1)
    assert set(method.last_stop_steps.tolist()) <= {433, 217}
