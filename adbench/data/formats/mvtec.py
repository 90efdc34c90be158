"""MVTec AD layout (also MPDD, BTAD, the converted VisA layout and any MVTec-style set).

```
<root>/<category>/train/good/*.png
<root>/<category>/test/good/*.png
<root>/<category>/test/<defect>/*.png
<root>/<category>/ground_truth/<defect>/<stem>_mask.png   (or <stem>.png)
```
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adbench.data.formats.common import (
    Problems,
    existing_dir,
    list_images,
    pick_categories,
    record,
    subfolders,
)
from adbench.data.index import SampleIndex
from adbench.errors import DatasetFormatError

LAYOUT = (
    "<root>/<category>/train/good/*, <root>/<category>/test/{good,<defect>}/*, "
    "<root>/<category>/ground_truth/<defect>/<stem>_mask.png"
)

# Category names of public MVTec-style datasets: a root holding only these is named after its
# dataset, so combined indexes read "mpdd/tubes" rather than "mvtec/tubes".
KNOWN_DATASETS = {
    "mvtec": {
        "bottle",
        "cable",
        "capsule",
        "carpet",
        "grid",
        "hazelnut",
        "leather",
        "metal_nut",
        "pill",
        "screw",
        "tile",
        "toothbrush",
        "transistor",
        "wood",
        "zipper",
    },
    "mpdd": {
        "bracket_black",
        "bracket_brown",
        "bracket_white",
        "connector",
        "metal_plate",
        "tubes",
    },
    "btad": {"01", "02", "03"},
    "visa": {
        "candle",
        "capsules",
        "cashew",
        "chewinggum",
        "fryum",
        "macaroni1",
        "macaroni2",
        "pcb1",
        "pcb2",
        "pcb3",
        "pcb4",
        "pipe_fryum",
    },
}


def read_mvtec(
    root: str | Path,
    categories: Iterable[str] | str | None = None,
    dataset: str | None = None,
) -> SampleIndex:
    """Read an MVTec-style root.

    Args:
        root: folder holding one sub-folder per category.
        categories: names to keep (all when ``None``).
        dataset: name stored in the ``dataset`` column; by default the public dataset whose
            category names the root holds (``mvtec``, ``mpdd``, ``btad``, ``visa``), else ``mvtec``.
    """
    root = existing_dir(root, "MVTec-style dataset")
    found = [p.name for p in subfolders(root) if (p / "train").is_dir() or (p / "test").is_dir()]
    if not found:
        hint = (
            " It looks like one category folder: pass its parent folder as the root."
            if (root / "train").is_dir() or (root / "test").is_dir()
            else ""
        )
        raise DatasetFormatError(
            f"{root} holds no category folder with train/ or test/ inside.{hint} "
            f"Expected layout: {LAYOUT}"
        )
    chosen = pick_categories(found, categories, root)
    name = dataset or _guess_dataset(found)
    problems = Problems(root, LAYOUT)
    records: list[dict[str, Any]] = []
    for category in chosen:
        records += _read_category(root, category, name, problems)
    problems.raise_if_any()
    return SampleIndex.from_records(records)


def _guess_dataset(found: list[str]) -> str:
    for name, known in KNOWN_DATASETS.items():
        if set(found) <= known:
            return name
    return "mvtec"


def _read_category(
    root: Path, category: str, dataset: str, problems: Problems
) -> list[dict[str, Any]]:
    folder = root / category
    common = {"category": category, "dataset": dataset, "root": root}
    records = []
    train = folder / "train"
    if not (train / "good").is_dir():
        problems.add(f"{train / 'good'} is missing (training images go in train/good)")
    else:
        for sub in subfolders(train):
            if sub.name != "good":
                problems.add(f"{sub}: the train split holds only normal images (train/good)")
        records += [
            record(p, split="train", **common) for p in list_images(train / "good", problems)
        ]
    test = folder / "test"
    if not test.is_dir():
        problems.add(f"{test} is missing")
        return records
    ground_truth = folder / "ground_truth"
    for sub in subfolders(test):
        images = list_images(sub, problems)
        if sub.name == "good":
            records += [record(p, split="test", **common) for p in images]
            continue
        masks = pair_masks(images, ground_truth / sub.name, problems)
        records += [
            record(p, split="test", defect=sub.name, mask_path=masks.get(p), **common)
            for p in images
        ]
    if (ground_truth / "good").is_dir():
        problems.add(f"{ground_truth / 'good'}: normal images have no masks; remove this folder")
    if ground_truth.is_dir():
        for sub in subfolders(ground_truth):
            if not (test / sub.name).is_dir() and sub.name != "good":
                problems.add(
                    f"{sub}: masks for defect '{sub.name}' but no folder {test / sub.name}"
                )
    return records


def pair_masks(images: list[Path], mask_dir: Path, problems: Problems) -> dict[Path, Path]:
    """Pair each image with ``<mask_dir>/<stem>_mask.*`` or ``<mask_dir>/<stem>.*``.

    Every image without a mask and every mask without an image is recorded in ``problems``.
    """
    if not mask_dir.is_dir():
        for image in images:
            problems.add(f"{image} has no mask: folder {mask_dir} is missing")
        return {}
    by_stem: dict[str, Path] = {}
    for mask in list_images(mask_dir, problems):
        stem = mask.stem.removesuffix("_mask")
        if stem in by_stem:
            problems.add(f"two masks for image stem '{stem}': {by_stem[stem]} and {mask}")
        by_stem[stem] = mask
    pairs = {}
    for image in images:
        mask = by_stem.pop(image.stem, None)
        if mask is None:
            problems.add(
                f"{image} has no mask (expected {mask_dir / image.stem}_mask.png "
                f"or {mask_dir / image.stem}.png)"
            )
        else:
            pairs[image] = mask
    for mask in by_stem.values():
        problems.add(
            f"mask without image: {mask} (no image named {mask.stem.removesuffix('_mask')}.*)"
        )
    return pairs
