"""GLAD prompts: byte tokens, the per-category class prompts, and each test image conditioned
on its own category's prompt."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch
from glad_helpers import SIZE, objects, small_conditional_unet

import adbench
from adbench.batch import Batch
from adbench.methods.glad import GLAD
from adbench.methods.glad.networks import Denoiser


def small_clip_config() -> dict:
    """A 1-layer CLIP text encoder with 16-dim states (the small UNet's cross-attention width)
    over byte tokens (ids 0..255, start 256, end 257), 32 tokens long."""
    return {
        "vocab_size": 258,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 32,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "pad_token_id": 257,
    }


def small_prompt_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    from adbench.methods.glad.networks import PromptEncoder, byte_tokens

    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(**small_clip_config()))
    return PromptEncoder(clip, lambda p: byte_tokens(p, bos=256, eos=257, length=32)), clip


def test_byte_tokens_are_the_prompt_bytes_between_start_and_end():
    from adbench.methods.glad.networks import byte_tokens

    got = byte_tokens(["ab", ""], bos=256, eos=257, length=5)
    assert got.tolist() == [[256, 97, 98, 257, 257], [256, 257, 257, 257, 257]]


def test_class_prompts_are_the_encoders_output_for_each_templated_name():
    from adbench.methods.glad.networks import ClassPrompts, byte_tokens

    encoder, clip = small_prompt_encoder()
    calls = []
    bank = ClassPrompts(lambda p: calls.append(p) or encoder(p), "a photo of sks{category}")
    assert bank.prompt("mvtec/metal_nut") == "a photo of sksmetal_nut"  # official: no space
    got = bank(["mvtec/bottle", "wood", "mvtec/bottle"])
    assert got.shape == (3, 32, 16)
    with torch.no_grad():
        expected = clip(byte_tokens(["a photo of sksbottle", "a photo of skswood"], 256, 257, 32))[
            0
        ]
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])
    torch.testing.assert_close(got[2], expected[0])
    assert not torch.allclose(got[0], got[1])
    bank(["wood", "mvtec/bottle"])  # cached: nothing encoded again
    assert calls == [["a photo of sksbottle", "a photo of skswood"]]
    assert sorted(bank.cache) == ["mvtec/bottle", "wood"]


def test_guidance_uses_each_images_own_prompt_embedding():
    unet = small_conditional_unet()
    prompt, empty = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    context = torch.randn(2, 5, 16)  # one conditional embedding per image
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([500, 300])
    guided = Denoiser(unet, prompt, empty, guidance_scale=9.0)
    with torch.no_grad():
        eps_c = unet(x, t, encoder_hidden_states=context).sample
        eps_u = unet(x, t, encoder_hidden_states=empty.expand(2, -1, -1)).sample
        got = guided(x, t, guided=True, context=context)
        torch.testing.assert_close(got, eps_u + 9 * (eps_c - eps_u), rtol=1e-4, atol=1e-4)
        for i in range(2):  # image i alone with its own embedding
            alone = guided(x[i : i + 1], t[i : i + 1], guided=True, context=context[i : i + 1])
            torch.testing.assert_close(got[i : i + 1], alone, rtol=1e-4, atol=1e-4)
        plain = Denoiser(unet, prompt, empty, guidance_scale=1.0)
        torch.testing.assert_close(plain(x, t, guided=True, context=context), eps_c)


def small_sd_config(part: str) -> dict:
    """Small stand-ins for the shipped SD v1.4 configurations (mechanics mode in seconds)."""
    return {
        "unet": dict(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=16,
            norm_num_groups=4,
            attention_head_dim=2,
        ),
        "vae": dict(
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=32,
        ),
        "text_encoder": small_clip_config(),
    }[part]


def small_paper(monkeypatch, **overrides) -> GLAD:
    """The paper preset's code path (SD VAE, conditional UNet with CFG 9, CLIP prompts) in
    mechanics mode with small SD configurations, EfficientNet features, 32 px, 3 DDIM steps."""
    import adbench.methods.glad.networks as networks

    monkeypatch.setattr(networks, "sd_config", small_sd_config)
    config = adbench.resolve_config(
        "glad",
        "paper",
        {
            "data.image_size": SIZE,
            "autoencoder.size": SIZE,
            "sampler.steps": 3,
            "scoring.feature_size": SIZE,
            **overrides,
        },
    )
    config = dataclasses.replace(
        config, random_weights=True, features=adbench.resolve_config("glad", "tiny").features
    )
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        return GLAD(config).eval()


def test_class_name_prompts_condition_each_test_image_with_cfg(monkeypatch):
    method = small_paper(monkeypatch)
    denoiser = method.model.denoiser
    x = objects()
    seen = []
    original = denoiser.unet.forward
    monkeypatch.setattr(
        denoiser.unet,
        "forward",
        lambda *a, **k: seen.append(k["encoder_hidden_states"]) or original(*a, **k),
    )
    with torch.no_grad():
        method(x, ["mvtec/bottle", "wood"])
    expected = denoiser.class_prompts.encoder(["a photo of sksbottle", "a photo of skswood"])
    assert seen and all(c.shape == (4, 32, 16) for c in seen)  # (empty | class) x 2 images
    for context in seen:  # every DDIM step: unconditional branch first, then each image's own
        torch.testing.assert_close(context[:2], denoiser.empty_prompt.expand(2, -1, -1))
        torch.testing.assert_close(context[2:], expected)


def test_images_of_two_categories_score_as_each_alone(monkeypatch):
    method = small_paper(monkeypatch)
    x = objects()
    with torch.no_grad():
        both = method(x, ["bottle", "wood"])
        alone = [method(x[i : i + 1], [name]) for i, name in enumerate(["bottle", "wood"])]
        swapped = method(x[:1], ["wood"])
    torch.testing.assert_close(
        both.score, torch.cat([a.score for a in alone]), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        both.anomaly_map, torch.cat([a.anomaly_map for a in alone]), rtol=1e-4, atol=1e-5
    )
    assert not torch.allclose(swapped.anomaly_map, alone[0].anomaly_map)  # the prompt matters
    # in the evaluation loops the names come from the datamodule through the contract
    method._trainer = types.SimpleNamespace(
        datamodule=types.SimpleNamespace(categories=["bottle", "wood"])
    )
    batch = Batch(
        x,
        torch.zeros(2, 1, SIZE, SIZE),
        torch.zeros(2, dtype=torch.long),
        torch.tensor([0, 1]),
        torch.arange(2),
    )
    with torch.no_grad():
        torch.testing.assert_close(method.score(batch).score, both.score)


def test_fixed_test_prompt_keeps_the_training_prompt(monkeypatch):
    fixed = small_paper(monkeypatch, **{"denoiser.test_prompt": "fixed"})
    assert fixed.model.denoiser.class_prompts is None
    class_name = small_paper(monkeypatch)  # the same initialisation
    x = objects()
    with torch.no_grad():
        reference = class_name(x)  # no category names: the fixed prompt
        torch.testing.assert_close(fixed(x, ["bottle", "wood"]).anomaly_map, reference.anomaly_map)
        torch.testing.assert_close(fixed(x).anomaly_map, reference.anomaly_map)
        assert not torch.allclose(
            class_name(x, ["bottle", "wood"]).anomaly_map, reference.anomaly_map
        )
