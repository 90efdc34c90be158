"""The naive mean-image floor: hand-computed scores, unified training and the tests' detector."""

from __future__ import annotations

import math

import pytest
import torch
from baseline_helpers import as_batch

import adbench
from adbench.baselines.naive import mean_image_auroc
from adbench.errors import AdbenchError


def _fit_by_hand(method, batches):
    method.train()
    method.on_train_epoch_start()
    for step, batch in enumerate(batches):
        assert method.training_step(batch, step) is None
    return method.eval()


def _constant(value, n=2, size=4):
    return torch.full((n, 3, size, size), value)


def test_scores_against_the_nearest_category_mean_by_hand():
    method = adbench.create("naive", "tiny")
    first, second = as_batch(torch.cat([_constant(0.1), _constant(0.3)])), as_batch(_constant(0.8))
    second.category[:] = 1
    _fit_by_hand(method, [first, second])
    torch.testing.assert_close(
        method.means()[:, 0, 0, 0], torch.tensor([0.2, 0.8], dtype=torch.float64)
    )
    # 0.3 is nearest the mean 0.2 of category 0; 0.6 nearest 0.8 of category 1
    out = method(torch.cat([_constant(0.3, n=1), _constant(0.6, n=1)]))
    per_pixel = torch.tensor([3 * 0.1**2, 3 * 0.2**2])
    torch.testing.assert_close(out.anomaly_map[:, 0, 0, 0], per_pixel)
    assert out.anomaly_map.shape == (2, 1, 4, 4)
    torch.testing.assert_close(out.score, (per_pixel * 16).sqrt())


def test_presets_are_identical_and_an_unfitted_model_is_a_named_error():
    assert adbench.resolve_config("naive", "tiny") == adbench.resolve_config("naive", "paper")
    with pytest.raises(AdbenchError, match="no mean images yet"):
        adbench.create("naive", "tiny").eval()(_constant(0.5))


def test_unified_training_on_several_categories_matches_the_mean_image_detector(tmp_path):
    root = tmp_path / "synthetic"
    adbench.make_synthetic(root, n_categories=3, seed=0, image_size=32, n_train=6, n_test=8)
    datamodule = adbench.UnifiedDataModule(
        adbench.load_index("synthetic", root), image_size=32, batch_size=6, seed=0
    )  # 18 = 3 full batches
    method = adbench.create("naive", "tiny", **{"data.image_size": 32})
    adbench.fit(
        method,
        datamodule,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    assert method.counts.tolist() == [6, 6, 6]  # one model saw every category's images
    table = adbench.evaluate(
        method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False
    ).to_frame()
    expected, mean = mean_image_auroc(datamodule)  # the independent per-category detector
    for category, auroc in expected.items():
        assert table.loc[category, "I-AUROC"] == pytest.approx(auroc, abs=1e-6)
    assert table.loc["mean", "I-AUROC"] == pytest.approx(mean, abs=1e-6)
    assert not math.isnan(table.loc["mean", "P-AUROC"])
