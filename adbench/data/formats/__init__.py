"""Dataset format readers.

Each turns a dataset root in its as-downloaded layout into a `SampleIndex`. `FORMATS` maps a
format name to its reader; `load_index` looks one up.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from adbench.data.formats.folder import read_folder
from adbench.data.formats.mvtec import read_mvtec
from adbench.data.formats.realiad import read_realiad
from adbench.data.formats.synthetic import make_synthetic, read_synthetic
from adbench.data.formats.visa import read_visa
from adbench.data.index import SampleIndex
from adbench.errors import ConfigError, did_you_mean, unknown_name

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
    **options: Any,
) -> SampleIndex:
    """Read the dataset at ``root`` in ``format`` (a key of `FORMATS`) into a `SampleIndex`.

    Args:
        format: ``mvtec`` (also MPDD, BTAD), ``visa``, ``realiad`` (also Real-IAD Variety),
            ``folder`` or ``synthetic``.
        root: the dataset folder in its as-downloaded layout.
        categories: category names to keep (all when ``None``).
        **options: reader options, e.g. ``dataset="mpdd"`` or ``image_dir="realiad_1024"``.
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
    return reader(root, categories, **options)


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
