"""GLAD configuration: the paper's defaults and official presets, and invalid options as config
errors.

References: Yao et al., ECCV 2024, arXiv:2406.07487 (and the authors' public code for the test
settings the paper leaves to it).
"""

from __future__ import annotations

import pytest
from glad_helpers import FEATURES

import adbench
from adbench.diffusion import ScheduleConfig
from adbench.errors import ConfigError
from adbench.methods.glad import GLADConfig
from adbench.methods.glad.config import SD_V1_4


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
        "class_name",
        "a photo of sks{category}",
    )  # official multi-class test script
    assert config.denoiser.guidance_scale == 9.0
    assert config.schedule == ScheduleConfig(1000, "scaled_linear", 0.00085, 0.012)
    assert config.features.name == "vit_base_patch8_224.dino"
    assert config.features.layers == (2, 5, 8, 11)  # blocks 3, 6, 9, 12
    sampler = config.sampler
    assert (sampler.t_max, sampler.steps, sampler.tau, sampler.min_step, sampler.score_topk) == (
        650,
        25,
        0.45,
        350,
        10,
    )
    assert (config.scoring.sigma, config.scoring.pooling) == (6.0, "topk_mean")
    assert round(config.scoring.topk_fraction * 256 * 256) == 250
    synthesis = config.training.synthesis
    assert (synthesis.probability, synthesis.threshold, synthesis.beta) == (0.5, 0.3, (0.0, 0.8))
    assert config.training.target == "normal_x0" and config.denoiser.prediction == "eps"
    assert adbench.resolve_config("glad", "paper") == config


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("denoiser.guidance_scale", 9.0, "guidance_scale must be 1.0 for kind 'unet2d'"),
        ("sampler.t_max", 1000, "t_max must be in"),
        ("sampler.min_step", 0, r"min_step and sampler.decode_chunk must be >= 1, got .* 0 and"),
        ("sampler.noise_offset", 651, r"noise_offset must be in \[0, t_max = 650\], got 651"),
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
    ],
)
def test_invalid_options_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        adbench.resolve_config("glad", "tiny", {key: value})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("scoring.pixel_weight", 2.0, r"pixel_weight must be 0 with autoencoder.kind 'features'"),
        ("autoencoder.size", 64, r"autoencoder.size must be null with autoencoder.kind 'features'"),
        ("autoencoder.patch_size", 2, r"patch_size must be >= 1, and 1 unless kind is 'identity'"),
        ("autoencoder.grid_level", 3, r"autoencoder.grid_level 3 is not a level of .*\[1, 2, 3\]"),
        ("sampler.feature_level", -4, r"sampler.feature_level -4 is not a level"),
        ("sampler.feature_size", 32, r"sampler.feature_size and sampler.ads_input do not apply"),
        ("sampler.ads_input", "normalised", r"got None and 'normalised'"),
    ],
)
def test_feature_space_settings_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        adbench.resolve_config("glad", "tiny", {**FEATURES, key: value})


def test_an_sd_unet_needs_the_sd_latent_space():
    with pytest.raises(
        ConfigError,
        match=r"'sd_unet' .* needs autoencoder.kind 'sd_vae', got "
        r"'identity'",
    ):
        adbench.resolve_config("glad", "paper", {"autoencoder.kind": "identity"})


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'sampler\.steps'"):
        adbench.resolve_config("glad", "tiny", {"sampler.stpes": 3})
