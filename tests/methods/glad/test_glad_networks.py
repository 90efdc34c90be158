"""GLAD networks: classifier-free guidance, the latent and feature codecs, and loading diffusers
components from a local folder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from glad_helpers import FEATURES, SIZE, images, small_conditional_unet, tiny
from torch import nn

from adbench.backbones import load_diffusers_component
from adbench.errors import WeightsNotFoundError
from adbench.methods.glad.networks import Denoiser, FeatureCodec, LatentCodec, guide
from adbench.methods.glad.scoring import multi_level_map, nn_discrepancy


# -- networks ----------------------------------------------------------------------------------
def test_guidance_formula():
    u, c = torch.tensor([1.0]), torch.tensor([3.0])
    torch.testing.assert_close(guide(u, c, 9.0), torch.tensor([19.0]))  # 1 + 9 * (3 - 1)
    torch.testing.assert_close(guide(u, c, 1.0), c)


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
        torch.testing.assert_close(
            guided(x, t, guided=True), eps_u + 9 * (eps_c - eps_u), rtol=1e-4, atol=1e-4
        )


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
    torch.testing.assert_close(
        on_coarse.levels(z)[0], F.layer_norm(down.transpose(1, -1), (2,)).transpose(1, -1)
    )


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
    expected = multi_level_map(
        model.codec.levels(z), model.codec.levels(z_other), size, radius=cfg.search_radius
    )
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
    by_hand = sum(
        F.interpolate(
            nn_discrepancy(f_in, f_gen, radius=r), size=size, mode="bilinear", align_corners=False
        )
        for f_in, f_gen, r in zip(
            model.codec.levels(z), model.codec.levels(z_other), (0, None, 0), strict=True
        )
    )
    torch.testing.assert_close(per_level.anomaly_map(x, z_other), by_hand)
    torch.testing.assert_close(
        model.anomaly_map(x, z_other, input_latents=rec.input_latents), expected
    )


def save_small_sd_folder(root) -> None:
    """A random SD-like diffusers folder (vae/, unet/) to exercise the loading path."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    ).save_pretrained(root / "vae")
    small_conditional_unet().save_pretrained(root / "unet")


def test_load_diffusers_component_from_a_local_folder(tmp_path):
    from diffusers import UNet2DConditionModel

    save_small_sd_folder(tmp_path)
    loaded = load_diffusers_component(UNet2DConditionModel, str(tmp_path), "unet")
    for a, b in zip(
        loaded.state_dict().values(), small_conditional_unet().state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b)
    with pytest.raises(WeightsNotFoundError, match=r"text_encoder.*denoiser\.weights"):
        load_diffusers_component(
            UNet2DConditionModel, str(tmp_path), "text_encoder", setting="denoiser.weights"
        )


def test_sd_vae_codec_from_a_local_folder_changes_the_diffusion_space(tmp_path):
    save_small_sd_folder(tmp_path)
    method = tiny(
        **{
            "autoencoder.kind": "sd_vae",
            "autoencoder.weights": str(tmp_path),
            "autoencoder.size": 32,
            "autoencoder.scaling_factor": 0.18215,
            "autoencoder.patch_size": 1,
            "scoring.pixel_weight": 0.0,
        }
    )
    assert method.model.codec.encode(images()).shape == (2, 4, 16, 16)  # 4 channels, one /2
    assert method.model.denoiser.unet.config.in_channels == 4
    out = method(images())
    assert out.anomaly_map.shape == (2, 1, SIZE, SIZE) and torch.isfinite(out.score).all()
