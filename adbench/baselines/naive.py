"""The naive floor: distance to the nearest per-category mean training image.

Training adds every normal image to its category's running sum (nothing is optimised). An image
is scored against the *nearest* category mean (no category id is used at test time): the map is
the squared difference per pixel summed over channels, and the image score is the L2 distance
(the square root of the map's sum). When every test image is nearest to its own category's mean,
the image scores equal those of `mean_image_auroc`, which scores each test image against its own
category's mean without training a method (the check that keeps synthetic datasets honest). A
dataset on which this floor scores high is too easy to tell methods apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor
from torch.utils.data import DataLoader

from adbench.baselines import PRESETS
from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod, MethodConfig, ScoringConfig, TrainerDefaults
from adbench.errors import AdbenchError, ConfigError, DatasetFormatError
from adbench.registry import MethodSpec, presets_from_folder

if TYPE_CHECKING:
    from adbench.data.datamodule import UnifiedDataModule


@dataclass(frozen=True)
class NaiveConfig(MethodConfig):
    """The mean-image detector has no weights and no hyper-parameters beyond the data size."""

    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(sigma=0.0))
    # one pass over the training images computes the means; more epochs change nothing
    trainer: TrainerDefaults = field(default_factory=lambda: TrainerDefaults(max_epochs=1))


class NaiveMeanImage(AnomalyMethod):
    """Mean image per training category; score = L2 distance to the nearest mean."""

    config: NaiveConfig

    def __init__(self, config: NaiveConfig) -> None:
        super().__init__(config)
        # (K, 3, H, W) sums in float64 and (K,) counts; sized by the first training batch
        self.register_buffer("sums", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(0, dtype=torch.int64))

    def on_fit_start(self) -> None:
        """The sums are built in one process; several would each hold a part."""
        if self.trainer.world_size > 1:
            raise ConfigError(
                f"naive builds its means in one process; run it with devices=1 "
                f"(got {self.trainer.world_size} processes)"
            )

    def on_train_epoch_start(self) -> None:
        """Each epoch recomputes the means from that epoch's images."""
        self.sums = torch.zeros(0, dtype=torch.float64, device=self.sums.device)
        self.counts = torch.zeros(0, dtype=torch.int64, device=self.counts.device)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        """Add the batch's images to their categories' sums."""
        images = batch.image.double()
        k = int(batch.category.max()) + 1
        if self.sums.numel() == 0:
            self.sums = images.new_zeros((k, *images.shape[1:]))
            self.counts = torch.zeros(k, dtype=torch.int64, device=images.device)
        elif self.sums.shape[1:] != images.shape[1:]:
            raise AdbenchError(
                f"naive: training images changed shape from "
                f"{tuple(self.sums.shape[1:])} to {tuple(images.shape[1:])}"
            )
        if k > len(self.sums):
            grow = k - len(self.sums)
            self.sums = torch.cat([self.sums, self.sums.new_zeros((grow, *self.sums.shape[1:]))])
            self.counts = torch.cat([self.counts, self.counts.new_zeros(grow)])
        self.sums.index_add_(0, batch.category, images)
        self.counts += torch.bincount(batch.category, minlength=len(self.counts))

    def configure_optimizers(self) -> None:
        """Nothing is learned by gradients."""
        return None

    def means(self) -> Tensor:
        """(K', 3, H, W) mean image of each category that had training images."""
        if self.counts.numel() == 0 or int(self.counts.sum()) == 0:
            raise self.not_fitted("has no mean images yet")
        seen = self.counts > 0
        return self.sums[seen] / self.counts[seen].view(-1, 1, 1, 1).double()

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Map = squared difference to the nearest mean, summed over channels; score = L2."""
        means = self.means()
        if images.shape[1:] != means.shape[1:]:
            raise AdbenchError(
                f"naive: images of shape {tuple(images.shape[1:])} cannot be "
                f"compared with means of shape {tuple(means.shape[1:])}; "
                "score at the training image size"
            )
        flat = images.double().flatten(1)
        distances = torch.cdist(flat, means.flatten(1))  # (B, K')
        nearest = means[distances.argmin(dim=1)]
        error = (images.double() - nearest).pow(2).sum(dim=1, keepdim=True)
        return AnomalyOutput(error.float(), error.flatten(1).sum(dim=1).sqrt().float())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Take the buffers' shapes from the checkpoint (they are sized by the data)."""
        for name in ("sums", "counts"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


NAIVE = MethodSpec(
    name="naive",
    module=NaiveMeanImage,
    config=NaiveConfig,
    presets=presets_from_folder(PRESETS / "naive"),
    paper="mean-image floor (no paper): distance to the nearest per-category mean training image",
)


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
