"""A user's own data: a ``good/`` folder, one folder per defect type and optional masks.

```
<root>/good/*.png                         normal images (split into train and test)
<root>/<defect>/*.png                     anomalous images, one folder per defect type
<root>/masks/<defect>/<stem>[_mask].png   optional; when present every anomalous image needs one
```
The root is one category named after the folder, or a folder of such categories. Normal images
are split into train and test by a seeded permutation (``test_fraction`` of them go to test).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from adbench.data.formats.common import (
    Problems,
    existing_dir,
    list_images,
    pick_categories,
    record,
    subfolders,
)
from adbench.data.formats.mvtec import pair_masks
from adbench.data.index import SampleIndex
from adbench.errors import ConfigError, DatasetFormatError

LAYOUT = "<root>/[<category>/]good/*, <root>/[<category>/]<defect>/*, optional masks/<defect>/*"
MASK_FOLDER = "masks"


def read_folder(
    root: str | Path,
    categories: Iterable[str] | str | None = None,
    dataset: str = "folder",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> SampleIndex:
    """Read a generic good/defect folder layout.

    Args:
        root: one category folder (holding ``good/``) or a folder of category folders.
        categories: names to keep (all when ``None``).
        dataset: name stored in the ``dataset`` column.
        test_fraction: share of the normal images held out for testing (at least one when a
            category has two or more normal images).
        seed: seed of the train/test permutation of the normal images.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"folder format: test_fraction must be in (0, 1), got {test_fraction}")
    root = existing_dir(root, "image folder")
    problems = Problems(root, LAYOUT)
    if (root / "good").is_dir():
        folders = {root.name: root}
    else:
        folders = {p.name: p for p in subfolders(root) if (p / "good").is_dir()}
        if not folders:
            raise DatasetFormatError(
                f"{root} has no good/ folder and no category folder with good/ inside. "
                f"Expected layout: {LAYOUT}"
            )
        for other in subfolders(root):
            if other.name not in folders:
                problems.add(f"{other}: not a category folder (it has no good/ folder)")
    chosen = pick_categories(folders, categories, root)
    records = []
    for category in chosen:
        records += _read_category(
            folders[category], category, dataset, root, test_fraction, seed, problems
        )
    problems.raise_if_any()
    return SampleIndex.from_records(records)


def _read_category(
    folder: Path,
    category: str,
    dataset: str,
    root: Path,
    test_fraction: float,
    seed: int,
    problems: Problems,
) -> list[dict[str, Any]]:
    common = {"category": category, "dataset": dataset, "root": root}
    normal = list_images(folder / "good", problems)
    n_test = min(max(round(test_fraction * len(normal)), 1), len(normal) - 1) if normal else 0
    order = np.random.default_rng(seed).permutation(len(normal))
    test_ids = set(order[:n_test].tolist())
    records = [
        record(path, split="test" if i in test_ids else "train", **common)
        for i, path in enumerate(normal)
    ]
    masks_root = folder / MASK_FOLDER
    for sub in subfolders(folder):
        if sub.name in ("good", MASK_FOLDER):
            continue
        images = list_images(sub, problems)
        masks = pair_masks(images, masks_root / sub.name, problems) if masks_root.is_dir() else {}
        records += [
            record(p, split="test", defect=sub.name, mask_path=masks.get(p), **common)
            for p in images
        ]
    if masks_root.is_dir():
        for sub in subfolders(masks_root):
            if not (folder / sub.name).is_dir():
                problems.add(
                    f"{sub}: masks for defect '{sub.name}' but no folder {folder / sub.name}"
                )
    return records
