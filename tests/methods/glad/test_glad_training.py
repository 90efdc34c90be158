"""GLAD training: the ATP loss against the paper's equations, the training step, the anomaly
synthesis, and learning on the built-in synthetic data.

References: Yao et al., ECCV 2024, arXiv:2406.07487 (and the authors' public code for the test
settings the paper leaves to it).
"""

from __future__ import annotations

import pytest
import torch
from fixtures.learning import FixedBatchLoss, synthetic_task
from glad_helpers import PIXELS, SIZE, images, tiny

import adbench
from adbench.diffusion import NoiseSchedule, ScheduleConfig
from adbench.methods.glad.loss import atp_loss, atp_noise_target, atp_x0_target, mix_latents


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
    torch.testing.assert_close(
        atp_x0_target(z_mixed, z_normal, sign=-1.0).flatten(), torch.tensor([1.75])
    )
    schedule = NoiseSchedule(ScheduleConfig(1000, "scaled_linear", 0.00085, 0.012))
    t = torch.tensor([0, 300, 999])
    z_mixed, z_normal, eps = torch.randn(3, 3, 3, 2, 2).unbind(0)
    abar = schedule.abar(t, z_mixed)
    x_t = schedule.add_noise(z_mixed, eps, t)
    for sign in (1.0, -1.0):
        noise_target = atp_noise_target(eps, z_mixed, z_normal, abar, sign)
        torch.testing.assert_close(
            schedule.predict_x0(x_t, noise_target, t),
            atp_x0_target(z_mixed, z_normal, sign),
            rtol=1e-4,
            atol=1e-4,
        )


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
        torch.testing.assert_close(
            model.predict_noise(x_t, t), (x_t - abar.sqrt() * x0_hat) / (1 - abar).sqrt()
        )
    eps_model = tiny(**{**PIXELS, "denoiser.prediction": "eps"}).model
    with torch.no_grad():
        torch.testing.assert_close(eps_model.predict_noise(x_t, t), eps_model.denoiser(x_t, t))


def test_training_step_uses_the_synthesizer_and_backpropagates_into_the_denoiser_only():
    method = tiny().train()
    batch = adbench.Batch(
        image=images(4),
        mask=torch.zeros(4, 1, SIZE, SIZE),
        label=torch.zeros(4, dtype=torch.long),
        category=torch.zeros(4, dtype=torch.long),
        index=torch.arange(4),
    )
    calls = []
    for name in ("synthesizer", "self_synthesizer"):
        original = getattr(method, name)
        setattr(
            method,
            name,
            lambda x, g=None, name=name, original=original, **_: (
                calls.append(name) or original(x, g)
            ),
        )
    method.training_step(batch, 0).backward()
    assert calls == ["synthesizer", "self_synthesizer"]
    assert all(p.grad is not None for p in method.model.denoiser.parameters())
    assert all(p.grad is None for p in method.model.features.parameters())


def test_synthesis_keeps_object_anomalies_on_the_foreground_only_for_object_categories():
    x = torch.full((2, 3, SIZE, SIZE), 0.9)
    x[:, :, 8:24, 8:24] = 0.1  # a dark object on a light background
    method = tiny(
        **{
            "training.synthesis.probability": 1.0,
            "training.synthesis.threshold": -2.0,
            "training.synthesis.foreground": False,
        }
    )
    torch.manual_seed(0)
    out = method.synthesize(x, ["bottle", "carpet"])
    changed = (out != x).any(1)
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[8:24, 8:24] = False
    assert not changed[0][outside].any() and changed[1][outside].any()


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
    fixed = FixedBatchLoss(
        lambda m: m.model.training_loss(normal, anomalous, torch.Generator().manual_seed(0)).item()
    )
    assert method.config.trainer.max_epochs == 20  # the preset's own budget (README)
    adbench.fit(
        method,
        datamodule,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        callbacks=[fixed],
    )
    first, last = fixed.values
    assert last < 0.7 * first, fixed.values
    table = adbench.evaluate(
        method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False
    ).to_frame()
    assert table.loc["mean", "I-AUROC"] >= naive + LEARNING_MARGIN, (table.loc["mean"], naive)
    assert sum(method.stop_step_histogram().values()) == len(datamodule.dataset("test"))
    # of brick, ellipse and 6 x 2 grid, only the texture is scored as stationary
    assert set(method.stationarity) == set(datamodule.categories)
    assert method.run_record()["stationary_categories"] == ["texture_brick_000"]
