"""`UnifiedDataModule`: the multi-class protocol over any `SampleIndex`.

One training set holds the normal training images of every selected category; the test set
holds each category's test images (metrics are computed per category by the metric layer). An
optional validation split is carved from the training normals, never from the test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from adbench.batch import Batch
from adbench.contract import DataDefaults
from adbench.data.cache import find_caches, use_cache
from adbench.data.dataset import AnomalyDataset, MaskLoad, as_size
from adbench.data.index import SampleIndex, no_training_images, untrained_categories
from adbench.errors import ConfigError, DatasetFormatError

Split = Literal["train", "val", "test"]


class UnifiedDataModule(L.LightningDataModule):
    """Loaders over a `SampleIndex` (the unified multi-class protocol).

    Args:
        index: the images (any dataset, combination or `CategorySubset` of them).
        image_size: side (or (H, W)) images and masks are resized to (default and
            ``batch_size``'s: `adbench.contract.DataDefaults`; `for_config` takes a method's own).
        batch_size: images per batch.
        num_workers: loader worker processes.
        val_fraction: share of each category's training normals held out for validation.
        seed: seed of the train shuffling and of the validation split.
        pin_memory: pin host memory; by default when CUDA is available.
        cache_dir: resized cache(s) built by ``adbench data prepare``; ``None`` uses the cache
            next to a dataset root when one of a large enough size exists; ``()`` uses none.
        per_category: train and test on this one category only (class-separated mode).
        mask_load: how masks are resized to the image size: ``nearest`` (binary) or ``bilinear``
            (the evaluation protocol's ``mask_load``; no resized cache is used then, since a
            cache holds nearest-resized masks).
    """

    def __init__(
        self,
        index: SampleIndex,
        image_size: int | Sequence[int] = DataDefaults.image_size,
        batch_size: int = DataDefaults.batch_size,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        seed: int = 0,
        pin_memory: bool | None = None,
        cache_dir: str | Path | Sequence[str | Path] | None = None,
        per_category: str | None = None,
        mask_load: MaskLoad = "nearest",
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ConfigError(
                "data: batch_size must be >= 1 and num_workers >= 0, got "
                f"{batch_size} and {num_workers}"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data: val_fraction must be in [0, 1), got {val_fraction}")
        self.index = index
        self.image_size = as_size(image_size)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.per_category = per_category
        self.mask_load = mask_load
        selected = index.select([per_category]) if per_category else index
        self.categories: list[str] = selected.categories
        frame = index.frame
        frame = frame[frame["category"].isin(self.categories)]
        caches = _cache_list(cache_dir, frame["root"].unique(), self.image_size)
        caches = caches if mask_load == "nearest" else []
        self.cache_dirs = caches
        self._cache_arg = cache_dir
        if caches:
            frame = use_cache(frame, caches, self.image_size)
        self._rows = _split_rows(frame, val_fraction, seed)
        self._untrained = untrained_categories(frame)

    @classmethod
    def for_config(cls, index: SampleIndex, config: Any, **options: Any) -> UnifiedDataModule:
        """Loaders at the method's own ``config.data`` image and batch size.

        Args:
            index: the samples.
            config: a method config (``method.config``).
            **options: any other argument of `UnifiedDataModule` (``seed``, ``num_workers`` ...).
        """
        return cls(
            index, image_size=config.data.image_size, batch_size=config.data.batch_size, **options
        )

    def dataset(self, split: Split) -> AnomalyDataset:
        """The images of one split (``train``, ``val`` or ``test``)."""
        return AnomalyDataset(self._rows[split], self.categories, self.image_size, self.mask_load)

    def one_category(self, name: str) -> UnifiedDataModule:
        """The same settings restricted to one category (one model per category)."""
        return UnifiedDataModule(
            self.index,
            image_size=self.image_size,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            val_fraction=self.val_fraction,
            seed=self.seed,
            pin_memory=self.pin_memory,
            cache_dir=self._cache_arg,
            per_category=name,
            mask_load=self.mask_load,
        )

    def _loader(self, split: Split, shuffle: bool) -> DataLoader:
        data = self.dataset(split)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            drop_last=shuffle and len(data) >= self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=Batch.collate,
            persistent_workers=shuffle and self.num_workers > 0,
        )

    def setup(self, stage: str) -> None:
        """Called by Lightning before each stage: refuse to train (``fit``) an unseen category.

        Raises:
            DatasetFormatError: naming every selected category without training images.
        """
        if stage == "fit":
            self._require_training()

    def _require_training(self) -> None:
        if self._untrained:
            raise DatasetFormatError(no_training_images(self._untrained))

    def train_dataloader(self) -> DataLoader:
        """Normal training images of every selected category, shuffled (seeded)."""
        self._require_training()
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Held-out training normals; an empty list (no validation) when val_fraction is 0."""
        return self._loader("val", shuffle=False) if len(self._rows["val"]) else []

    def test_dataloader(self) -> DataLoader:
        """The test split in index order."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split in index order (the pass that reported numbers come from)."""
        return self._loader("test", shuffle=False)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self._rows.items())
        return f"UnifiedDataModule({len(self.categories)} categories, {sizes}, {self.image_size})"


def _cache_list(
    cache_dir: str | Path | Sequence[str | Path] | None,
    roots: Sequence[str],
    image_size: tuple[int, int],
) -> list[Path]:
    if cache_dir is None:
        return find_caches(roots, image_size)
    if isinstance(cache_dir, (str, Path)):
        return [Path(cache_dir)]
    return [Path(c) for c in cache_dir]


def _split_rows(frame: pd.DataFrame, val_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """Train / val / test rows; val takes ``val_fraction`` of each category's training rows."""
    train = frame[(frame["split"] == "train") & (frame["label"] == 0)]
    val_ids: list[int] = []
    if val_fraction > 0:
        rng = np.random.default_rng(seed)
        for _, rows in train.groupby("category", observed=True, sort=True):
            n_val = min(max(round(val_fraction * len(rows)), 1), len(rows) - 1)
            val_ids += sorted(rows.index[rng.permutation(len(rows))[:n_val]].tolist())
    return {
        "train": train.drop(index=val_ids),
        "val": train.loc[sorted(val_ids)],
        "test": frame[frame["split"] == "test"],
    }
