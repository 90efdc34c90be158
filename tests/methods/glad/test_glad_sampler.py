"""GLAD sampling: adaptive denoising steps (ADS), spatial-adaptive feature fusion (SAFF) and
the DDIM trajectory.

References: Yao et al., ECCV 2024, arXiv:2406.07487 (and the authors' public code for the test
settings the paper leaves to it).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from glad_helpers import PIXELS, SIZE, images, tiny
from torch import nn

from adbench.diffusion import NoiseSchedule
from adbench.methods.glad import GLADConfig
from adbench.methods.glad.model import GLADModel
from adbench.methods.glad.scoring import nn_discrepancy


# -- ADS and SAFF ------------------------------------------------------------------------------
class OracleDenoiser(nn.Module):
    """Predicts the noise that makes x0 = ``targets`` (per sample) at every step."""

    def __init__(self, schedule: NoiseSchedule, targets: torch.Tensor) -> None:
        super().__init__()
        self.schedule = schedule
        self.targets = targets

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        guided: bool = False,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.schedule.predict_eps(x_t, self.targets, t)


def oracle_model(targets: torch.Tensor, **sampler) -> GLADModel:
    base = tiny(**PIXELS).model
    config = dataclasses.replace(base.sampler, **sampler)
    return GLADModel(
        base.codec,
        OracleDenoiser(base.schedule, targets),
        base.schedule,
        base.features,
        config,
        base.scoring,
    )


def test_ads_stops_samples_at_different_steps_within_one_batch():
    x = images(2, seed=4)
    z0 = x * 2 - 1
    changed = z0.clone()
    changed[1, :, 8:24, 8:24] = -z0[1, :, 8:24, 8:24]  # sample 1 generates something else
    settings = {"t_max": 400, "steps": 5, "tau": 0.01, "min_step": 150, "spacing": "linspace"}
    settings["noise_offset"] = 0  # noised at t_max
    model = oracle_model(changed, **settings)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
    result = model.reconstruct(x, noise=noise)
    # trajectory 400, 300, 200, 100, 0: at t = 400 both x0-estimates coincide (same x_t), so
    # sample 1 stops at 300 with s > tau; sample 0 (x0_gen = input) waits for t < min_step
    assert result.stop_steps.tolist() == [100, 300]
    assert result.stop_scores[1] > 0.01 >= result.stop_scores[0]
    # batched decisions equal the per-sample ones
    for i in range(2):
        single = oracle_model(changed[i : i + 1], **settings)
        alone = single.reconstruct(x[i : i + 1], noise=noise[i : i + 1])
        assert alone.stop_steps.item() == result.stop_steps[i].item()
        torch.testing.assert_close(alone.images, result.images[i : i + 1], rtol=1e-4, atol=1e-4)


def test_leading_spacing_makes_the_first_ads_check_count():
    x = images(2, seed=4)
    changed = x * 2 - 1
    changed[1, :, 8:24, 8:24] = -changed[1, :, 8:24, 8:24]
    model = oracle_model(changed, t_max=400, steps=5, tau=0.01, min_step=150)
    assert model.sampler.spacing == "leading" and model.sampler.noise_step == 399  # tiny: 649
    # noised at 399; ratio 400 // 5 = 80 and offset 1: steps 321, 241, 161, 81, 1. The first
    # step is below the noising step, so x0_in differs from x0_gen there (s > 0) and both
    # samples can stop at once; with linspace the first step is the noising step, x0_in equals
    # x0_gen, s = 0 and nobody stops there
    assert [t for t, _ in model.schedule.ddim_timesteps(399, 5, "leading")] == [
        321,
        241,
        161,
        81,
        1,
    ]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    first = model.reconstruct(x, noise=noise)
    assert first.stop_steps.tolist() == [321, 321] and (first.stop_scores > 0.01).all()
    linspace = oracle_model(
        changed, t_max=400, steps=5, tau=0.01, min_step=150, spacing="linspace", noise_offset=0
    )
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


def reference_discrepancy(model: GLADModel, x0_in: torch.Tensor, x0_gen: torch.Tensor):
    """A(p) = min_q (1 - cos(f_in(p), f_gen(q))) with explicit loops over positions."""
    f_in = model.features(model.codec.decode(x0_in))[-1][0]
    f_gen = model.features(model.codec.decode(x0_gen))[-1][0]
    _, h, w = f_in.shape
    out = torch.zeros(1, 1, h, w)
    for i in range(h):
        for j in range(w):
            out[0, 0, i, j] = min(
                1 - F.cosine_similarity(f_in[:, i, j], f_gen[:, a, b], dim=0)
                for a in range(h)
                for b in range(w)
            )
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
    mask = torch.sigmoid(F.interpolate(A, size=(SIZE, SIZE), mode="bilinear", align_corners=False))
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


def test_one_ddim_step_where_no_sample_stops_counts_them_at_the_end():
    # t_max 650 >= min_step and tau too high to fuse: nobody stops during the single step
    method = tiny(**{"sampler.steps": 1, "sampler.tau": 1e9, "sampler.spacing": "linspace"})
    with torch.no_grad():
        method(images(3))
    assert method.last_stop_steps.tolist() == [0, 0, 0]
    assert method.stop_step_histogram() == {0: 3}
