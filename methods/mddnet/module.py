"""MDD-Net as an `AnomalyMethod`: training on clean/corrupted pairs, fused-discrepancy scoring."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from adbench.batch import AnomalyOutput, Batch
from adbench.config import to_dict
from adbench.contract import AnomalyMethod
from adbench.errors import ConfigError
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
        terms = mddnet_loss(clean, damaged, student.restored, student.identity, mask,
                            student.read, self.model.memory.slots, batch.category,
                            self.config.loss)
        parts = {f"train/{name}": value for name, value in terms.items() if name != "loss"}
        self.log_dict(parts, batch_size=B)
        self.log("train/loss", terms["loss"], batch_size=B, prog_bar=True)
        return terms["loss"]

    def setup(self, stage: str) -> None:
        """Size the class-aware memory from the datamodule's categories before the optimiser.

        ``memory.num_classes=0`` takes the number of categories and records it in the saved
        hyper-parameters (so a checkpoint rebuilds the same memory); an explicit value smaller
        than the number of categories is an error.
        """
        if stage != "fit":
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        categories = getattr(datamodule, "categories", None)
        wanted = self.config.memory.num_classes
        if categories is None:
            if wanted == 0:
                raise ConfigError(
                    "mddnet: memory.num_classes is 0 (size from the data) but the trainer has no "
                    "datamodule with `categories`; set memory.num_classes to the number of "
                    "training categories"
                )
            return
        count = len(categories)
        if wanted == 0:
            self._set_num_classes(count)
        elif count > wanted:
            raise ConfigError(
                f"mddnet: memory.num_classes={wanted} but the datamodule has {count} categories; "
                f"set memory.num_classes >= {count} (or 0 to size it from the data)"
            )

    def _set_num_classes(self, count: int) -> None:
        memory = dataclasses.replace(self.config.memory, num_classes=count)
        self.config = dataclasses.replace(self.config, memory=memory)
        self.model.config = self.config
        self.model.memory.resize(count)
        self.hparams["config"] = to_dict(self.config)
