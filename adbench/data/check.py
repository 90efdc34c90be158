"""``adbench data check``: validate a dataset root and summarise it per category."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from adbench.data.dataset import decode_image, mismatched_masks
from adbench.data.formats import load_index
from adbench.data.formats.common import collecting_problems
from adbench.data.formats.synthetic import meta_problems
from adbench.data.index import no_training_images, optional, untrained_categories
from adbench.errors import DatasetFormatError


@dataclass(frozen=True)
class CheckReport:
    """The outcome of `check_dataset`.

    Attributes:
        root: the dataset root.
        format: its format.
        summary: per category: train, test, anomalous, masks, defects.
        problems: every problem found (empty when the root is valid).
    """

    root: Path
    format: str
    summary: pd.DataFrame
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{self.root} ({self.format}): {len(self.summary)} categories"]
        if len(self.summary):
            table = self.summary.copy()
            table.loc["total"] = [*table[["train", "test", "anomalous", "masks"]].sum(), ""]
            lines.append(table.to_string())
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def _file_problems(row: tuple[str, str | None]) -> list[str]:
    """Decode an image and its mask fully; a mask must have the image's size."""
    path, mask_path = row
    found = []
    try:
        size = decode_image(path, "RGB", None).size
    except DatasetFormatError as err:
        return [str(err)]
    if mask_path is not None:
        try:
            mask_size = decode_image(mask_path, "L", None).size
        except DatasetFormatError as err:
            return [str(err)]
        if mask_size != size:
            found.append(f"{mask_path}: mask size {mask_size} differs from image size {size}")
    return found


def check_dataset(
    root: str | Path,
    format: str,
    categories: Iterable[str] | None = None,
    decode: bool = True,
    workers: int = 4,
    progress: bool = True,
    **options: Any,
) -> CheckReport:
    """Read a dataset root, collecting every problem, then decode every file.

    Problems are layout errors, categories without training images, masks of the wrong size
    (from the decoded files, or from the file headers without ``decode``) and, for a synthetic
    set, differences from its ``meta.json``; with ``decode``, unreadable files.

    Args:
        root: the dataset root.
        format: its format (see `adbench.data.FORMATS`).
        categories: categories to check (all when ``None``).
        decode: fully decode every image and mask (finds truncated files; slow on huge sets).
        workers: decoding threads.
        progress: show a progress bar while decoding.
        **options: reader options.
    """
    with collecting_problems() as problems:
        try:
            index = load_index(format, root, categories, check_masks=False, **options)
        except DatasetFormatError as err:
            problems.extend(getattr(err, "problems", [str(err)]))
            index = None
    summary = pd.DataFrame(columns=["train", "test", "anomalous", "masks", "defects"])
    if index is not None:
        summary = index.counts()
        untrained = untrained_categories(index.frame)
        problems.extend(no_training_images({name: where}) for name, where in untrained.items())
        if format == "synthetic":
            problems.extend(meta_problems(root, summary, every_category=categories is None))
        if decode:
            frame = index.frame
            rows = list(zip(frame["path"], map(optional, frame["mask_path"]), strict=True))
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                results = pool.map(_file_problems, rows)
                for found in tqdm(results, total=len(rows), desc="decode", disable=not progress):
                    problems.extend(found)
        else:
            problems.extend(mismatched_masks(index.frame))
    return CheckReport(Path(root), format, summary, list(problems))
