"""The naive baseline that keeps the synthetic dataset honest: distance to the mean image.

Each category's mean training image is the model; an image's score is the L2 distance between
it and the mean of its category. A dataset on which this scores near 1.0 image AUROC is too easy
to tell methods apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from adbench.batch import Batch
from adbench.errors import DatasetFormatError

if TYPE_CHECKING:
    from adbench.data.datamodule import UnifiedDataModule


def _batches(datamodule: UnifiedDataModule, split: str) -> DataLoader:
    return DataLoader(
        datamodule.dataset(split), batch_size=64, shuffle=False, collate_fn=Batch.collate
    )


def mean_image_auroc(datamodule: UnifiedDataModule) -> tuple[dict[str, float], float]:
    """Image AUROC of the mean-image detector per category and its macro mean.

    Args:
        datamodule: a `UnifiedDataModule` (its train split builds the means, its test split is
            scored).

    Returns:
        ({category name: AUROC}, mean over categories).
    """
    count = len(datamodule.categories)
    sums, counts = None, torch.zeros(count)
    for batch in _batches(datamodule, "train"):
        flat = batch.image.flatten(1).double()
        if sums is None:
            sums = torch.zeros(count, flat.shape[1], dtype=torch.float64)
        sums.index_add_(0, batch.category, flat)
        counts += torch.bincount(batch.category, minlength=count)
    if sums is None:
        raise DatasetFormatError("mean_image_auroc: the datamodule has no training images")
    means = sums / counts.clamp(min=1).unsqueeze(1).double()
    scores, labels, cats = [], [], []
    for batch in _batches(datamodule, "test"):
        flat = batch.image.flatten(1).double()
        scores.append((flat - means[batch.category]).norm(dim=1))
        labels.append(batch.label)
        cats.append(batch.category)
    score, label, category = torch.cat(scores), torch.cat(labels), torch.cat(cats)
    per_category = {}
    for i, name in enumerate(datamodule.categories):
        rows = category == i
        if len(label[rows].unique()) < 2:
            raise DatasetFormatError(
                f"mean_image_auroc: category '{name}' needs normal and anomalous test images"
            )
        per_category[name] = float(roc_auc_score(label[rows].numpy(), score[rows].numpy()))
    return per_category, sum(per_category.values()) / len(per_category)
