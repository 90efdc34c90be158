"""Golden outputs: every registered method's small CPU setting, trained and scored on a fixed
fixture, gives the numbers pinned in ``tiny_presets.json``.

Each case builds the method with seed 0 (its ``tiny`` preset; Dinomaly and INP-Former have none,
so their ``paper`` preset with a random ViT-S backbone and a 56 px crop), trains it for ``STEPS``
optimiser steps (one epoch) on 2 synthetic categories at 64 px on one CPU thread, scores the test
split once and compares every image score, a few numbers of every anomaly map (shape, mean, max,
values at fixed positions) and each category's I-AUROC and P-AUROC with the JSON file (``RTOL``,
``ATOL``).

A change of these numbers is a decision, not an accident: when a change is intended, rewrite the
file with ``ADBENCH_UPDATE_GOLDEN=1 pytest tests/golden -m "slow or not slow"`` (``-k <method>``
for one method; the cases then skip, saying what they wrote) and review the JSON diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

import adbench

GOLDEN = Path(__file__).with_name("tiny_presets.json")
UPDATE = os.environ.get("ADBENCH_UPDATE_GOLDEN") == "1"
RTOL, ATOL = 1e-4, 1e-6
# 2 categories x 4 training images in batches of 4: STEPS optimiser steps are one epoch, so the
# methods that fit at the end of an epoch (memory banks, statistics) fit on every image
FIXTURE = {
    "n_categories": 2,
    "seed": 0,
    "image_size": 64,
    "n_train": 4,
    "n_test": 5,
    "batch_size": 4,
    "steps": 2,
    "threads": 1,
}
STEPS = FIXTURE["steps"]
# Dinomaly and INP-Former: no tiny preset and no offline weights; a random DINOv2-R ViT-S/14
RANDOM_DINO = {
    "preset": "paper",
    "random_weights": True,
    "crop_size": 56,
    "backbone.name": "vit_small_patch14_reg4_dinov2.lvd142m",
}
CASES: dict[str, dict[str, Any]] = {
    "naive": {},
    "anomalib.padim": {},
    "anomalib.patchcore": {},
    "anomalib.reverse_distillation": {},
    "anomalib.stfpm": {},
    "anomalib.dinomaly": RANDOM_DINO,
    "anomalib.inp_former": RANDOM_DINO,
    "dpdiff_ad": {},
    "glad": {},
    "mddnet": {},
    "rd": {},
}
POINTS = ((0, 0), (1, 2), (2, 1))  # map positions in quarters of its height and width


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory: pytest.TempPathFactory) -> adbench.UnifiedDataModule:
    """The fixed fixture: ``FIXTURE``'s synthetic categories, unshuffled test split."""
    root = adbench.make_synthetic(
        tmp_path_factory.mktemp("golden") / "synthetic",
        n_categories=FIXTURE["n_categories"],
        seed=FIXTURE["seed"],
        image_size=FIXTURE["image_size"],
        n_train=FIXTURE["n_train"],
        n_test=FIXTURE["n_test"],
    )
    return adbench.UnifiedDataModule(
        adbench.load_index("synthetic", root),
        image_size=FIXTURE["image_size"],
        batch_size=FIXTURE["batch_size"],
        seed=FIXTURE["seed"],
    )


@pytest.fixture
def one_thread():
    """Run on one CPU thread (reductions in a fixed order), then restore the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(FIXTURE["threads"])
    yield
    torch.set_num_threads(threads)


class Outputs(L.Callback):
    """Collects the predict loop's outputs: sample index -> (score, anomaly map (h, w))."""

    def __init__(self) -> None:
        self.by_index: dict[int, tuple[float, np.ndarray]] = {}

    def on_predict_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        maps = outputs.anomaly_map[:, 0].double().cpu().numpy()
        for i, index in enumerate(batch.index.tolist()):
            self.by_index[index] = (float(outputs.score[i]), maps[i])


def golden_record(name: str, datamodule: adbench.UnifiedDataModule) -> dict[str, Any]:
    """Train case ``name`` for ``STEPS`` steps, score the test split: the numbers to pin."""
    options = {**CASES[name], "data.image_size": FIXTURE["image_size"]}
    method = adbench.create(
        name,
        preset=options.pop("preset", "tiny"),
        seed=FIXTURE["seed"],
        num_classes=len(datamodule.categories),
        **options,
    )
    trainer = {
        "accelerator": "cpu",
        "devices": 1,
        "precision": "32-true",
        "enable_progress_bar": False,
    }
    adbench.fit(method, datamodule, seed=FIXTURE["seed"], max_steps=STEPS, **trainer)
    outputs = Outputs()
    table = adbench.evaluate(
        method, datamodule, mode="exact", callbacks=[outputs], **trainer
    ).to_frame()
    indices = sorted(outputs.by_index)
    maps = np.stack([outputs.by_index[i][1] for i in indices])
    h, w = maps.shape[1:]
    return {
        "score": [outputs.by_index[i][0] for i in indices],
        "map_shape": [h, w],
        "map_mean": maps.mean(axis=(1, 2)).tolist(),
        "map_max": maps.max(axis=(1, 2)).tolist(),
        "map_points": [maps[:, a * h // 4, b * w // 4].tolist() for a, b in POINTS],
        **{
            metric: table.loc[datamodule.categories, metric].tolist()
            for metric in ("I-AUROC", "P-AUROC")
        },
    }


def rewrite(name: str, record: dict[str, Any]) -> None:
    """Store ``record`` as case ``name``'s golden numbers (the other cases are kept while the
    file's fixture is ``FIXTURE``)."""
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    methods = golden["methods"] if golden.get("fixture") == FIXTURE else {}
    methods = dict(sorted({**methods, name: record}.items()))
    GOLDEN.write_text(json.dumps({"fixture": FIXTURE, "methods": methods}, indent=1) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_tiny_preset_matches_its_golden_outputs(name, datamodule, one_thread):
    record = golden_record(name, datamodule)
    if UPDATE:
        rewrite(name, record)
        pytest.skip(f"ADBENCH_UPDATE_GOLDEN=1: rewrote {name}'s numbers in {GOLDEN.name}")
    golden = json.loads(GOLDEN.read_text())
    assert golden["fixture"] == FIXTURE, "the fixture changed: regenerate the golden file"
    expected = golden["methods"][name]
    assert record.keys() == expected.keys()
    assert record["map_shape"] == expected["map_shape"], name
    for key, value in record.items():
        np.testing.assert_allclose(
            value, expected[key], rtol=RTOL, atol=ATOL, err_msg=f"{name}: {key}"
        )
