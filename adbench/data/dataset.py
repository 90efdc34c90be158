"""`AnomalyDataset`: rows of a `SampleIndex` -> `Sample` tensors (decode, resize, binarise)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from adbench.batch import Sample
from adbench.data.index import optional
from adbench.errors import ConfigError, DatasetFormatError, InvalidInputError

Size = tuple[int, int]
MaskLoad = Literal["nearest", "bilinear"]
RESAMPLING = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR}


def as_size(image_size: int | Sequence[int]) -> Size:
    """(H, W) from an int or a pair."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return int(size[0]), int(size[1])


def decode_image(path: str | Path, mode: str, size: Size | None) -> Image.Image:
    """Open and fully decode an image (JPEGs are decoded at a reduced scale when that suffices)."""
    try:
        with Image.open(path) as image:
            if size is not None:
                image.draft(mode, (size[1], size[0]))
            image.load()
            return image.convert(mode)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DatasetFormatError(
            f"cannot read image {path}: {err}. The file is missing, truncated or not an image; "
            "restore it from the original download (or remove it and its split entry)."
        ) from err


def read_rgb(path: str | Path, size: Size) -> Image.Image:
    """RGB image resized bilinearly (antialiased) to ``size`` (H, W)."""
    image = decode_image(path, "RGB", size)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    return image


def read_mask(
    path: str | Path,
    size: Size,
    image_path: str | Path | None = None,
    resample: MaskLoad = "nearest",
) -> Image.Image:
    """Mask as 0/255 gray: non-zero pixels are anomalous, resized to ``size`` (H, W).

    ``resample`` ``nearest`` keeps it binary; ``bilinear`` (PIL's, antialiased, as torchvision's
    ``Resize`` of a PIL mask) gives edge pixels intermediate values. With ``image_path``, a mask
    whose size differs from that image's is an error (it would otherwise be stretched silently
    onto the image).
    """
    decoded = decode_image(path, "L", None)
    if image_path is not None:
        expected = source_size(image_path)
        if decoded.size != expected:
            raise DatasetFormatError(
                f"mask {path} is {decoded.size[0]}x{decoded.size[1]} px but its image "
                f"{image_path} is {expected[0]}x{expected[1]} px; masks must have the size of "
                "their image (run `adbench data check` to list every such file)"
            )
    binary = np.asarray(decoded) > 0
    image = Image.fromarray(binary.astype(np.uint8) * 255)
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), RESAMPLING[resample])
    return image


def source_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DatasetFormatError(f"cannot read image {path}: {err}") from err


def load_image(path: str | Path, size: Size) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1] at ``size``."""
    # numpy, not torch, converts: torch's intra-op threads only add overhead per small image
    pixels = np.asarray(read_rgb(path, size), dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    return torch.from_numpy(np.ascontiguousarray(pixels))


def load_mask(
    path: str | Path,
    size: Size,
    image_path: str | Path | None = None,
    resample: MaskLoad = "nearest",
) -> torch.Tensor:
    """(1, H, W) float32 at ``size`` (checked against ``image_path``, see `read_mask`).

    Values are in {0, 1} with ``nearest``; in [0, 1] (value / 255) with ``bilinear``.
    """
    gray = np.asarray(read_mask(path, size, image_path, resample))
    if resample == "nearest":
        return torch.from_numpy((gray > 127).astype(np.float32)[None])
    return torch.from_numpy((gray.astype(np.float32) / np.float32(255))[None])


class AnomalyDataset(Dataset):
    """Images of some `SampleIndex` rows as `Sample` objects.

    Args:
        frame_rows: rows of ``SampleIndex.frame`` (their index labels become ``Sample.index``).
        categories: category names; ``Sample.category`` is the position of a row's category.
        image_size: output side, or (H, W).
        mask_load: how masks are resized: ``nearest`` (binary) or ``bilinear`` (fractional
            edges; the rule of some papers' protocols, `adbench.protocols.Protocol.mask_load`).
    """

    def __init__(
        self,
        frame_rows: pd.DataFrame,
        categories: Sequence[str],
        image_size: int | Sequence[int],
        mask_load: MaskLoad = "nearest",
    ) -> None:
        if mask_load not in RESAMPLING:
            raise ConfigError(
                f"mask_load must be one of {', '.join(RESAMPLING)}, got {mask_load!r}"
            )
        self.size = as_size(image_size)
        self.mask_load = mask_load
        lookup = {name: i for i, name in enumerate(categories)}
        unknown = sorted(set(frame_rows["category"].astype(str)) - set(lookup))
        if unknown:
            raise InvalidInputError(
                f"rows of categories {unknown} are not in categories {list(categories)}"
            )
        self.paths = frame_rows["path"].astype(str).tolist()
        self.masks = [optional(m) for m in frame_rows["mask_path"]]
        self.labels = frame_rows["label"].astype(int).tolist()
        self.category_ids = [lookup[c] for c in frame_rows["category"].astype(str)]
        self.row_ids = [int(i) for i in frame_rows.index]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int) -> Sample:
        image = load_image(self.paths[item], self.size)
        mask_path = self.masks[item]
        if mask_path is None:
            mask = torch.from_numpy(np.zeros((1, *self.size), dtype=np.float32))
        else:
            mask = load_mask(mask_path, self.size, self.paths[item], self.mask_load)
        return Sample(
            image=image,
            mask=mask,
            label=self.labels[item],
            category=self.category_ids[item],
            index=self.row_ids[item],
        )
