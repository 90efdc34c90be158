"""VisA, read as released (``split_csv/1cls.csv``) or in the converted MVTec-style layout.

```
<root>/split_csv/1cls.csv                      object,split,label,image,mask (CRLF line ends)
<root>/<object>/Data/Images/{Normal,Anomaly}/*.JPG
<root>/<object>/Data/Masks/Anomaly/*.png       non-zero = anomaly
```
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adbench.data.formats.common import Problems, existing_dir, pick_categories, record
from adbench.data.formats.mvtec import read_mvtec
from adbench.data.index import SampleIndex
from adbench.errors import DatasetFormatError

SPLIT_CSV = Path("split_csv") / "1cls.csv"
LAYOUT = (
    "<root>/split_csv/1cls.csv listing <object>/Data/Images/{Normal,Anomaly}/*.JPG and "
    "<object>/Data/Masks/Anomaly/*.png (or the converted MVTec-style layout)"
)
_COLUMNS = ("object", "split", "label", "image", "mask")
_LABELS = {"normal": 0, "anomaly": 1}


def read_visa(
    root: str | Path,
    categories: Iterable[str] | str | None = None,
    dataset: str = "visa",
) -> SampleIndex:
    """Read VisA from its raw release through ``split_csv/1cls.csv``, or a converted copy.

    Args:
        root: the unpacked VisA folder.
        categories: object names to keep (all when ``None``).
        dataset: name stored in the ``dataset`` column.
    """
    root = existing_dir(root, "VisA")
    csv_path = root / SPLIT_CSV
    if not csv_path.is_file():
        if any((p / "train").is_dir() for p in root.iterdir() if p.is_dir()):
            return read_mvtec(root, categories, dataset=dataset)
        raise DatasetFormatError(
            f"{csv_path} not found and {root} is not in the converted MVTec-style layout. "
            f"Expected layout: {LAYOUT}"
        )
    rows = _read_csv(csv_path)
    chosen = set(pick_categories({r["object"] for _, r in rows}, categories, csv_path))
    problems = Problems(root, LAYOUT)
    records = [
        rec
        for line, row in rows
        if row["object"] in chosen
        and (rec := _row_record(root, csv_path, line, row, dataset, problems)) is not None
    ]
    problems.raise_if_any()
    return SampleIndex.from_records(records)


def _read_csv(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of the split file with their line numbers; the header must name every column."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise DatasetFormatError(
                f"{csv_path}: missing column(s) {', '.join(missing)} "
                f"(header: {', '.join(header)}); expected the columns {', '.join(_COLUMNS)}"
            )
        reader.fieldnames = header
        return [
            (line, {k: (v or "").strip() for k, v in row.items() if k in _COLUMNS})
            for line, row in enumerate(reader, start=2)
        ]


def _row_record(
    root: Path, csv_path: Path, line: int, row: dict[str, str], dataset: str, problems: Problems
) -> dict[str, Any] | None:
    where = f"{csv_path.name} line {line}"
    split, label_name = row["split"], row["label"].lower()
    if split not in ("train", "test"):
        problems.add(f"{where}: split '{split}' is not train or test")
        return None
    if label_name not in _LABELS:
        problems.add(f"{where}: label '{row['label']}' is not normal or anomaly")
        return None
    label = _LABELS[label_name]
    image = root / row["image"]
    if not row["image"] or not image.is_file():
        problems.add(f"{where}: image '{row['image']}' not found under {root}")
        return None
    mask = None
    if label and not row["mask"]:
        problems.add(f"{where}: anomalous image {row['image']} has no mask path")
    elif label:
        mask = root / row["mask"]
        if not mask.is_file():
            problems.add(f"{where}: mask '{row['mask']}' not found under {root}")
    elif row["mask"]:
        problems.add(f"{where}: normal image {row['image']} lists a mask '{row['mask']}'")
    if label and split == "train":
        problems.add(f"{where}: anomalous image {row['image']} in the train split")
    return record(
        image,
        split=split,
        category=row["object"],
        dataset=dataset,
        root=root,
        defect="bad" if label else "good",
        mask_path=mask,
    )
