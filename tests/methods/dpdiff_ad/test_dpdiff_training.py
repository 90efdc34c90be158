"""DPDiff-AD training: the start-up hooks, the stratified start-up sample, and learning on
the built-in synthetic dataset."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from dpdiff_helpers import SIZE, images, tiny_config
from fixtures.learning import FixedBatchLoss, synthetic_task

import adbench
from adbench.batch import Batch, Sample
from adbench.methods.dpdiff_ad import DPDiffAD
from adbench.methods.dpdiff_ad.module import stratified_indices


class _Loader:
    """An iterable of batches that counts how many were drawn."""

    def __init__(self, n: int) -> None:
        self.batches = [
            Batch(
                images(2, seed=i),
                torch.zeros(2, 1, SIZE, SIZE),
                torch.zeros(2, dtype=torch.long),
                torch.zeros(2, dtype=torch.long),
                torch.arange(2),
            )
            for i in range(n)
        ]
        self.drawn = 0

    def __iter__(self):
        for batch in self.batches:
            self.drawn += 1
            yield batch


def test_init_batches_and_reseed_every_act_in_the_training_hooks():
    method = DPDiffAD(
        tiny_config(
            **{
                "init.batches": 2,
                "init.max_tokens": 40,
                "local_prototypes.reseed_every": 3,
                "local_prototypes.reseed_threshold": 1.0,
            }
        )
    )
    loader = _Loader(5)
    method.trainer = SimpleNamespace(train_dataloader=loader, global_step=0)
    method.log = lambda *args, **kwargs: None
    initialize = method.model.initialize
    seen = {}

    def spy(tokens, summaries, generator=None):
        seen.update(tokens=tokens.shape[0], images=summaries.shape[0])
        initialize(tokens, summaries, generator)

    method.model.initialize = spy
    method.on_train_start()
    assert loader.drawn == 2 and bool(method.model.initialized)
    assert seen == {"tokens": 40, "images": 4}  # 20 of the 2 x 16 tokens of each batch
    tokens = torch.randn(1, 16, 176)
    reseeded = []
    for step in (1, 2, 3):
        method.trainer.global_step = step
        before = method.model.local.weight.detach().clone()
        method._pending = (tokens, torch.zeros(1, 16, dtype=torch.long), torch.zeros(0, 176))
        method.on_train_batch_end(None, loader.batches[0], 0)
        reseeded.append(not torch.equal(before, method.model.local.weight))
    assert reseeded == [False, False, True]


def test_stratified_sample_has_every_category_then_proportional_shares():
    categories = [0] * 100 + [1] * 10 + [2] + [3] + [4] * 50
    chosen = stratified_indices(categories, 20, torch.Generator().manual_seed(0))
    # one each, then 15 places shared by 99 / 9 / 0 / 0 / 49 spare images: 9.46, 0.86, 0, 0,
    # 4.68 -> 9, 0, 0, 0, 4 and the two largest remainders (0.86, 0.68) -> 10, 2, 1, 1, 6
    assert len(set(chosen)) == 20
    counts = np.bincount([categories[i] for i in chosen], minlength=5)
    assert counts.tolist() == [10, 2, 1, 1, 6]
    few = stratified_indices(categories, 3)  # raised to one per category
    assert sorted(categories[i] for i in few) == [0, 1, 2, 3, 4]
    assert sorted(stratified_indices([0, 1, 1], 10)) == [0, 1, 2]  # capped at the dataset


class _Dataset:
    """Training images with categories; records which positions were read."""

    def __init__(self, categories: list[int]) -> None:
        self.category_ids = categories
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.category_ids)

    def __getitem__(self, item: int) -> Sample:
        self.read.append(item)
        return Sample(
            images(1, seed=item)[0], torch.zeros(1, SIZE, SIZE), 0, self.category_ids[item], item
        )


def test_start_up_sample_is_stratified_per_category():
    method = DPDiffAD(tiny_config(**{"init.batches": 2, "init.max_tokens": 40}))
    dataset = _Dataset([0] * 30 + [1] + [2] * 5)
    loader = _Loader(3)
    loader.dataset, loader.batch_size = dataset, 2
    method.trainer = SimpleNamespace(train_dataloader=loader, global_step=0)
    seen = {}
    initialize = method.model.initialize

    def spy(tokens, summaries, generator=None):
        seen.update(tokens=tokens.shape[0], images=summaries.shape[0])
        initialize(tokens, summaries, generator)

    method.model.initialize = spy
    method.on_train_start()
    assert loader.drawn == 0 and seen == {"tokens": 40, "images": 4}
    # 4 images: one of each category, the spare place to the largest category
    assert sorted(dataset.category_ids[i] for i in dataset.read) == [0, 0, 1, 2]
    loader_mode = DPDiffAD(tiny_config(**{"init.batches": 2, "init.sampling": "loader"}))
    loader_mode.trainer = SimpleNamespace(train_dataloader=loader, global_step=0)
    dataset.read.clear()
    loader_mode.on_train_start()
    assert loader.drawn == 2 and dataset.read == []


# -- learning -------------------------------------------------------------------------------------
MARGIN = 0.1  # image AUROC points above the mean-image baseline
RECONSTRUCTION_MARGIN = 0.05  # ... for the reconstruction term alone


@pytest.mark.slow
def test_tiny_preset_learns_and_beats_the_naive_baseline(tmp_path):
    datamodule, naive = synthetic_task(tmp_path / "data", 3, n_train=24, n_test=32, batch_size=8)
    method = adbench.create("dpdiff_ad", preset="tiny")
    train = datamodule.dataset("train")
    images = torch.stack([train[i].image for i in range(0, len(train), 9)])
    fixed = FixedBatchLoss(
        lambda m: m.model.training_losses(images, torch.Generator().manual_seed(0))
    )
    adbench.fit(
        method,
        datamodule,
        max_steps=120,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        callbacks=[fixed],
    )
    first, last = fixed.values
    assert last.total < first.total and last.diffusion < 0.8 * first.diffusion
    table = adbench.evaluate(
        method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False
    ).to_frame()
    assert table.loc["mean", "I-AUROC"] >= naive + MARGIN, (table.loc["mean"], naive)
    # the diffusion part on its own: the same weights scored by the reconstruction alone
    reconstruction = adbench.create(
        "dpdiff_ad", preset="tiny", **{"inference.prototype_weight": 0.0}
    )
    reconstruction.load_state_dict(method.state_dict())
    alone = adbench.evaluate(
        reconstruction, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False
    ).to_frame()
    assert alone.loc["mean", "I-AUROC"] > naive + RECONSTRUCTION_MARGIN, (alone.loc["mean"], naive)
