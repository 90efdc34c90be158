"""Batch / Sample / AnomalyOutput: collate, checks that name the field, device moves."""

from __future__ import annotations

import re

import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from adbench.batch import AnomalyOutput, Batch, Sample
from adbench.errors import InvalidInputError


def make_sample(index: int, size: int = 8, label: int = 0) -> Sample:
    return Sample(torch.rand(3, size, size), torch.zeros(1, size, size), label, index % 2, index)


def test_collate_stacks_fields():
    batch = Batch.collate([make_sample(i, label=i % 2) for i in range(3)])
    assert batch.image.shape == (3, 3, 8, 8) and batch.mask.shape == (3, 1, 8, 8)
    assert batch.label.tolist() == [0, 1, 0]
    assert batch.category.tolist() == [0, 1, 0]
    assert batch.index.tolist() == [0, 1, 2]
    assert batch.index.dtype == torch.int64 and len(batch) == 3


def test_collate_refuses_mixed_sizes_naming_both_samples():
    with pytest.raises(
        InvalidInputError, match=r"index 0 has \(3, 8, 8\), index 7 has \(3, 9, 9\)"
    ):
        Batch.collate([make_sample(0), make_sample(7, size=9)])


def test_field_checks_name_the_field():
    good = Batch.collate([make_sample(0), make_sample(1)])
    with pytest.raises(
        InvalidInputError, match=re.escape("Batch.label has 3 entries but Batch.image has 2")
    ):
        Batch(good.image, good.mask, torch.zeros(3, dtype=torch.int64), good.category, good.index)
    with pytest.raises(
        InvalidInputError,
        match=re.escape("Batch.category must have dtype int64, got torch.float32"),
    ):
        Batch(good.image, good.mask, good.label, good.category.float(), good.index)
    with pytest.raises(InvalidInputError, match=re.escape("Batch.mask must have shape")):
        Batch(good.image, good.mask[:, :, :4], good.label, good.category, good.index)
    with pytest.raises(InvalidInputError, match=re.escape("Sample.image must have 3 channels")):
        Sample(torch.rand(1, 4, 4), torch.zeros(1, 4, 4), 0, 0, 0)
    with pytest.raises(
        InvalidInputError, match=r"AnomalyOutput.anomaly_map must have shape \(B, 1, h, w\)"
    ):
        AnomalyOutput(torch.rand(2, 3, 4, 4), torch.rand(2))
    with pytest.raises(InvalidInputError, match=re.escape("AnomalyOutput.score has 3 entries")):
        AnomalyOutput(torch.rand(2, 1, 4, 4), torch.rand(3))
    with pytest.raises(
        InvalidInputError, match=re.escape("Batch.image must be a torch.Tensor, got ndarray")
    ):
        Batch(good.image.numpy(), good.mask, good.label, good.category, good.index)


def test_to_returns_new_object_and_is_used_by_lightning():
    batch = Batch.collate([make_sample(0), make_sample(1)])
    moved = batch.to("meta")
    assert moved is not batch and moved.image.device.type == "meta"
    assert batch.image.device.type == "cpu"  # the original is untouched (immutable)
    # Lightning's own device transfer treats both classes as units (frozen dataclasses without
    # `to` would be walked field by field and fail).
    lightning_moved = move_data_to_device(batch, torch.device("meta"))
    assert isinstance(lightning_moved, Batch) and lightning_moved.label.device.type == "meta"
    output = AnomalyOutput(torch.rand(2, 1, 4, 4), torch.rand(2))
    out_moved = move_data_to_device(output, torch.device("meta"))
    assert isinstance(out_moved, AnomalyOutput) and out_moved.score.device.type == "meta"
