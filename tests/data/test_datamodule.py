"""UnifiedDataModule and CategorySubset: multi-class loading, splits, batches, subsets."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import ClassVar

import lightning as L
import pytest
import torch

from adbench.batch import Batch
from adbench.data import CategorySubset, UnifiedDataModule, load_index
from adbench.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def index(synthetic_root: Path):
    return load_index("synthetic", synthetic_root)


def _indices(loader) -> list[int]:
    return [i for batch in loader for i in batch.index.tolist()]


def test_batches_have_the_contract_shapes(index) -> None:
    dm = UnifiedDataModule(index, image_size=24, batch_size=5)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, Batch)
    assert batch.image.shape == (5, 3, 24, 24) and batch.image.dtype == torch.float32
    assert batch.mask.shape == (5, 1, 24, 24)
    assert 0.0 <= batch.image.min() and batch.image.max() <= 1.0
    test = next(iter(dm.test_dataloader()))
    assert test.label.dtype == torch.int64 and test.category.dtype == torch.int64
    assert set(torch.unique(test.mask).tolist()) <= {0.0, 1.0}


def test_ids_map_back_to_the_index(index) -> None:
    dm = UnifiedDataModule(index, image_size=32, batch_size=7)  # native size: no mask is lost
    frame = dm.index.frame
    for batch in dm.test_dataloader():
        for row, category, label, mask in zip(
            batch.index.tolist(),
            batch.category.tolist(),
            batch.label.tolist(),
            batch.mask,
            strict=True,
        ):
            assert frame.loc[row, "category"] == dm.categories[category]
            assert frame.loc[row, "label"] == label
            assert (mask.sum() > 0) == bool(label)


def test_multi_class_train_set_and_no_overlap(index) -> None:
    dm = UnifiedDataModule(index, image_size=16, batch_size=4, val_fraction=0.25)
    frame = index.frame
    train, val, test = (
        _indices(loader)
        for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader())
    )
    train_all = set(frame.index[(frame["split"] == "train")])
    assert set(train) | set(val) <= train_all
    assert not set(val) & set(train)
    assert len(val) == 4 * 2  # 25% of 8 training images in each of 4 categories
    assert set(test) == set(frame.index[frame["split"] == "test"])
    assert not (set(train) | set(val)) & set(test)
    assert len(set(frame.loc[train, "category"])) == 4  # all categories in one training set
    assert (frame.loc[train, "label"] == 0).all()


def test_val_loader_absent_without_fraction(index) -> None:
    assert UnifiedDataModule(index, image_size=16).val_dataloader() == []


def test_shuffling_is_seeded_and_drop_last_keeps_a_batch(index) -> None:
    one = _indices(UnifiedDataModule(index, 16, batch_size=6, seed=3).train_dataloader())
    two = _indices(UnifiedDataModule(index, 16, batch_size=6, seed=3).train_dataloader())
    other = _indices(UnifiedDataModule(index, 16, batch_size=6, seed=4).train_dataloader())
    assert one == two and one != other
    assert len(one) == 30  # 32 training images, drop_last with batches of 6
    big = UnifiedDataModule(index, 16, batch_size=64).train_dataloader()
    assert len(_indices(big)) == 32  # a batch larger than the set keeps everything


def test_test_and_predict_share_the_index_order(index) -> None:
    dm = UnifiedDataModule(index, image_size=16, batch_size=5)
    order = _indices(dm.test_dataloader())
    assert order == _indices(dm.predict_dataloader()) == sorted(order)


def test_one_category_mode(index) -> None:
    dm = UnifiedDataModule(index, image_size=16, batch_size=4)
    name = dm.categories[2]
    single = dm.one_category(name)
    assert single.categories == [name]
    rows = single.index.frame.loc[_indices(single.test_dataloader())]
    assert set(rows["category"]) == {name}
    assert {b.category.max().item() for b in single.train_dataloader()} == {0}
    with pytest.raises(UnknownNameError, match="unknown category"):
        dm.one_category("nope")


def test_bad_settings(index) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        UnifiedDataModule(index, val_fraction=1.0)
    with pytest.raises(ConfigError, match="batch_size"):
        UnifiedDataModule(index, batch_size=0)


def test_workers_give_the_same_batches(index) -> None:
    plain = UnifiedDataModule(index, image_size=16, batch_size=8)
    workers = UnifiedDataModule(index, image_size=16, batch_size=8, num_workers=2)
    for a, b in zip(plain.test_dataloader(), workers.test_dataloader(), strict=True):
        assert torch.equal(a.image, b.image) and torch.equal(a.index, b.index)


class _Probe(L.LightningModule):
    """Counts what the trainer feeds it."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []
        self.validated: list[int] = []

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        assert isinstance(batch, Batch)
        self.seen += batch.index.tolist()
        return (self.weight - batch.image.mean()) ** 2

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.validated += batch.index.tolist()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("val_fraction", [0.0, 0.25])
def test_lightning_trainer_fit(index, tmp_path: Path, val_fraction: float) -> None:
    dm = UnifiedDataModule(index, image_size=16, batch_size=8, val_fraction=val_fraction)
    probe = _Probe()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(probe, datamodule=dm)
    assert sorted(probe.seen) == sorted(_indices(dm.train_dataloader()))
    assert sorted(probe.validated) == sorted(_indices(dm.val_dataloader()) if val_fraction else [])


class TestCategorySubset:
    names: ClassVar[list[str]] = [f"c{i:02d}" for i in range(20)]

    def test_nested_for_increasing_k(self) -> None:
        for seed in range(3):
            subsets = [set(CategorySubset(k, seed).names(self.names)) for k in (1, 3, 8, 15, 20)]
            assert all(a < b for a, b in itertools.pairwise(subsets))
            assert subsets[-1] == set(self.names)

    def test_seeded(self) -> None:
        assert CategorySubset(5, 7).names(self.names) == CategorySubset(5, 7).names(self.names)
        assert CategorySubset(5, 7).names(self.names) != CategorySubset(5, 8).names(self.names)

    def test_not_nested_draws_per_k(self) -> None:
        draws = [set(CategorySubset(k, 0, nested=False).names(self.names)) for k in range(2, 12)]
        assert not all(a < b for a, b in itertools.pairwise(draws))

    def test_apply_to_an_index(self, index) -> None:
        subset = CategorySubset(2, seed=1).apply(index)
        assert len(subset.categories) == 2 and set(subset.categories) <= set(index.categories)
        assert UnifiedDataModule(subset, image_size=16).categories == subset.categories

    def test_bad_k(self, index) -> None:
        with pytest.raises(ConfigError, match="k=5 but the index has only 4"):
            CategorySubset(5).apply(index)
        with pytest.raises(ConfigError, match="positive integer"):
            CategorySubset(0)
