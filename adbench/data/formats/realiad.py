"""Real-IAD and Real-IAD Variety, read through their per-category JSON split files.

```
<root>/realiad_<res>/<category>/OK/S0001/<name>_C<view>_<...>.jpg
<root>/realiad_<res>/<category>/NG/<defect>/S0001/<name>_C<view>_<...>.jpg  (+ mask .png)
<root>/realiad_jsons/[realiad_jsons/]<category>.json
```
Real-IAD Variety has the same structure (``realiadvariety_raw/``,
``realiadvariety_jsons/Real-IAD_Variety_jsons/``). A JSON file is
``{"meta": {"prefix", "normal_class"}, "train": [...], "test": [...]}`` with samples
``{"category", "anomaly_class", "image_path", "mask_path"}`` whose paths are relative to the
category folder. Labels come from the JSON: a view of an anomalous object without a mask is a
normal view.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adbench.data.formats.common import Problems, existing_dir, pick_categories, record, subfolders
from adbench.data.index import SampleIndex
from adbench.errors import DatasetFormatError

LAYOUT = (
    "<root>/realiad_<res>/<category>/{OK,NG}/... images and "
    "<root>/realiad_jsons/[realiad_jsons/]<category>.json split files"
)
_STANDARD_JSON_DIRS = ("realiad_jsons", "real-iad_variety_jsons")
_VIEW = re.compile(r"_C(\d+)(?=[_.])")


def read_realiad(
    root: str | Path,
    categories: Iterable[str] | str | None = None,
    dataset: str | None = None,
    json_dir: str | Path | None = None,
    image_dir: str | Path | None = None,
) -> SampleIndex:
    """Read Real-IAD or Real-IAD Variety.

    Args:
        root: the unpacked dataset folder.
        categories: names to keep (all when ``None``).
        dataset: name stored in the ``dataset`` column; ``realiad`` or ``realiad_variety`` by
            default, from the JSON folder name.
        json_dir: the folder of ``<category>.json`` files (relative to ``root`` or absolute);
            found automatically when the root holds one standard JSON folder.
        image_dir: the image folder (``realiad_1024``, ``realiadvariety_raw``, ...); needed only
            when the root holds several resolutions.
    """
    root = existing_dir(root, "Real-IAD")
    jsons = _json_folder(root, json_dir)
    available = {p.stem: p for p in sorted(jsons.glob("*.json"))}
    chosen = pick_categories(available, categories, jsons)
    name = dataset or ("realiad_variety" if "variety" in str(jsons).lower() else "realiad")
    images = _image_folder(root, jsons, chosen[0], image_dir)
    problems = Problems(root, LAYOUT)
    records = []
    for category in chosen:
        records += _read_json(available[category], category, images, name, root, problems)
    problems.raise_if_any()
    return SampleIndex.from_records(records)


def _resolve(root: Path, option: str | Path) -> Path:
    path = Path(option).expanduser()
    return path if path.is_absolute() else root / path


def _json_folder(root: Path, option: str | Path | None) -> Path:
    """The folder that directly holds the ``<category>.json`` files (flat or nested layout)."""
    if option is not None:
        folder = _resolve(root, option)
        nested = folder / folder.name
        folder = nested if nested.is_dir() and any(nested.glob("*.json")) else folder
        if not any(folder.glob("*.json")):
            raise DatasetFormatError(f"json_dir {folder} holds no <category>.json files")
        return folder
    candidates = [
        d
        for top in subfolders(root)
        for d in (top, *subfolders(top))
        if d.name.lower().endswith("jsons") and any(d.glob("*.json"))
    ]
    standard = [d for d in candidates if d.name.lower() in _STANDARD_JSON_DIRS]
    if len(standard) == 1 or len(candidates) == 1:
        return (standard or candidates)[0]
    if not candidates:
        raise DatasetFormatError(
            f"{root} holds no folder of <category>.json split files (looked for '*jsons' folders "
            f"one and two levels down). Expected layout: {LAYOUT}"
        )
    listing = ", ".join(str(d.relative_to(root)) for d in candidates)
    raise DatasetFormatError(
        f"{root} holds several JSON split folders ({listing}); choose one with json_dir=..."
    )


def _image_folder(root: Path, jsons: Path, category: str, option: str | Path | None) -> Path:
    """The folder whose sub-folders are the categories (``realiad_1024``, ...)."""
    if option is not None:
        folder = _resolve(root, option)
        if not (folder / category).is_dir():
            raise DatasetFormatError(f"image_dir {folder} has no category folder '{category}'")
        return folder
    candidates = [
        d
        for d in (root, *subfolders(root))
        if d != jsons
        and jsons not in d.parents
        and (d / category).is_dir()
        and not d.name.lower().endswith("jsons")
    ]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetFormatError(
            f"no image folder under {root} holds the category folder '{category}'. "
            f"Expected layout: {LAYOUT}"
        )
    listing = ", ".join(d.name for d in candidates)
    raise DatasetFormatError(
        f"{root} holds several image folders with '{category}' ({listing}); "
        "choose one with image_dir=..."
    )


def _read_json(
    path: Path, category: str, images: Path, dataset: str, root: Path, problems: Problems
) -> list[dict[str, Any]]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.add(f"{path}: not readable JSON ({err})")
        return []
    if not isinstance(content, dict) or not all(
        isinstance(content.get(k), list) for k in ("train", "test")
    ):
        problems.add(f"{path}: expected an object with 'train' and 'test' lists of samples")
        return []
    meta = content.get("meta") or {}
    normal = meta.get("normal_class", "OK")
    folder = images / category
    if (folder / category).is_dir():  # archives that unpack into <category>/<category>/
        folder = folder / category
    bases = [folder / (meta.get("prefix") or ""), images / (meta.get("prefix") or "")]
    records = []
    for split in ("train", "test"):
        for number, sample in enumerate(content[split]):
            where = f"{path.name} {split}[{number}]"
            found = _sample_files(sample, where, bases, normal, split, problems)
            if found is None:
                continue
            image, mask, defect = found
            view = _VIEW.search(image.name)
            parent = image.parent.relative_to(folder) if folder in image.parents else image.parent
            records.append(
                record(
                    image,
                    split=split,
                    category=category,
                    dataset=dataset,
                    root=root,
                    defect=defect,
                    mask_path=mask,
                    view=f"C{view.group(1)}" if view else None,
                    object_id=f"{category}/{parent.as_posix()}",
                )
            )
    return records


def _find(bases: list[Path], relative: str) -> Path | None:
    for base in bases:
        if (base / relative).is_file():
            return base / relative
    return None


def _sample_files(
    sample: Any, where: str, bases: list[Path], normal: str, split: str, problems: Problems
) -> tuple[Path, Path | None, str] | None:
    """(image, mask, defect) of one JSON sample; views without a mask are normal."""
    if not isinstance(sample, dict):
        problems.add(f"{where}: expected an object, got {type(sample).__name__}")
        return None
    for field in ("anomaly_class", "image_path"):
        if not isinstance(sample.get(field), str):
            problems.add(f"{where}: field '{field}' is missing or not a string")
            return None
    image = _find(bases, sample["image_path"])
    if image is None:
        problems.add(f"{where}: image_path '{sample['image_path']}' not found ({bases[0]})")
        return None
    mask_rel = sample.get("mask_path")
    mask = None
    if mask_rel is not None:
        mask = _find(bases, mask_rel) if isinstance(mask_rel, str) else None
        if mask is None:
            problems.add(f"{where}: mask_path '{mask_rel}' not found ({bases[0]})")
            return None
    anomalous = sample["anomaly_class"] != normal
    if mask is not None and not anomalous:
        problems.add(f"{where}: a '{normal}' (normal) sample has mask_path '{mask_rel}'")
        return None
    if anomalous and split == "train":
        problems.add(f"{where}: anomalous sample '{sample['image_path']}' in the train split")
        return None
    return image, mask, sample["anomaly_class"] if mask is not None else "good"
