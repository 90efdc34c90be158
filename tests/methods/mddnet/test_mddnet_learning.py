"""MDD-Net learning on the built-in synthetic dataset."""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch
from fixtures.learning import synthetic_task

import adbench
from adbench.distillation import pixel_cosine_distance
from adbench.methods.mddnet import MDDNet
from adbench.methods.mddnet.loss import resize_mask
from adbench.synthesis import AnomalySynthesizer

# -- learning ----------------------------------------------------------------------------------
LEARNING_STEPS = 200
LEARNING_MARGIN = 0.08  # image AUROC points over the naive mean-image detector


class LossRecorder(L.Callback):
    """Keeps the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def own_class_attention(method: MDDNet, images: torch.Tensor, category: torch.Tensor) -> tuple:
    """Mean attention mass of each image's tokens on its own class's slots, and the share of
    images whose largest per-class mass is their own class."""
    with torch.no_grad():
        read = method.model.student(method.model.encode(images)).read
    mass = read.log_weights.exp().sum(dim=(1, 3)) / read.log_weights.shape[1]  # (B, K)
    own = mass[torch.arange(len(category)), category]
    return own.mean().item(), (mass.argmax(dim=1) == category).float().mean().item()


def restoration_and_identity_errors(method: MDDNet, images: torch.Tensor) -> tuple[float, float]:
    """Cosine distance to the clean teacher features T(n) inside synthetic anomalies, summed over
    the levels, of the restoration decoder's R(a) and the identity decoder's I(a)."""
    synthesis = dataclasses.replace(method.config.synthesis, probability=1.0)
    corrupted, mask = AnomalySynthesizer(synthesis)(images, torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = method.model.encode(images)
        student = method.model.student(method.model.encode(corrupted))
    errors = []
    for decoded in (student.restored, student.identity):
        total = 0.0
        for level, target in zip(decoded, clean, strict=True):
            weight = resize_mask(mask, level.shape[-2:])
            total += ((pixel_cosine_distance(level, target) * weight).sum() / weight.sum()).item()
        errors.append(total)
    return errors[0], errors[1]


def training_images(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = datamodule.dataset("train")
    samples = [dataset[i] for i in range(len(dataset))]
    return (torch.stack([s.image for s in samples]), torch.tensor([s.category for s in samples]))


@pytest.mark.slow
def test_tiny_preset_learns_and_beats_the_naive_detector(tmp_path):
    """Also: the memory losses make the memory class-specific (an ablation without them is not),
    and the restoration decoder restores synthetic anomalies better than the identity decoder."""
    datamodule, naive = synthetic_task(
        tmp_path / "synthetic", 4, n_train=20, n_test=20, batch_size=16
    )
    method = adbench.create("mddnet", preset="tiny", num_classes=4)
    recorder = LossRecorder()
    adbench.fit(
        method,
        datamodule,
        max_steps=LEARNING_STEPS,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        callbacks=[recorder],
    )
    fifth = LEARNING_STEPS // 5
    first, last = recorder.losses[:fifth], recorder.losses[-fifth:]
    assert sum(last) / fifth < 0.6 * sum(first) / fifth
    table = adbench.evaluate(
        method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False
    ).to_frame()
    assert table.loc["mean", "I-AUROC"] >= naive + LEARNING_MARGIN, (table, naive)

    method.eval()
    images, category = training_images(datamodule)
    mass, hits = own_class_attention(method, images, category)  # measured: 0.91, 1.0
    assert mass > 0.7 and hits >= 0.9, (mass, hits)
    restored, kept = restoration_and_identity_errors(method, images)  # measured: 0.58, 0.67
    assert restored < 0.95 * kept, (restored, kept)

    ablation = adbench.create(
        "mddnet",
        preset="tiny",
        num_classes=4,
        **{"loss.class_evidence": 0.0, "loss.compactness": 0.0},
    )
    adbench.fit(
        ablation,
        datamodule,
        max_steps=LEARNING_STEPS,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
    )
    ablation.eval()
    mass_without, _ = own_class_attention(ablation, images, category)  # measured: 0.21
    assert mass_without < 0.5 < mass, (mass_without, mass)
