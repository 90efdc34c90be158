"""Reverse distillation as an `AnomalyMethod`: distil the frozen teacher, score the discrepancy."""

from __future__ import annotations

from torch import Tensor

from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod

from .config import RDConfig
from .loss import distillation_loss
from .model import RDModel


class RD(AnomalyMethod):
    """Reverse distillation from one-class embedding (Deng & Li, CVPR 2022, arXiv:2201.10703).

    Trains the bottleneck and decoder on normal images only; neither training nor scoring reads
    ``batch.category``.
    """

    config: RDConfig

    def __init__(self, config: RDConfig) -> None:
        super().__init__(config)
        self.model = RDModel(self.config)

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Summed per-level 1 - cos map of images (B, 3, H, W) in [0, 1], smoothed and pooled."""
        return self.postprocess(self.model(images), tuple(images.shape[-2:]))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """The distillation loss between the teacher's and the decoder's levels."""
        features = self.model.encode(batch.image)
        loss = distillation_loss(features, self.model.student(features), self.config.loss.form)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss
