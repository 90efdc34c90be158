"""MDD-Net as an `AnomalyMethod`: training on clean/corrupted pairs, fused-discrepancy scoring."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod
from adbench.synthesis import AnomalySynthesizer

from .config import MDDNetConfig
from .loss import mddnet_loss
from .model import MDDNetModel


class MDDNet(AnomalyMethod):
    """Memory-augmented dual-decoder reverse distillation (Xing et al., arXiv 2504.14884).

    Training reads ``batch.category`` for the class-aware memory losses; scoring never does.
    """

    config: MDDNetConfig

    def __init__(self, config: MDDNetConfig) -> None:
        super().__init__(config)
        self.model = MDDNetModel(self.config)
        self.synthesizer = AnomalySynthesizer(self.config.synthesis)

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Fused A_TR + A_RI map of images (B, 3, H, W) in [0, 1], upsampled, smoothed, pooled."""
        return self.postprocess(self.model(images), tuple(images.shape[-2:]))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """L_res + L_id + L_dist + CMM losses on a synthetically corrupted copy of the batch."""
        images = batch.image
        B = images.shape[0]
        corrupted, mask = self.synthesizer(images)
        # images left normal by the synthesis are their own corrupted version: T(a) = T(n)
        changed = mask.flatten(1).amax(dim=1) > 0
        teacher = self.model.encode(torch.cat([images, corrupted[changed]]))
        clean = [level[:B] for level in teacher]
        damaged = []
        for level in teacher:
            both = level[:B].clone()
            both[changed] = level[B:]
            damaged.append(both)
        student = self.model.student(damaged)
        terms = mddnet_loss(
            clean,
            damaged,
            student.restored,
            student.identity,
            mask,
            student.read,
            self.model.memory.slots,
            batch.category,
            self.config.loss,
        )
        parts = {f"train/{name}": value for name, value in terms.items() if name != "loss"}
        self.log_dict(parts, batch_size=B)
        self.log("train/loss", terms["loss"], batch_size=B, prog_bar=True)
        return terms["loss"]

    def run_record(self) -> dict[str, Any]:
        """What the anomaly synthesis drew from (source, DTD root and image count, or textures)."""
        return {"synthesis": self.synthesizer.record()}
