"""GLAD: losses and scoring rules against hand-worked references from the paper's equations,
module shapes, adaptive stopping and fusion, every config option, the paper preset offline, and
learning on the built-in synthetic data.

References: Yao et al., ECCV 2024, arXiv:2406.07487 (and the authors' public code for the test
settings the paper leaves to it).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures.learning import FixedBatchLoss, synthetic_task
from torch import nn

import adbench
from adbench.backbones import load_diffusers_component
from adbench.batch import Batch
from adbench.diffusion import NoiseSchedule, ScheduleConfig
from adbench.errors import AdbenchError, ConfigError, WeightsNotFoundError
from adbench.methods.glad import GLAD, GLADConfig
from adbench.methods.glad.categories import bidirectional_flags, foreground_flags
from adbench.methods.glad.config import SD_V1_4
from adbench.methods.glad.loss import atp_loss, atp_noise_target, atp_x0_target, mix_latents
from adbench.methods.glad.model import GLADModel
from adbench.methods.glad.networks import Denoiser, FeatureCodec, LatentCodec, guide
from adbench.methods.glad.scoring import (
    add_pixel_term,
    foreground_mask,
    multi_level_map,
    nn_discrepancy,
    topk_mean,
)
from adbench.methods.glad.stationarity import StationarityStats

SIZE = 32
PIXELS = {"autoencoder.kind": "identity", "autoencoder.patch_size": 1,
          "autoencoder.scaling_factor": 1.0, "scoring.pixel_weight": 0.0,
          "sampler.ads_input": "normalised"}  # latent = 2 x - 1
# the pixel-space CPU configuration (the tiny preset before the feature space; README)
PIXEL_PRESET = {"autoencoder.kind": "identity", "autoencoder.scaling_factor": 3.0,
                "autoencoder.patch_size": 2, "scoring.pixel_weight": 2.0,
                "scoring.search_radius": None, "sampler.tau": 0.2,
                "sampler.ads_input": "normalised", "scoring.stationary_threshold": None}
FEATURES = {"autoencoder.kind": "features", "autoencoder.patch_size": 1,
            "autoencoder.scaling_factor": 1.0,
            "autoencoder.grid_level": 0, "scoring.pixel_weight": 0.0,
            "scoring.search_radius": 0,
            "scoring.stationary_threshold": None}  # the EfficientNet levels as the latent


def tiny(**overrides) -> GLAD:
    """The tiny preset at 32 px with a fixed initialisation (so options are compared fairly)."""
    torch.manual_seed(0)
    return adbench.create("glad", preset="tiny", **{"data.image_size": SIZE, **overrides}).eval()


def images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# -- ATP: mix, corrected noise target, loss ----------------------------------------------------
def test_mix_latents_moves_from_normal_to_anomalous_with_the_noise_level():
    z_n, z_a = torch.zeros(3, 1, 1, 1), torch.ones(3, 1, 1, 1)
    mixed = mix_latents(z_n, z_a, torch.tensor([0, 250, 999]), num_train_timesteps=1000)
    torch.testing.assert_close(mixed.flatten(), torch.tensor([0.0, 0.25, 0.999]))


def test_atp_target_is_the_noise_that_lands_on_the_normal_latent():
    # abar = 0.64: sqrt(abar) = 0.8, sqrt(1 - abar) = 0.6; z~ = 1, z_n = 0.25, eps = 0.1
    # x_t = 0.8 * 1 + 0.6 * 0.1 = 0.86; eps* = (0.86 - 0.8 * 0.25) / 0.6 = 1.1
    abar = torch.tensor(0.64).view(1, 1, 1, 1)
    eps, z_mixed, z_normal = (torch.full((1, 1, 1, 1), v) for v in (0.1, 1.0, 0.25))
    target = atp_noise_target(eps, z_mixed, z_normal, abar, sign=1.0)
    torch.testing.assert_close(target.flatten(), torch.tensor([1.1]))
    x_t = 0.8 * z_mixed + 0.6 * eps
    torch.testing.assert_close((x_t - 0.6 * target) / 0.8, z_normal)  # its x0-estimate
    # flipped correction term: 0.1 - 0.8 * 0.75 / 0.6 = -0.9
    flipped = atp_noise_target(eps, z_mixed, z_normal, abar, sign=-1.0)
    torch.testing.assert_close(flipped.flatten(), torch.tensor([-0.9]))


def test_atp_x0_target_is_the_x0_estimate_of_the_noise_target():
    # the numbers above: the x0-estimate of eps* is z_n = 0.25; of the flipped target
    # (0.86 - 0.6 * (-0.9)) / 0.8 = 1.75 = 2 z~ - z_n
    eps, z_mixed, z_normal = (torch.full((1, 1, 1, 1), v) for v in (0.1, 1.0, 0.25))
    torch.testing.assert_close(atp_x0_target(z_mixed, z_normal, sign=1.0), z_normal)
    torch.testing.assert_close(atp_x0_target(z_mixed, z_normal, sign=-1.0).flatten(),
                               torch.tensor([1.75]))
    schedule = NoiseSchedule(ScheduleConfig(1000, "scaled_linear", 0.00085, 0.012))
    t = torch.tensor([0, 300, 999])
    z_mixed, z_normal, eps = torch.randn(3, 3, 3, 2, 2).unbind(0)
    abar = schedule.abar(t, z_mixed)
    x_t = schedule.add_noise(z_mixed, eps, t)
    for sign in (1.0, -1.0):
        noise_target = atp_noise_target(eps, z_mixed, z_normal, abar, sign)
        torch.testing.assert_close(schedule.predict_x0(x_t, noise_target, t),
                                   atp_x0_target(z_mixed, z_normal, sign), rtol=1e-4, atol=1e-4)


def test_atp_target_without_anomaly_is_the_plain_noise():
    eps, z = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(atp_noise_target(eps, z, z, torch.tensor(0.3)), eps)


def test_atp_loss_is_the_mean_squared_error():
    assert atp_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])).item() == pytest.approx(2.5)


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_training_loss_follows_the_paper_equations(prediction):
    model = tiny(**{**PIXELS, "denoiser.prediction": prediction}).model
    normal, anomalous = images(2, seed=1), images(2, seed=2)
    got = model.training_loss(normal, anomalous, torch.Generator().manual_seed(3))
    # the same draws, written out: z = 2x - 1 (pixel space), t ~ U{0..T-1}, eps ~ N(0, I)
    generator = torch.Generator().manual_seed(3)
    z_n, z_a = normal * 2 - 1, anomalous * 2 - 1
    t = torch.randint(0, 1000, (2,), generator=generator)
    eps = torch.randn(z_n.shape, generator=generator)
    abar = model.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
    alpha = (t / 1000).view(-1, 1, 1, 1)
    z_mixed = alpha * z_a + (1 - alpha) * z_n
    x_t = abar.sqrt() * z_mixed + (1 - abar).sqrt() * eps
    target = (x_t - abar.sqrt() * z_n) / (1 - abar).sqrt() if prediction == "eps" else z_n
    with torch.no_grad():
        expected = ((model.denoiser(x_t, t) - target) ** 2).mean()
    torch.testing.assert_close(got.detach(), expected, rtol=1e-4, atol=1e-5)


def test_x0_prediction_derives_the_noise_estimate_from_the_clean_latent():
    model = tiny(**{**PIXELS, "denoiser.prediction": "x0"}).model
    x_t, t = torch.randn(2, 3, SIZE, SIZE), torch.tensor([100, 650])
    abar = model.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        x0_hat = model.denoiser(x_t, t)
        torch.testing.assert_close(model.predict_noise(x_t, t),
                                   (x_t - abar.sqrt() * x0_hat) / (1 - abar).sqrt())
    eps_model = tiny(**{**PIXELS, "denoiser.prediction": "eps"}).model
    with torch.no_grad():
        torch.testing.assert_close(eps_model.predict_noise(x_t, t), eps_model.denoiser(x_t, t))


def test_training_step_uses_the_synthesizer_and_backpropagates_into_the_denoiser_only():
    method = tiny().train()
    batch = adbench.Batch(image=images(4), mask=torch.zeros(4, 1, SIZE, SIZE),
                          label=torch.zeros(4, dtype=torch.long),
                          category=torch.zeros(4, dtype=torch.long), index=torch.arange(4))
    calls = []
    for name in ("synthesizer", "self_synthesizer"):
        original = getattr(method, name)
        setattr(method, name, lambda x, g=None, name=name, original=original, **_: (
            calls.append(name) or original(x, g)))
    method.training_step(batch, 0).backward()
    assert calls == ["synthesizer", "self_synthesizer"]
    assert all(p.grad is not None for p in method.model.denoiser.parameters())
    assert all(p.grad is None for p in method.model.features.parameters())


# -- scoring rules -----------------------------------------------------------------------------
def as_map(vectors: list[list[float]]) -> torch.Tensor:
    """Feature vectors of one image laid out in a 1 x N row: (1, C, 1, N)."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, -1, 1, len(vectors))


def test_nn_discrepancy_matches_hand_computation():
    query = as_map([[1, 0], [0, 1]])
    reference = as_map([[2, 0], [1, 1]])  # scale must not matter (cosine)
    got = nn_discrepancy(query, reference).flatten()
    # q1 matches r1 exactly; q2: min(1 - 0, 1 - 1/sqrt(2))
    torch.testing.assert_close(got, torch.tensor([0.0, 1 - 1 / math.sqrt(2)]))


def test_nn_discrepancy_searches_all_positions():
    query = torch.randn(2, 8, 4, 4)
    shuffled = query.flatten(2)[:, :, torch.randperm(16)].view(2, 8, 4, 4)
    assert nn_discrepancy(query, shuffled).abs().max() < 1e-5


def test_nn_discrepancy_bidirectional_averages_both_directions():
    query = as_map([[1, 0], [1, 0]])
    reference = as_map([[1, 0], [0, 1]])
    # query -> reference: [0, 0]; reference -> query: [0, 1] (r2 has no match); mean: [0, 0.5]
    torch.testing.assert_close(nn_discrepancy(query, reference).flatten(), torch.zeros(2))
    torch.testing.assert_close(nn_discrepancy(query, reference, bidirectional=True).flatten(),
                               torch.tensor([0.0, 0.5]))


def test_nn_discrepancy_radius_restricts_the_search_to_a_window():
    # a part at column 0 of the input is at column 2 of the reference; the rest is background
    part, background = [1.0, 0.0], [0.0, 1.0]
    query = as_map([part, background, background, background])
    reference = as_map([background, background, part, background])
    torch.testing.assert_close(nn_discrepancy(query, reference).flatten(), torch.zeros(4))
    # same position: the part's cell and the cell where the reference has it differ (1 - cos 0)
    torch.testing.assert_close(nn_discrepancy(query, reference, radius=0).flatten(),
                               torch.tensor([1.0, 0.0, 1.0, 0.0]))
    # within one cell: column 0 sees columns 0-1, both background; column 2 finds background
    torch.testing.assert_close(nn_discrepancy(query, reference, radius=1).flatten(),
                               torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(nn_discrepancy(query, reference, radius=2).flatten(),
                               torch.zeros(4))
    # a window is square: a two-row map searches the other row too
    two_rows = torch.randn(1, 4, 2, 3, generator=torch.Generator().manual_seed(0))
    swapped = two_rows.flip(2)
    assert nn_discrepancy(two_rows, swapped, radius=1).abs().max() < 1e-5
    assert nn_discrepancy(two_rows, swapped, radius=0).min() > 0


def test_topk_mean():
    maps = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    assert topk_mean(maps, 10).item() == pytest.approx(np.mean(np.arange(7, 17)))
    assert topk_mean(maps, 100).item() == pytest.approx(8.5)  # k capped at the 16 positions


def test_multi_level_map_sums_upsampled_levels():
    a = as_map([[1, 0], [0, 1]])  # level 1, discrepancy [0, 1]
    fine = torch.ones(1, 3, 2, 2)
    far = torch.cat([torch.ones(1, 1, 2, 2), -torch.ones(1, 2, 2, 2)], 1)  # cos = -1/3
    level2 = multi_level_map([fine], [far], (4, 4))
    torch.testing.assert_close(level2, torch.full((1, 1, 4, 4), 1 + 1 / 3))
    two = multi_level_map([a[..., :1], fine], [a[..., :1], far], (4, 4))
    torch.testing.assert_close(two, level2)  # a zero level adds nothing


def test_multi_level_map_takes_one_search_radius_per_level():
    # two rows swapped: a match exists one cell away but not at the same cell
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 2, 1).expand(1, 2, 2, 2)
    swapped = rows.flip(2)
    same_cell = 1.0  # orthogonal features at every position: 1 - cos = 1
    per_level = multi_level_map([rows, rows], [swapped, swapped], (2, 2), radius=[None, 0])
    torch.testing.assert_close(per_level, torch.full((1, 1, 2, 2), 0.0 + same_cell))
    torch.testing.assert_close(multi_level_map([rows, rows], [swapped, swapped], (2, 2),
                                               radius=[0, 0]),
                               multi_level_map([rows, rows], [swapped, swapped], (2, 2), radius=0))
    with pytest.raises(ValueError):
        multi_level_map([rows, rows], [swapped, swapped], (2, 2), radius=[None])


def test_pixel_term_rescales_l1_to_the_feature_range():
    maps = torch.tensor([[0.5, 2.0]]).view(1, 1, 1, 2)
    x = torch.zeros(1, 3, 1, 2)
    rec = torch.tensor([0.25, 0.5]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    # d = [0.25, 0.5]; max(maps) / max(d) = 4; maps + 2 * 4 * d = [2.5, 6.0]
    got = add_pixel_term(maps, x, rec, weight=2.0)
    torch.testing.assert_close(got.flatten(), torch.tensor([2.5, 6.0]))
    assert add_pixel_term(maps, x, rec, weight=0.0) is maps


@pytest.mark.parametrize("object_value, background_value", [(0.1, 0.9), (0.9, 0.1)])
def test_foreground_mask_finds_the_object_on_either_background(object_value, background_value):
    image = torch.full((1, 3, 64, 64), background_value)
    image[..., 24:40, 24:40] = object_value
    mask = foreground_mask(image, sigma=1.0)
    assert mask[0, 0, 32, 32] > 0.99 and mask[0, 0, 0, 0] < 0.01


def test_image_score_is_the_mean_of_the_top_250_pixels_at_256():
    config = GLADConfig()
    maps = torch.rand(1, 1, 256, 256)
    method_scoring = dataclasses.replace(config.scoring, sigma=0.0)
    from adbench.contract import pool_scores

    got = pool_scores(maps, method_scoring.pooling, method_scoring.topk_fraction)
    expected = maps.flatten().sort(descending=True).values[:250].mean()
    torch.testing.assert_close(got, expected.view(1))


# -- networks ----------------------------------------------------------------------------------
def test_guidance_formula():
    u, c = torch.tensor([1.0]), torch.tensor([3.0])
    torch.testing.assert_close(guide(u, c, 9.0), torch.tensor([19.0]))  # 1 + 9 * (3 - 1)
    torch.testing.assert_close(guide(u, c, 1.0), c)


def small_conditional_unet() -> nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
        norm_num_groups=4, attention_head_dim=2)


def test_conditional_denoiser_guidance_changes_inference_only():
    unet = small_conditional_unet()
    prompt, empty = torch.randn(1, 5, 16), torch.randn(1, 5, 16)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([500, 500])
    plain = Denoiser(unet, prompt, empty, guidance_scale=1.0)
    guided = Denoiser(unet, prompt, empty, guidance_scale=9.0)
    with torch.no_grad():
        eps_c = unet(x, t, encoder_hidden_states=prompt.expand(2, -1, -1)).sample
        eps_u = unet(x, t, encoder_hidden_states=empty.expand(2, -1, -1)).sample
        torch.testing.assert_close(plain(x, t, guided=True), eps_c)
        torch.testing.assert_close(guided(x, t, guided=False), eps_c)  # training: prompt only
        torch.testing.assert_close(guided(x, t, guided=True), eps_u + 9 * (eps_c - eps_u),
                                   rtol=1e-4, atol=1e-4)


def small_clip_config() -> dict:
    """A 1-layer CLIP text encoder with 16-dim states (the small UNet's cross-attention width)
    over byte tokens (ids 0..255, start 256, end 257), 32 tokens long."""
    return {"vocab_size": 258, "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32,
            "bos_token_id": 256, "eos_token_id": 257, "pad_token_id": 257}


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
        expected = clip(byte_tokens(["a photo of sksbottle", "a photo of skswood"], 256, 257,
                                    32))[0]
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
            alone = guided(x[i:i + 1], t[i:i + 1], guided=True, context=context[i:i + 1])
            torch.testing.assert_close(got[i:i + 1], alone, rtol=1e-4, atol=1e-4)
        plain = Denoiser(unet, prompt, empty, guidance_scale=1.0)
        torch.testing.assert_close(plain(x, t, guided=True, context=context), eps_c)


def small_sd_config(part: str) -> dict:
    """Small stand-ins for the shipped SD v1.4 configurations (mechanics mode in seconds)."""
    return {
        "unet": dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                     layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                     norm_num_groups=4, attention_head_dim=2),
        "vae": dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                    up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                    norm_num_groups=4, sample_size=32),
        "text_encoder": small_clip_config(),
    }[part]


def small_paper(monkeypatch, **overrides) -> GLAD:
    """The paper preset's code path (SD VAE, conditional UNet with CFG 9, CLIP prompts) in
    mechanics mode with small SD configurations, EfficientNet features, 32 px, 3 DDIM steps."""
    import adbench.methods.glad.networks as networks

    monkeypatch.setattr(networks, "sd_config", small_sd_config)
    config = adbench.resolve_config("glad", "paper", {
        "data.image_size": SIZE, "autoencoder.size": SIZE, "sampler.steps": 3,
        "scoring.feature_size": SIZE, **overrides})
    config = dataclasses.replace(config, random_weights=True,
                                 features=adbench.resolve_config("glad", "tiny").features)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        return GLAD(config).eval()


def test_class_name_prompts_condition_each_test_image_with_cfg(monkeypatch):
    method = small_paper(monkeypatch)
    denoiser = method.model.denoiser
    x = objects()
    seen = []
    original = denoiser.unet.forward
    monkeypatch.setattr(denoiser.unet, "forward", lambda *a, **k: (
        seen.append(k["encoder_hidden_states"]) or original(*a, **k)))
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
        alone = [method(x[i:i + 1], [name]) for i, name in enumerate(["bottle", "wood"])]
        swapped = method(x[:1], ["wood"])
    torch.testing.assert_close(both.score, torch.cat([a.score for a in alone]),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(both.anomaly_map, torch.cat([a.anomaly_map for a in alone]),
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(swapped.anomaly_map, alone[0].anomaly_map)  # the prompt matters
    # in the evaluation loops the names come from the datamodule through the contract
    method._trainer = types.SimpleNamespace(datamodule=types.SimpleNamespace(
        categories=["bottle", "wood"]))
    batch = Batch(x, torch.zeros(2, 1, SIZE, SIZE), torch.zeros(2, dtype=torch.long),
                  torch.tensor([0, 1]), torch.arange(2))
    with torch.no_grad():
        torch.testing.assert_close(method.score(batch).score, both.score)


def test_fixed_test_prompt_keeps_the_training_prompt(monkeypatch):
    fixed = small_paper(monkeypatch, **{"denoiser.test_prompt": "fixed"})
    assert fixed.model.denoiser.class_prompts is None
    class_name = small_paper(monkeypatch)  # the same initialisation
    x = objects()
    with torch.no_grad():
        reference = class_name(x)  # no category names: the fixed prompt
        torch.testing.assert_close(fixed(x, ["bottle", "wood"]).anomaly_map,
                                   reference.anomaly_map)
        torch.testing.assert_close(fixed(x).anomaly_map, reference.anomaly_map)
        assert not torch.allclose(class_name(x, ["bottle", "wood"]).anomaly_map,
                                  reference.anomaly_map)


def test_codec_pixel_space_round_trip_and_scaling():
    codec = LatentCodec(None, scaling_factor=0.5, size=16)
    x = torch.rand(2, 3, 16, 16)
    z = codec.encode(x)
    torch.testing.assert_close(z, (x * 2 - 1) * 0.5)
    torch.testing.assert_close(codec.decode(z), x)
    assert LatentCodec(None, 1.0, size=8).encode(x).shape == (2, 3, 8, 8)


def test_codec_space_to_depth_is_lossless():
    codec = LatentCodec(None, scaling_factor=1.0, size=None, patch_size=4)
    x = torch.rand(2, 3, 16, 16)
    z = codec.encode(x)
    assert z.shape == (2, 48, 4, 4)
    # channel (c, i, j) of latent cell (u, v) holds pixel (4u + i, 4v + j) of channel c
    torch.testing.assert_close(z[1, 2 * 16 + 1 * 4 + 3, 2, 1], x[1, 2, 9, 7] * 2 - 1)
    torch.testing.assert_close(codec.decode(z), x)


class FixedLevels(nn.Module):
    """A stand-in feature extractor: returns the same two levels for any input."""

    def __init__(self, levels: list[torch.Tensor]) -> None:
        super().__init__()
        self.fixed = levels
        self.channels = [f.shape[1] for f in levels]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.fixed


def test_feature_codec_stacks_standardised_levels_on_one_grid():
    g = torch.Generator().manual_seed(0)
    fine = torch.randn(1, 2, 4, 4, generator=g) * 3 + 1
    coarse = torch.randn(1, 3, 2, 2, generator=g)
    codec = FeatureCodec(FixedLevels([fine, coarse]), grid_level=0, scaling_factor=2.0)
    z = codec.encode(torch.zeros(1, 3, 16, 16))
    assert z.shape == (1, 5, 4, 4)
    up = F.interpolate(coarse, size=(4, 4), mode="bilinear", align_corners=False)
    for got, level in zip(codec.levels(z), (fine, up), strict=True):
        mean = level.mean(dim=1, keepdim=True)
        var = level.var(dim=1, unbiased=False, keepdim=True)
        torch.testing.assert_close(got, (level - mean) / torch.sqrt(var + 1e-5))  # LayerNorm
    torch.testing.assert_close(z[:, :2], 2.0 * codec.levels(z)[0])  # the scaling factor
    on_coarse = FeatureCodec(FixedLevels([fine, coarse]), grid_level=1, scaling_factor=1.0)
    z = on_coarse.encode(torch.zeros(1, 3, 16, 16))
    assert z.shape == (1, 5, 2, 2)
    down = fine.unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-1, -2))  # 2 x 2 cell averages
    torch.testing.assert_close(on_coarse.levels(z)[0],
                               F.layer_norm(down.transpose(1, -1), (2,)).transpose(1, -1))


@torch.no_grad()
def test_feature_space_compares_the_latents_own_levels():
    model = tiny(**FEATURES).model
    assert model.in_feature_space and model.codec.extractor is model.features
    x, other = images(2, seed=1), images(2, seed=2)
    z, z_other = model.codec.encode(x), model.codec.encode(other)
    # the latent grid is level 0's (stride 4) with all levels' channels
    assert z.shape == (2, sum(model.features.channels), SIZE // 4, SIZE // 4)
    # ADS: the nearest-neighbour discrepancy of the sampler's level of the two latents
    expected = nn_discrepancy(model.codec.levels(z)[-1], model.codec.levels(z_other)[-1])
    torch.testing.assert_close(model.ads_discrepancy(z, z_other), expected)
    # scoring: every level of the input's latent against the reconstruction's
    cfg = model.scoring
    size = (cfg.feature_size,) * 2
    expected = multi_level_map(model.codec.levels(z), model.codec.levels(z_other), size,
                               radius=cfg.search_radius)
    torch.testing.assert_close(model.anomaly_map(x, z_other), expected)
    assert model.anomaly_map(x, z).abs().max() < 1e-5  # a perfect reconstruction scores 0
    rec = model.reconstruct(x, seed=0)
    assert rec.images is None and rec.latents.shape == z.shape
    torch.testing.assert_close(rec.input_latents, z)  # encoded once, reused by the scoring
    # global_weight blends the same-cell map with the search over all positions
    blended = tiny(**FEATURES, **{"scoring.global_weight": 0.25}).model
    anywhere = multi_level_map(model.codec.levels(z), model.codec.levels(z_other), size)
    torch.testing.assert_close(blended.anomaly_map(x, z_other), 0.75 * expected + 0.25 * anywhere)
    # one search radius per level: each level's own window, summed at the scoring size
    per_level = tiny(**{**FEATURES, "scoring.search_radius": [0, None, 0]}).model
    assert per_level.scoring.search_radius == (0, None, 0)
    by_hand = sum(F.interpolate(nn_discrepancy(f_in, f_gen, radius=r), size=size,
                                mode="bilinear", align_corners=False)
                  for f_in, f_gen, r in zip(model.codec.levels(z), model.codec.levels(z_other),
                                            (0, None, 0), strict=True))
    torch.testing.assert_close(per_level.anomaly_map(x, z_other), by_hand)
    torch.testing.assert_close(model.anomaly_map(x, z_other, input_latents=rec.input_latents),
                               expected)


def save_small_sd_folder(root) -> None:
    """A random SD-like diffusers folder (vae/, unet/) to exercise the loading path."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                  norm_num_groups=4, sample_size=32).save_pretrained(root / "vae")
    small_conditional_unet().save_pretrained(root / "unet")


def test_load_diffusers_component_from_a_local_folder(tmp_path):
    from diffusers import UNet2DConditionModel

    save_small_sd_folder(tmp_path)
    loaded = load_diffusers_component(UNet2DConditionModel, str(tmp_path), "unet")
    for a, b in zip(loaded.state_dict().values(), small_conditional_unet().state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(WeightsNotFoundError, match=r"text_encoder.*denoiser\.weights"):
        load_diffusers_component(UNet2DConditionModel, str(tmp_path), "text_encoder",
                                 setting="denoiser.weights")


def test_sd_vae_codec_from_a_local_folder_changes_the_diffusion_space(tmp_path):
    save_small_sd_folder(tmp_path)
    method = tiny(**{"autoencoder.kind": "sd_vae", "autoencoder.weights": str(tmp_path),
                     "autoencoder.size": 32, "autoencoder.scaling_factor": 0.18215,
                     "autoencoder.patch_size": 1, "scoring.pixel_weight": 0.0})
    assert method.model.codec.encode(images()).shape == (2, 4, 16, 16)  # 4 channels, one /2
    assert method.model.denoiser.unet.config.in_channels == 4
    out = method(images())
    assert out.anomaly_map.shape == (2, 1, SIZE, SIZE) and torch.isfinite(out.score).all()


# -- ADS and SAFF ------------------------------------------------------------------------------
class OracleDenoiser(nn.Module):
    """Predicts the noise that makes x0 = ``targets`` (per sample) at every step."""

    def __init__(self, schedule: NoiseSchedule, targets: torch.Tensor) -> None:
        super().__init__()
        self.schedule = schedule
        self.targets = targets

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, guided: bool = False,
                context: torch.Tensor | None = None) -> torch.Tensor:
        return self.schedule.predict_eps(x_t, self.targets, t)


def oracle_model(targets: torch.Tensor, **sampler) -> GLADModel:
    base = tiny(**PIXELS).model
    config = dataclasses.replace(base.sampler, **sampler)
    return GLADModel(base.codec, OracleDenoiser(base.schedule, targets), base.schedule,
                     base.features, config, base.scoring)


def test_ads_stops_samples_at_different_steps_within_one_batch():
    x = images(2, seed=4)
    z0 = x * 2 - 1
    changed = z0.clone()
    changed[1, :, 8:24, 8:24] = -z0[1, :, 8:24, 8:24]  # sample 1 generates something else
    settings = {"t_max": 400, "steps": 5, "tau": 0.01, "min_step": 150, "spacing": "linspace"}
    model = oracle_model(changed, **settings)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
    result = model.reconstruct(x, noise=noise)
    # trajectory 400, 300, 200, 100, 0: at t = 400 both x0-estimates coincide (same x_t), so
    # sample 1 stops at 300 with s > tau; sample 0 (x0_gen = input) waits for t < min_step
    assert result.stop_steps.tolist() == [100, 300]
    assert result.stop_scores[1] > 0.01 >= result.stop_scores[0]
    # batched decisions equal the per-sample ones
    for i in range(2):
        single = oracle_model(changed[i:i + 1], **settings)
        alone = single.reconstruct(x[i:i + 1], noise=noise[i:i + 1])
        assert alone.stop_steps.item() == result.stop_steps[i].item()
        torch.testing.assert_close(alone.images, result.images[i:i + 1], rtol=1e-4, atol=1e-4)


def test_leading_spacing_makes_the_first_ads_check_count():
    x = images(2, seed=4)
    changed = x * 2 - 1
    changed[1, :, 8:24, 8:24] = -changed[1, :, 8:24, 8:24]
    model = oracle_model(changed, t_max=400, steps=5, tau=0.01, min_step=150)
    assert model.sampler.spacing == "leading" and model.sampler.noise_step == 399
    # noised at 399; ratio 400 // 5 = 80 and offset 1: steps 321, 241, 161, 81, 1. The first
    # step is below the noising step, so x0_in differs from x0_gen there (s > 0) and both
    # samples can stop at once; with linspace the first step is the noising step, x0_in equals
    # x0_gen, s = 0 and nobody stops there
    assert [t for t, _ in model.schedule.ddim_timesteps(399, 5, "leading")] == [
        321, 241, 161, 81, 1]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    first = model.reconstruct(x, noise=noise)
    assert first.stop_steps.tolist() == [321, 321] and (first.stop_scores > 0.01).all()
    linspace = oracle_model(changed, t_max=400, steps=5, tau=0.01, min_step=150,
                            spacing="linspace")
    assert 400 not in linspace.reconstruct(x, noise=noise).stop_steps.tolist()


def test_ddim_timesteps_leading_is_diffusers_spacing_with_offset():
    schedule = tiny().model.schedule
    official = [625 - 26 * k for k in range(25)]  # GLAD, MVTec AD: 650 training steps, 25
    pairs = schedule.ddim_timesteps(649, 25, "leading")
    assert [t for t, _ in pairs] == official and official[-1] == 1
    assert [p for _, p in pairs] == [*official[1:], -1]
    assert [t for t, _ in schedule.ddim_timesteps(200, 5)] == [200, 150, 100, 50, 0]
    with pytest.raises(ValueError, match="leading spacing"):
        schedule.ddim_timesteps(3, 5, "leading")
    with pytest.raises(ValueError, match="spacing must be"):
        schedule.ddim_timesteps(200, 5, "trailing")


@torch.no_grad()
def test_ads_input_raw_feeds_the_unclamped_decodes_without_normalisation():
    model = tiny(**{**PIXELS, "sampler.ads_input": "raw"}).model
    z0 = images(1, seed=5) * 2 - 1
    x0_gen = 1.5 * z0  # outside [-1, 1]: clamping would change it
    raw = [model.features.model(z)[-1] for z in (z0, x0_gen)]
    expected = nn_discrepancy(*raw)
    torch.testing.assert_close(model.ads_discrepancy(z0, x0_gen), expected)
    normalised = tiny(**{**PIXELS, "sampler.ads_input": "normalised"}).model
    assert not torch.allclose(normalised.ads_discrepancy(z0, x0_gen), expected)
    assert GLADConfig().sampler.ads_input == "raw"  # the official inputs by default


def test_official_category_lists_decide_foreground_and_bidirectional():
    names = ["bottle", "mvtec/hazelnut", "carpet", "transistor", "synthetic_000"]
    assert foreground_flags(names, default=True) == [True, True, False, False, True]
    assert foreground_flags(names, default=False) == [True, True, False, False, False]
    assert bidirectional_flags(names, default=False) == [False, False, False, True, False]


@torch.no_grad()
def test_per_image_scoring_flags_equal_the_per_config_maps():
    # pixel space (both directions coincide at the tiny preset's search radius 0)
    def pixels(**overrides) -> GLAD:
        return tiny(**{**PIXEL_PRESET, **overrides})

    x, rec = images(2, seed=1), images(2, seed=2)
    model = pixels().model
    maps = model.anomaly_map(x, rec, torch.tensor([True, False]), torch.tensor([False, True]))
    masked = pixels(**{"scoring.foreground": True}).model.anomaly_map(x[:1], rec[:1])
    both = pixels(**{"scoring.bidirectional": True}).model.anomaly_map(x[1:], rec[1:])
    torch.testing.assert_close(maps, torch.cat([masked, both]))
    # the official lists: bottle gets the object mask, transistor both NN directions (each
    # image's reconstruction does not depend on its batch)
    official = pixels()(x, ["bottle", "transistor"]).anomaly_map
    torch.testing.assert_close(official[:1], pixels(**{"scoring.foreground": True})(x[:1])
                               .anomaly_map, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(official[1:], pixels(**{"scoring.bidirectional": True})(x[1:])
                               .anomaly_map, rtol=1e-4, atol=1e-4)
    plain = pixels(**{"scoring.per_category": "config"})
    torch.testing.assert_close(plain(x, ["bottle", "transistor"]).anomaly_map, plain(x).anomaly_map)


def reference_stationarity(z: np.ndarray) -> float:
    """The ratio of `StationarityStats` for latents (N, C, h, w), straight from its formula."""
    per_position = z.var(axis=0).mean()
    total = z.transpose(1, 0, 2, 3).reshape(z.shape[1], -1).var(axis=1).mean()
    return float(per_position / total)


def test_stationarity_ratio_is_the_share_of_variance_left_per_position():
    # by hand, one channel and two positions: swapped values vary only per position (r = 1),
    # repeated values only across positions (r = 0)
    swapped = torch.tensor([[0.0, 2.0], [2.0, 0.0]]).view(2, 1, 1, 2)
    stats = StationarityStats()
    stats.update(swapped, torch.zeros(2, dtype=torch.long), 2)
    stats.update(swapped[:1].expand(2, 1, 1, 2), torch.ones(2, dtype=torch.long), 2)
    torch.testing.assert_close(stats.ratios(), torch.tensor([1.0, 0.0], dtype=torch.float64))
    # random latents streamed in mixed batches while the category count grows from 2 to 3
    # (category 1 has no images)
    rng = np.random.default_rng(0)
    aligned = rng.normal(size=(10, 3, 4, 5)) + 3 * rng.normal(size=(1, 3, 4, 5))
    texture = rng.normal(size=(7, 3, 4, 5))
    stats = StationarityStats()
    stats.update(torch.from_numpy(aligned[:4]), torch.zeros(4, dtype=torch.long), 2)
    stats.update(torch.from_numpy(np.concatenate([aligned[4:], texture[:3]])),
                 torch.tensor([0] * 6 + [2] * 3), 3)
    stats.update(torch.from_numpy(texture[3:]), torch.full((4,), 2), 3)
    ratios = stats.ratios()
    assert ratios[0].item() == pytest.approx(reference_stationarity(aligned), rel=1e-9)
    assert ratios[2].item() == pytest.approx(reference_stationarity(texture), rel=1e-9)
    assert math.isnan(ratios[1].item()) and ratios[0] < 0.2 < 0.8 < ratios[2]
    stats.reset()
    assert stats.ratios().numel() == 0


@torch.no_grad()
def test_stationary_categories_are_scored_with_their_own_search_radius():
    model = tiny(**{**FEATURES, "scoring.stationary_threshold": 0.5}).model
    x, other = images(2, seed=1), images(2, seed=2)
    z, z_other = model.codec.encode(x), model.codec.encode(other)
    size = (model.scoring.feature_size,) * 2
    maps = model.anomaly_map(x, z_other, stationary=torch.tensor([True, False]))
    levels, levels_other = model.codec.levels(z), model.codec.levels(z_other)
    for i, radius in ((0, None), (1, 0)):  # stationary: all positions; the other: the same cell
        by_hand = sum(F.interpolate(nn_discrepancy(f[i:i + 1], g[i:i + 1], radius=radius),
                                    size=size, mode="bilinear", align_corners=False)
                      for f, g in zip(levels, levels_other, strict=True))
        torch.testing.assert_close(maps[i:i + 1], by_hand)
    # training hands the normal latents to the statistics without a second encoding
    seen = []
    model.training_loss(x, other, observe=seen.append)
    torch.testing.assert_close(seen[0], z)
    # the module decides by the measured ratios, and cannot decide before it has measured them
    method = tiny(**{**FEATURES, "scoring.stationary_threshold": 0.5})
    with pytest.raises(AdbenchError, match="no category's stationarity was measured"):
        method(x, ["carpet", "bottle"])
    method.stationarity = {"carpet": 0.7, "bottle": 0.2}
    assert method.stationary_flags(["carpet", "bottle", "unseen"]).tolist() == [
        True, False, False]
    assert method.stationary_flags(None) is None
    # the ratios travel with the weights, and the run record names the stationary categories
    loaded = tiny(**{**FEATURES, "scoring.stationary_threshold": 0.5})
    loaded.load_state_dict(method.state_dict())
    assert loaded.stationarity == method.stationarity
    assert loaded.run_record()["stationary_categories"] == ["carpet"]
    assert "stationarity" not in tiny(**FEATURES).run_record()  # nothing measured
    assert "stationarity" not in tiny().run_record()  # not fitted yet


def test_synthesis_keeps_object_anomalies_on_the_foreground_only_for_object_categories():
    x = torch.full((2, 3, SIZE, SIZE), 0.9)
    x[:, :, 8:24, 8:24] = 0.1  # a dark object on a light background
    method = tiny(**{"training.synthesis.probability": 1.0, "training.synthesis.threshold": -2.0,
                     "training.synthesis.foreground": False})
    torch.manual_seed(0)
    out = method.synthesize(x, ["bottle", "carpet"])
    changed = (out != x).any(1)
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[8:24, 8:24] = False
    assert not changed[0][outside].any() and changed[1][outside].any()


def test_visa_and_mpdd_presets_are_the_official_test_settings():
    visa = adbench.resolve_config("glad", "paper-visa")
    mpdd = adbench.resolve_config("glad", "paper-mpdd")
    paper = adbench.resolve_config("glad", "paper")
    assert (visa.sampler.t_max, visa.sampler.tau, visa.sampler.min_step) == (500, 0.15, 250)
    assert visa.scoring.pixel_weight == 2.0 and mpdd.scoring.pixel_weight == 0.0
    assert (mpdd.sampler.t_max, mpdd.sampler.tau, mpdd.sampler.min_step) == (500, 0.35, 350)
    assert mpdd.trainer.max_steps == 3000 and visa.trainer.max_steps == 20_000
    # everything else is the paper preset's
    assert visa.denoiser == paper.denoiser and visa.autoencoder == paper.autoencoder
    assert paper.denoiser.gradient_checkpointing and paper.training.synthesis.augment == 3


def reference_discrepancy(model: GLADModel, x0_in: torch.Tensor, x0_gen: torch.Tensor):
    """A(p) = min_q (1 - cos(f_in(p), f_gen(q))) with explicit loops over positions."""
    f_in = model.features(model.codec.decode(x0_in))[-1][0]
    f_gen = model.features(model.codec.decode(x0_gen))[-1][0]
    _, h, w = f_in.shape
    out = torch.zeros(1, 1, h, w)
    for i in range(h):
        for j in range(w):
            out[0, 0, i, j] = min(1 - F.cosine_similarity(f_in[:, i, j], f_gen[:, a, b], dim=0)
                                  for a in range(h) for b in range(w))
    return out


@torch.no_grad()
def test_saff_fuses_generated_and_input_content_with_the_sigmoid_mask():
    model = tiny(**{**PIXELS, "sampler.tau": 0.0}).model
    z0 = images(1, seed=5) * 2 - 1
    x0_gen = z0.clone()
    x0_gen[..., 4:16, 4:16] = 0.0
    eps = torch.randn_like(z0)
    t = torch.tensor([200])
    # eps_hat = eps makes the input's x0-estimate exactly z0
    x0, stop, s = model._adapt(z0, eps, eps, x0_gen, t, 200)
    A = reference_discrepancy(model, z0, x0_gen)
    mask = torch.sigmoid(F.interpolate(A, size=(SIZE, SIZE), mode="bilinear",
                                       align_corners=False))
    assert stop.item() and s.item() > 0
    torch.testing.assert_close(x0, mask * x0_gen + (1 - mask) * z0, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_min_step_fallback_takes_the_input_anchored_estimate():
    model = tiny(**{**PIXELS, "sampler.tau": 10.0, "sampler.min_step": 300}).model
    z0 = images(1, seed=6) * 2 - 1
    x0_gen, eps = torch.zeros_like(z0), torch.randn_like(z0)
    x0, stop, _ = model._adapt(z0, eps, eps, x0_gen, torch.tensor([200]), 200)
    assert stop.item()
    torch.testing.assert_close(x0, z0, rtol=1e-5, atol=1e-5)
    x0, stop, _ = model._adapt(z0, eps, eps, x0_gen, torch.tensor([400]), 400)
    assert not stop.item()
    torch.testing.assert_close(x0, x0_gen)


# -- the method --------------------------------------------------------------------------------
def test_forward_shapes_and_stop_step_record():
    method = tiny()
    out = method(images(3))
    assert out.anomaly_map.shape == (3, 1, SIZE, SIZE) and out.score.shape == (3,)
    assert torch.isfinite(out.anomaly_map).all()
    sampler = method.config.sampler
    schedule = method.model.schedule
    trajectory = {t for t, _ in schedule.ddim_timesteps(sampler.noise_step, sampler.steps,
                                                        sampler.spacing)}
    assert set(method.last_stop_steps.tolist()) <= trajectory
    assert sum(method.stop_step_histogram().values()) == 3
    method(images(2))
    assert sum(method.stop_step_histogram().values()) == 5
    method.on_predict_epoch_start()
    assert method.stop_step_histogram() == {}


def test_stop_step_distribution_is_written_to_the_log(caplog):
    method = tiny()
    method.on_predict_epoch_start()
    method(images(3))
    with caplog.at_level(logging.INFO):
        method.on_predict_epoch_end()
    assert f"GLAD stopping timesteps {{t: images}}: {method.stop_step_histogram()}" in caplog.text


def test_forward_is_deterministic():
    method = tiny()
    torch.testing.assert_close(method(images()).score, method(images()).score)


def test_model_part_shapes():
    model = tiny(**PIXELS).model
    x = images(2)
    z = model.codec.encode(x)
    assert z.shape == (2, 3, SIZE, SIZE)
    assert model.denoiser(z, torch.tensor([10, 20])).shape == z.shape
    feats = model.features(x)
    assert [f.shape[1] for f in feats] == [24, 40, 112]
    assert [f.shape[-1] for f in feats] == [SIZE // 4, SIZE // 8, SIZE // 16]
    rec = model.reconstruct(x, seed=0)
    assert rec.images.shape == x.shape and rec.stop_steps.shape == (2,)
    side = model.scoring.feature_size  # maps are computed at the scoring size
    assert model.anomaly_map(x, rec.images).shape == (2, 1, side, side)


# -- every option changes the computation ------------------------------------------------------
def objects() -> torch.Tensor:
    """Two images of a textured object on a plain bright background."""
    x = torch.full((2, 3, SIZE, SIZE), 0.9)
    x[..., 10:22, 8:24] = images(2, seed=7)[..., 10:22, 8:24] * 0.5
    return x


def signature(method: GLAD) -> list[torch.Tensor]:
    """Reconstruction, stop steps and scores, the final anomaly map and image scores."""
    x = objects()
    rec = method.model.reconstruct(x, seed=0)
    out = method(x)
    return [rec.latents, rec.stop_steps.float(), rec.stop_scores, out.anomaly_map, out.score]


def differs(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return any(x.shape != y.shape or not torch.allclose(x, y) for x, y in zip(a, b, strict=True))


SPACES = {"features": {}, "pixels": PIXEL_PRESET}  # the tiny preset's space, and pixel space


@pytest.fixture(scope="module")
def baselines():
    return {space: signature(tiny(**overrides)) for space, overrides in SPACES.items()}


@pytest.mark.parametrize("space, key, value", [
    *[("features", key, value) for key, value in [
        ("sampler.t_max", 200),
        ("sampler.steps", 3),
        ("sampler.tau", 10.0),
        ("sampler.score_topk", 1),
        ("sampler.feature_level", 0),
        ("sampler.seed", 1),
        ("sampler.spacing", "linspace"),
        ("scoring.sigma", 0.0),
        ("scoring.search_radius", None),
        ("scoring.global_weight", 0.5),
        ("scoring.foreground", True),
        ("scoring.pooling", "max"),
        ("autoencoder.scaling_factor", 0.5),
        ("autoencoder.grid_level", 1),
        ("schedule.beta_schedule", "linear"),
        ("features.layers", [1, 2]),
        ("denoiser.block_out_channels", [16, 32, 32]),
        ("denoiser.layers_per_block", 2),
        ("denoiser.attention", False),
        ("denoiser.prediction", "eps"),
    ]],
    *[("pixels", key, value) for key, value in [
        ("sampler.feature_size", 64),
        ("sampler.ads_input", "raw"),
        ("scoring.feature_size", 48),
        ("scoring.bidirectional", True),
        ("scoring.search_radius", 1),
        ("scoring.pixel_weight", 0.0),
        ("autoencoder.size", 16),
        ("autoencoder.patch_size", 4),
    ]],
])
def test_option_changes_the_computation(space, key, value, baselines):
    assert differs(signature(tiny(**{**SPACES[space], key: value})), baselines[space])


def test_option_sampler_tau_and_min_step_decide_when_samples_stop():
    fixed = {"sampler.t_max": 300, "sampler.steps": 5, "sampler.min_step": 100}
    eager = tiny(**fixed, **{"sampler.tau": -1.0})
    patient = tiny(**fixed, **{"sampler.tau": 100.0})
    eager(images()), patient(images())
    # noised at 299, leading steps 241, 181, 121, 61, 1
    assert eager.stop_step_histogram() == {241: 2}  # every sample stops at the first step
    assert patient.stop_step_histogram() == {61: 2}  # the first t < min_step
    earlier = tiny(**{**fixed, "sampler.tau": 100.0, "sampler.min_step": 200})
    earlier(images())
    assert earlier.stop_step_histogram() == {181: 2}


def test_option_training_target_sign_and_schedule_change_the_loss():
    normal, anomalous = images(2, seed=1), images(2, seed=2)

    def loss(**overrides):
        model = tiny(**overrides).model
        return model.training_loss(normal, anomalous, torch.Generator().manual_seed(0))

    base = loss()
    assert not torch.isclose(base, loss(**{"training.target": "flipped_correction"}))
    assert not torch.isclose(base, loss(**{"schedule.beta_end": 0.02}))


def test_option_synthesis_reaches_the_synthesizers():
    method = tiny(**{"training.synthesis.threshold": 0.6})
    assert method.synthesizer.config.threshold == 0.6
    assert method.self_synthesizer.config.threshold == 0.6
    assert method.self_synthesizer.source_used == "self"
    assert method.synthesizer.source_used == "textures"


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_option_self_source_share_picks_the_fill(share):
    method = tiny(**{"training.self_source_share": share,
                     "training.synthesis.probability": 1.0})
    x = images(4)
    torch.manual_seed(0)
    got = method.synthesize(x)
    torch.manual_seed(0)
    expected = (method.self_synthesizer if share == 1.0 else method.synthesizer)(x)[0]
    torch.testing.assert_close(got, expected)


def test_option_optimiser_and_trainer_defaults_are_the_papers():
    config = GLADConfig()
    assert (config.optim.name, config.optim.lr, config.optim.weight_decay) == ("adamw", 5e-6, 1e-2)
    assert config.trainer.max_steps == 20_000 and config.trainer.gradient_clip_val == 1.0
    assert config.trainer.precision == "16-mixed" and config.data.batch_size == 32


def test_paper_defaults_are_the_specification():
    config = GLADConfig()
    assert (config.autoencoder.kind, config.autoencoder.weights) == ("sd_vae", SD_V1_4)
    assert config.autoencoder.scaling_factor == 0.18215 and config.autoencoder.size == 512
    assert (config.denoiser.kind, config.denoiser.prompt) == ("sd_unet", "a photo of sks")
    assert (config.denoiser.test_prompt, config.denoiser.class_prompt) == (
        "class_name", "a photo of sks{category}")  # official multi-class test script
    assert config.denoiser.guidance_scale == 9.0
    assert config.schedule == ScheduleConfig(1000, "scaled_linear", 0.00085, 0.012)
    assert config.features.name == "vit_base_patch8_224.dino"
    assert config.features.layers == (2, 5, 8, 11)  # blocks 3, 6, 9, 12
    sampler = config.sampler
    assert (sampler.t_max, sampler.steps, sampler.tau, sampler.min_step, sampler.score_topk) == (
        650, 25, 0.45, 350, 10)
    assert (config.scoring.sigma, config.scoring.pooling) == (6.0, "topk_mean")
    assert round(config.scoring.topk_fraction * 256 * 256) == 250
    synthesis = config.training.synthesis
    assert (synthesis.probability, synthesis.threshold, synthesis.beta) == (0.5, 0.3, (0.0, 0.8))
    assert config.training.target == "normal_x0" and config.denoiser.prediction == "eps"
    assert adbench.resolve_config("glad", "paper") == config


@pytest.mark.parametrize("key, value, message", [
    ("denoiser.guidance_scale", 9.0, "guidance_scale must be 1.0 for kind 'unet2d'"),
    ("sampler.t_max", 1000, "t_max must be in"),
    ("sampler.min_step", 0, "min_step must be >= 1"),
    ("denoiser.norm_num_groups", 5, "must divide"),
    ("denoiser.test_prompt", "class_name", "test_prompt must be 'fixed' for kind 'unet2d'"),
    ("denoiser.class_prompt", "a photo of sks", r"class_prompt must be a template .*'a photo"),
    ("denoiser.class_prompt", "a {category} {x}", r"class_prompt must be a template"),
    ("scoring.search_radius", -1, r"search_radius must be null \(all positions\), >= 0, or a"),
    ("scoring.search_radius", [0, -2, None], r"list of those per level, got \(0, -2, None\)"),
    ("scoring.search_radius", [None, 0], r"lists 2 radii for the 3 levels of .*\[1, 2, 3\]"),
    ("scoring.global_weight", 1.5, r"global_weight must be in \[0, 1\], got 1.5"),
    ("scoring.stationary_threshold", 1.2, r"stationary_threshold must be null \(off\) or in"),
    ("scoring.stationary_search_radius", -1, r"stationary_search_radius must be null"),
    ("scoring.stationary_search_radius", [0, None], r"stationary_search_radius lists 2 radii"),
])
def test_invalid_options_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        adbench.resolve_config("glad", "tiny", {key: value})


@pytest.mark.parametrize("key, value, message", [
    ("scoring.pixel_weight", 2.0, r"pixel_weight must be 0 with autoencoder.kind 'features'"),
    ("autoencoder.size", 64, r"autoencoder.size must be null with autoencoder.kind 'features'"),
    ("autoencoder.patch_size", 2, r"patch_size must be >= 1, and 1 unless kind is 'identity'"),
    ("autoencoder.grid_level", 3, r"autoencoder.grid_level 3 is not a level of .*\[1, 2, 3\]"),
    ("sampler.feature_level", -4, r"sampler.feature_level -4 is not a level"),
    ("sampler.feature_size", 32, r"sampler.feature_size and sampler.ads_input do not apply"),
    ("sampler.ads_input", "normalised", r"got None and 'normalised'"),
])
def test_feature_space_settings_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        adbench.resolve_config("glad", "tiny", {**FEATURES, key: value})


def test_an_sd_unet_needs_the_sd_latent_space():
    with pytest.raises(ConfigError, match=r"'sd_unet' .* needs autoencoder.kind 'sd_vae', got "
                                          r"'identity'"):
        adbench.resolve_config("glad", "paper", {"autoencoder.kind": "identity"})


def test_one_ddim_step_where_no_sample_stops_counts_them_at_the_end():
    # t_max 650 >= min_step and tau too high to fuse: nobody stops during the single step
    method = tiny(**{"sampler.steps": 1, "sampler.tau": 1e9, "sampler.spacing": "linspace"})
    with torch.no_grad():
        method(images(3))
    assert method.last_stop_steps.tolist() == [0, 0, 0]
    assert method.stop_step_histogram() == {0: 3}


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'sampler\.steps'"):
        adbench.resolve_config("glad", "tiny", {"sampler.stpes": 3})


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
        768, 12, 77)
    # shapes without allocating the weights: the meta device
    with torch.device("meta"):
        assert sum(p.numel() for p in UNet2DConditionModel.from_config(unet).parameters()) \
            == 859_520_964  # SD v1's UNet
        assert sum(p.numel() for p in AutoencoderKL.from_config(sd_config("vae")).parameters()) \
            == 83_653_863


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
        method = adbench.create("glad", "paper", random_weights=True, **{
            "data.image_size": 64, "autoencoder.size": 64, "sampler.steps": 3,
            "scoring.feature_size": 64})
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
    batch = Batch(images, torch.zeros(2, 1, 64, 64), torch.zeros(2, dtype=torch.long),
                  torch.zeros(2, dtype=torch.long), torch.arange(2))
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


# -- learning ----------------------------------------------------------------------------------
LEARNING_MARGIN = 0.1  # image AUROC points above the mean-image baseline


@pytest.mark.slow
def test_tiny_preset_learns_and_beats_the_naive_baseline(tmp_path):
    datamodule, naive = synthetic_task(tmp_path / "data", 3, n_train=24, n_test=32, batch_size=16)
    torch.manual_seed(0)
    method = adbench.create("glad", preset="tiny")
    train = datamodule.dataset("train")
    normal = torch.stack([train[i].image for i in range(0, len(train), 9)])
    torch.manual_seed(1)
    anomalous = method.synthesize(normal)
    fixed = FixedBatchLoss(lambda m: m.model.training_loss(
        normal, anomalous, torch.Generator().manual_seed(0)).item())
    assert method.config.trainer.max_epochs == 20  # the preset's own budget (README)
    adbench.fit(method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False,
                callbacks=[fixed])
    first, last = fixed.values
    assert last < 0.7 * first, fixed.values
    table = adbench.evaluate(method, datamodule, accelerator="cpu", devices=1,
                             enable_progress_bar=False).to_frame()
    assert table.loc["mean", "I-AUROC"] >= naive + LEARNING_MARGIN, (table.loc["mean"], naive)
    assert sum(method.stop_step_histogram().values()) == len(datamodule.dataset("test"))
    # of brick, ellipse and 6 x 2 grid, only the texture is scored as stationary
    assert set(method.stationarity) == set(datamodule.categories)
    assert method.run_record()["stationary_categories"] == ["texture_brick_000"]
