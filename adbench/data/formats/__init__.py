"""Dataset format readers.

Each turns a dataset root in its as-downloaded layout into a `SampleIndex`. `FORMATS` maps a
format name to its reader; `load_index` looks one up and checks the mask sizes of what it read.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from adbench.data.dataset import mismatched_masks
from adbench.data.formats.folder import read_folder
from adbench.data.formats.mvtec import read_mvtec
from adbench.data.formats.realiad import read_realiad
from adbench.data.formats.synthetic import make_synthetic, read_synthetic
from adbench.data.formats.visa import read_visa
from adbench.data.index import SampleIndex, listing
from adbench.errors import ConfigError, DatasetFormatError, did_you_mean, unknown_name

FORMATS: dict[str, Callable[..., SampleIndex]] = {
    "mvtec": read_mvtec,
    "visa": read_visa,
    "realiad": read_realiad,
    "folder": read_folder,
    "synthetic": read_synthetic,
}


def load_index(
    format: str,
    root: str | Path,
    categories: Iterable[str] | str | None = None,
    *,
    check_masks: bool = True,
    **options: Any,
) -> SampleIndex:
    """Read the dataset at ``root`` in ``format`` (a key of `FORMATS`) into a `SampleIndex`.

    Args:
        format: ``mvtec`` (also MPDD, BTAD), ``visa``, ``realiad`` (also Real-IAD Variety),
            ``folder`` or ``synthetic``.
        root: the dataset folder in its as-downloaded layout.
        categories: category names to keep (all when ``None``).
        check_masks: compare the size of every mask with its image's, from the file headers
            (`adbench.data.dataset.mismatched_masks`), so a wrong mask stops a run before any
            training. ``adbench data check`` turns it off: it decodes and compares every file.
        **options: reader options, e.g. ``dataset="mpdd"`` or ``image_dir="realiad_1024"``.

    Raises:
        DatasetFormatError: the layout does not match the format, or (``check_masks``) masks
            differ in size from their images (the first 20 listed, then their count).
    """
    if format not in FORMATS:
        raise unknown_name("dataset format", format, FORMATS)
    reader = FORMATS[format]
    allowed = [p for p in inspect.signature(reader).parameters if p not in ("root", "categories")]
    for key in options:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or ";"
            raise ConfigError(
                f"dataset format '{format}': unknown option '{key}'{hint} "
                f"options: {', '.join(allowed) or '(none)'}"
            )
    index = reader(root, categories, **options)
    mismatched = mismatched_masks(index.frame) if check_masks else []
    if mismatched:
        raise DatasetFormatError(
            listing(
                f"masks of another size than their image in {root}",
                mismatched,
                "Masks must have the size of their image (adbench never stretches a mask onto "
                "it): fix or remove the files named above. `adbench data check` lists every "
                "problem of the dataset.",
            )
        )
    return index


__all__ = [
    "FORMATS",
    "load_index",
    "make_synthetic",
    "read_folder",
    "read_mvtec",
    "read_realiad",
    "read_synthetic",
    "read_visa",
]
