"""Memory-bank baselines (PatchCore, PaDiM).

Bounded banks, streamed statistics, options, learning.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from anomalib.models.components import KCenterGreedy
from baseline_helpers import fit_memory
from fixtures.learning import synthetic_task
from torch.testing import assert_close

import adbench
from adbench.baselines.padim import RunningGaussian
from adbench.baselines.patchcore import greedy_coreset, projection_dims
from adbench.errors import ConfigError

PATCHES_PER_IMAGE = 8 * 8  # tiny PatchCore at 32 px: Lite0 level 1 has stride 4


def test_greedy_coreset_selects_what_anomalib_selects():
    embedding = torch.randn(400, 256, generator=torch.Generator().manual_seed(0))
    assert projection_dims(400, 0.9) == 147  # < 256: both project
    torch.manual_seed(3)
    np.random.seed(3)  # the sparse projection draws from numpy too
    expected = KCenterGreedy(embedding, sampling_ratio=0.1).select_coreset_idxs()
    torch.manual_seed(3)
    np.random.seed(3)
    got = greedy_coreset(embedding, 40)
    assert got.tolist() == expected
    assert len(set(got.tolist())) == 40


def test_greedy_coreset_without_projection_is_farthest_point_sampling():
    points = torch.randn(60, 3, generator=torch.Generator().manual_seed(1))  # 3 < 101 dims: as is
    torch.manual_seed(0)
    got = greedy_coreset(points, 6).tolist()
    torch.manual_seed(0)
    chosen = [int(torch.randint(high=60, size=(1,)))]  # the reference: plain k-center greedy
    while len(chosen) < 6:
        nearest = torch.cdist(points, points[chosen]).min(dim=1).values
        chosen.append(int(nearest.argmax()))
    assert got == chosen


def test_greedy_coreset_covers_every_cluster():
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(5, 16) * 100  # 5 far-apart clusters of 50 points each
    points = centres.repeat_interleave(50, dim=0) + torch.randn(250, 16, generator=generator)
    chosen = greedy_coreset(points, 5)
    assert sorted((chosen // 50).tolist()) == [0, 1, 2, 3, 4]


def test_running_gaussian_equals_the_batch_estimate():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(11, 6, 3, 2, generator=generator) * 4 + 1  # (B, C, h, w)
    statistics = RunningGaussian()
    for chunk in (x[:1], x[1:5], x[5:6], x[6:]):  # uneven batches, one of a single image
        statistics.update(chunk)
    mean, inverse = statistics.finish(epsilon=0.5)
    flat = x.double().reshape(11, 6, 6)
    eye = torch.eye(6, dtype=torch.float64)
    for position in range(6):
        samples = flat[:, :, position]  # (B, C)
        deviation = samples - samples.mean(dim=0)
        covariance = deviation.T @ deviation / (11 - 1)  # unbiased, PaDiM Sec. 3.2
        assert_close(mean[:, position], samples.mean(dim=0).float())
        assert_close(inverse[position], torch.linalg.inv(covariance + (0.5 + 1e-5) * eye).float())


def test_running_gaussian_needs_two_images():
    statistics = RunningGaussian()
    statistics.update(torch.rand(1, 3, 2, 2))
    with pytest.raises(adbench.errors.AdbenchError, match="at least 2 training images"):
        statistics.finish(0.01)


@pytest.fixture(scope="module")
def patchcore_full(train_images):
    """Tiny PatchCore whose bank holds every training patch (ratio 1, no cap)."""
    return fit_memory(
        adbench.create("anomalib.patchcore", "tiny", coreset_ratio=1.0, max_bank_size=None),
        train_images,
    )


def test_patchcore_bank_is_bounded_by_ratio_and_cap(train_images, patchcore_full):
    patches = len(train_images) * PATCHES_PER_IMAGE
    full = patchcore_full.model.memory_bank
    assert full.shape == (patches, 64)

    capped = fit_memory(
        adbench.create("anomalib.patchcore", "tiny", coreset_ratio=0.1, max_bank_size=50),
        train_images,
    )
    bank = capped.model.memory_bank
    assert bank.shape == (50, 64)
    # every bank row is a training patch
    distance = torch.cdist(bank, full, compute_mode="donot_use_mm_for_euclid_dist")
    assert distance.min(dim=1).values.max() < 1e-5
    assert "model.memory_bank" in capped.state_dict()  # saved with checkpoints

    by_ratio = capped.coreset_indices(full)
    assert len(by_ratio) == 50  # int(0.1 * 768) = 76 is capped at 50
    uncapped = fit_memory(
        adbench.create("anomalib.patchcore", "tiny", coreset_ratio=0.1, max_bank_size=None),
        train_images,
    )
    assert uncapped.model.memory_bank.shape == (int(0.1 * patches), 64)


def test_another_epoch_rebuilds_the_bank_instead_of_growing_it(train_images, patchcore_full):
    before = patchcore_full.model.memory_bank.clone()
    fit_memory(patchcore_full, train_images)
    assert torch.equal(patchcore_full.model.memory_bank, before)


def test_patchcore_options_change_the_output(train_images, test_images, patchcore_full):
    with torch.no_grad():
        base = patchcore_full(test_images)
        maps = patchcore_full.model(patchcore_full.normalize(test_images)).anomaly_map
    assert not torch.equal(base.score, maps.amax(dim=(1, 2, 3)))  # re-weighted, not the max

    def fitted(**options):
        method = fit_memory(
            adbench.create(
                "anomalib.patchcore", "tiny", coreset_ratio=1.0, max_bank_size=None, **options
            ),
            train_images,
        )
        with torch.no_grad():
            return method(test_images)

    pooled = fitted(image_score="pooled")
    assert_close(pooled.anomaly_map, base.anomaly_map)
    assert_close(pooled.score, base.anomaly_map.amax(dim=(1, 2, 3)))
    one_neighbour = fitted(num_neighbors=1)  # b = 1: no re-weighting, s = the largest distance
    assert (one_neighbour.score >= maps.amax(dim=(1, 2, 3))).all()  # the map is s, smoothed
    assert (base.score < one_neighbour.score).all()  # paper Eq. 7: the weight 1 - softmax is < 1
    no_aggregation = fitted(neighbourhood=1)
    assert not torch.allclose(no_aggregation.anomaly_map, base.anomaly_map)
    smoothed = fitted(**{"scoring.sigma": 2.0})
    assert not torch.allclose(smoothed.anomaly_map, base.anomaly_map)


def test_padim_options_change_the_output(train_images, test_images):
    def fitted(**options):
        method = fit_memory(adbench.create("anomalib.padim", "tiny", **options), train_images)
        with torch.no_grad():
            return method, method(test_images)

    torch.manual_seed(0)
    base_method, base = fitted()
    torch.manual_seed(0)  # the same random channel selection
    _, stronger = fitted(covariance_epsilon=1.0)
    assert (stronger.score < base.score).all()  # a larger ridge shrinks Mahalanobis distances
    _, fewer = fitted(n_features=20)
    assert fewer.anomaly_map.shape == base.anomaly_map.shape
    assert base_method.model.gaussian.mean.shape == (100, 8 * 8)
    assert not torch.allclose(fewer.score, base.score)


def test_memory_banks_refuse_several_processes():
    method = adbench.create("anomalib.padim", "tiny")
    method.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ConfigError, match="devices=1"):
        method.on_fit_start()


@pytest.mark.slow
def test_patchcore_tiny_beats_the_mean_image_detector(tmp_path):
    """Learning check: 4 synthetic categories at 64 px; measured 0.91 vs 0.70 image AUROC."""
    datamodule, naive = synthetic_task(
        tmp_path / "synthetic", 4, n_train=20, n_test=20, batch_size=16
    )
    method = adbench.create("anomalib.patchcore", "tiny")
    adbench.fit(method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False)
    assert method.model.memory_bank.shape[0] <= method.config.max_bank_size
    table = adbench.evaluate(
        method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False
    ).to_frame()
    assert table.loc["mean", "I-AUROC"] > naive + 0.1
    assert table.loc["mean", "P-AUROC"] > 0.9
