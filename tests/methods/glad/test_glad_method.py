"""The GLAD method: forward shapes, the stopping-step record, and every option changing the
computation."""

from __future__ import annotations

import logging

import pytest
import torch
from glad_helpers import PIXEL_PRESET, PIXELS, SIZE, images, objects, tiny

from adbench.methods.glad import GLAD


# -- the method --------------------------------------------------------------------------------
def test_forward_shapes_and_stop_step_record():
    method = tiny()
    out = method(images(3))
    assert out.anomaly_map.shape == (3, 1, SIZE, SIZE) and out.score.shape == (3,)
    assert torch.isfinite(out.anomaly_map).all()
    trajectory = {t for t, _ in method.model.ddim_trajectory()}
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


@pytest.mark.parametrize(
    "space, key, value",
    [
        *[
            ("features", key, value)
            for key, value in [
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
            ]
        ],
        *[
            ("pixels", key, value)
            for key, value in [
                ("sampler.feature_size", 64),
                ("sampler.ads_input", "raw"),
                ("scoring.feature_size", 48),
                ("scoring.bidirectional", True),
                ("scoring.search_radius", 1),
                ("scoring.pixel_weight", 0.0),
                ("autoencoder.size", 16),
                ("autoencoder.patch_size", 4),
            ]
        ],
    ],
)
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
    method = tiny(**{"training.self_source_share": share, "training.synthesis.probability": 1.0})
    x = images(4)
    torch.manual_seed(0)
    got = method.synthesize(x)
    torch.manual_seed(0)
    expected = (method.self_synthesizer if share == 1.0 else method.synthesizer)(x)[0]
    torch.testing.assert_close(got, expected)
