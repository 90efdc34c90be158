"""`AnomalyDataset`: rows of a `SampleIndex` -> `Sample` tensors (decode, resize, binarise).

Images with an alpha channel are composited on black (`decode_image`); a mask must have the size
of its image (`read_mask` per sample, `mismatched_masks` for a whole index from file headers).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
HEADER_THREADS = 8  # header reads of `mismatched_masks` (they wait on the disk, not the CPU)
_alpha_warned = False  # whether this process has shown its `AlphaChannelWarning`


class AlphaChannelWarning(UserWarning):
    """An image had an alpha channel and was composited on black (once per process)."""


def as_size(image_size: int | Sequence[int]) -> Size:
    """(H, W) from an int or a pair."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return int(size[0]), int(size[1])


def decode_image(path: str | Path, mode: str, size: Size | None) -> Image.Image:
    """Open and fully decode an image (JPEGs are decoded at a reduced scale when that suffices).

    An image with an alpha channel (RGBA, LA, or a transparent palette colour) is composited on
    black before its conversion to ``mode``: a transparent pixel reads as black, a pixel of
    opacity ``a`` as ``a`` times its colour. The first such file of a process is named in an
    `AlphaChannelWarning`.
    """
    try:
        with Image.open(path) as image:
            if size is not None:
                image.draft(mode, (size[1], size[0]))
            image.load()
            if image.has_transparency_data:
                return _on_black(image, path).convert(mode)
            return image.convert(mode)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DatasetFormatError(
            f"cannot read image {path}: {err}. The file is missing, truncated or not an image; "
            "restore it from the original download (or remove it and its split entry)."
        ) from err


def _on_black(image: Image.Image, path: str | Path) -> Image.Image:
    """``image`` composited on an opaque black background (RGBA); warns once per process."""
    global _alpha_warned
    if not _alpha_warned:
        _alpha_warned = True
        warnings.warn(
            f"{path} has an alpha channel: adbench composites such images on black (transparent "
            "pixels read as black); later files with alpha are converted alike without a warning",
            AlphaChannelWarning,
            stacklevel=2,
        )
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)


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
                f"{size_mismatch(path, decoded.size, image_path, expected)}; masks must have "
                "the size of their image (run `adbench data check` to list every such file)"
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


def size_mismatch(
    mask: str | Path, mask_size: tuple[int, int], image: str | Path, image_size: tuple[int, int]
) -> str:
    """``"mask M is WxH px but its image I is WxH px"`` (sizes as (width, height))."""
    return (
        f"mask {mask} is {mask_size[0]}x{mask_size[1]} px but its image {image} is "
        f"{image_size[0]}x{image_size[1]} px"
    )


def mismatched_masks(frame: pd.DataFrame) -> list[str]:
    """A `size_mismatch` sentence for each row of an index table whose mask and image differ.

    Reads only the files' headers. A file whose header cannot be read is skipped: decoding it
    (a sample load, ``adbench data check``) names it.
    """
    rows = frame[frame["mask_path"].notna()]
    pairs = list(zip(rows["mask_path"], rows["path"], strict=True))
    with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
        found = pool.map(_mismatch, pairs)
        return [sentence for sentence in found if sentence]


def _mismatch(pair: tuple[str, str]) -> str | None:
    mask, image = pair
    try:
        mask_size, image_size = source_size(mask), source_size(image)
    except DatasetFormatError:
        return None
    return None if mask_size == image_size else size_mismatch(mask, mask_size, image, image_size)


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
