"""The tensors that flow between the data layer, the methods and the metric layer.

Only tensors live here: strings (paths, category names, defect types, camera views) stay in the
`SampleIndex` and are reached through ``index``. Every class has a ``to(device)`` method, so
Lightning moves it as one unit instead of walking (and failing on) a frozen dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from adbench.errors import InvalidInputError


def _check(
    name: str, value: Tensor, ndim: int, dtypes: tuple[torch.dtype, ...], owner: str
) -> None:
    if not isinstance(value, Tensor):
        raise InvalidInputError(
            f"{owner}.{name} must be a torch.Tensor, got {type(value).__name__}"
        )
    if value.ndim != ndim:
        raise InvalidInputError(
            f"{owner}.{name} must have {ndim} dimensions, got shape {tuple(value.shape)}"
        )
    if value.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise InvalidInputError(f"{owner}.{name} must have dtype {names}, got {value.dtype}")


_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass(frozen=True)
class Sample:
    """One test or training image as the dataset returns it.

    Attributes:
        image: (3, H, W) float RGB in [0, 1].
        mask: (1, H, W) float in {0, 1}; zeros for normal images.
        label: 0 normal, 1 anomalous.
        category: index into the datamodule's category list.
        index: row id in the `SampleIndex`, unique across the whole index.
    """

    image: Tensor
    mask: Tensor
    label: int
    category: int
    index: int

    def __post_init__(self) -> None:
        _check("image", self.image, 3, _FLOATS, "Sample")
        _check("mask", self.mask, 3, _FLOATS, "Sample")
        if self.image.shape[0] != 3:
            raise InvalidInputError(
                f"Sample.image must have 3 channels, got shape {tuple(self.image.shape)}"
            )
        if self.mask.shape[0] != 1 or self.mask.shape[1:] != self.image.shape[1:]:
            raise InvalidInputError(
                f"Sample.mask must have shape (1, {self.image.shape[1]}, {self.image.shape[2]}), "
                f"got {tuple(self.mask.shape)}"
            )


@dataclass(frozen=True)
class Batch:
    """A collated batch of samples.

    Attributes:
        image: (B, 3, H, W) float RGB in [0, 1].
        mask: (B, 1, H, W) float in {0, 1}.
        label: (B,) int64.
        category: (B,) int64 category ids.
        index: (B,) int64 `SampleIndex` row ids.
    """

    image: Tensor
    mask: Tensor
    label: Tensor
    category: Tensor
    index: Tensor

    def __post_init__(self) -> None:
        _check("image", self.image, 4, _FLOATS, "Batch")
        _check("mask", self.mask, 4, _FLOATS, "Batch")
        for name in ("label", "category", "index"):
            _check(name, getattr(self, name), 1, (torch.int64,), "Batch")
        size = self.image.shape[0]
        for field in dataclasses.fields(self):
            length = getattr(self, field.name).shape[0]
            if length != size:
                raise InvalidInputError(
                    f"Batch.{field.name} has {length} entries but Batch.image has {size}"
                )
        if self.image.shape[1] != 3:
            raise InvalidInputError(
                f"Batch.image must have 3 channels, got shape {tuple(self.image.shape)}"
            )
        if self.mask.shape[1] != 1 or self.mask.shape[2:] != self.image.shape[2:]:
            raise InvalidInputError(
                f"Batch.mask must have shape (B, 1, {self.image.shape[2]}, {self.image.shape[3]}), "
                f"got {tuple(self.mask.shape)}"
            )

    @classmethod
    def collate(cls, samples: Sequence[Sample]) -> Batch:
        """Stack samples into a batch; images of different sizes are an error, never resized."""
        if not samples:
            raise InvalidInputError("cannot collate an empty list of samples")
        first = samples[0]
        for sample in samples[1:]:
            if sample.image.shape != first.image.shape:
                raise InvalidInputError(
                    f"cannot collate samples of different sizes: index {first.index} has "
                    f"{tuple(first.image.shape)}, index {sample.index} has "
                    f"{tuple(sample.image.shape)}"
                )
        return cls(
            image=torch.stack([s.image for s in samples]),
            mask=torch.stack([s.mask for s in samples]),
            label=torch.tensor([s.label for s in samples], dtype=torch.int64),
            category=torch.tensor([s.category for s in samples], dtype=torch.int64),
            index=torch.tensor([s.index for s in samples], dtype=torch.int64),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Return a copy with every tensor on ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
            for f in dataclasses.fields(self)
        }
        return dataclasses.replace(self, **moved)

    def __len__(self) -> int:
        return self.image.shape[0]


@dataclass(frozen=True)
class AnomalyOutput:
    """What a method predicts for a batch of images.

    Attributes:
        anomaly_map: (B, 1, h, w) float, higher = more anomalous.
        score: (B,) float image-level anomaly score.
    """

    anomaly_map: Tensor
    score: Tensor

    def __post_init__(self) -> None:
        _check("anomaly_map", self.anomaly_map, 4, _FLOATS, "AnomalyOutput")
        _check("score", self.score, 1, _FLOATS, "AnomalyOutput")
        if self.anomaly_map.shape[1] != 1:
            raise InvalidInputError(
                f"AnomalyOutput.anomaly_map must have shape (B, 1, h, w), "
                f"got {tuple(self.anomaly_map.shape)}"
            )
        if self.score.shape[0] != self.anomaly_map.shape[0]:
            raise InvalidInputError(
                f"AnomalyOutput.score has {self.score.shape[0]} entries but anomaly_map has "
                f"{self.anomaly_map.shape[0]}"
            )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AnomalyOutput:
        """Return a copy with both tensors on ``device``."""
        return AnomalyOutput(
            self.anomaly_map.to(device, non_blocking=non_blocking),
            self.score.to(device, non_blocking=non_blocking),
        )

    def __len__(self) -> int:
        return self.anomaly_map.shape[0]
