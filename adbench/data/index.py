"""`SampleIndex`: one validated table row per image, shared by every dataset format.

Columns (see `COLUMNS`): ``path`` (absolute image path), ``mask_path`` (absolute mask path or
missing), ``split`` (``train``/``test``), ``label`` (0 normal, 1 anomalous), ``category``
(categorical), ``defect`` (``good`` for normal rows), ``dataset`` (``mvtec``, ``visa``, ...),
``view`` and ``object_id`` (multi-view datasets, else missing) and ``root`` (the dataset root the
row was read from). Rows are numbered by a `RangeIndex`; that number is ``Sample.index``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from adbench.errors import (
    DatasetFormatError,
    DatasetNotFoundError,
    InvalidInputError,
    UnknownNameError,
    unknown_name,
)

COLUMNS = (
    "path",
    "mask_path",
    "split",
    "label",
    "category",
    "defect",
    "dataset",
    "view",
    "object_id",
    "root",
)
_OPTIONAL = ("mask_path", "view", "object_id")
_MAX_LISTED = 20


class UnknownCategoryError(UnknownNameError, DatasetFormatError):
    """A requested category that the dataset does not have (caught as either parent)."""


def optional(value: Any) -> str | None:
    """Return a nullable string cell as ``str`` or ``None`` (pandas stores missing as NaN/NA)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


class SampleIndex:
    """A validated table of images; build it with a reader (`adbench.data.load_index`).

    Args:
        frame: one row per image with at least the `COLUMNS`.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = _validate(frame)

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]]) -> SampleIndex:
        """Build an index from dicts holding the `COLUMNS`."""
        return cls(pd.DataFrame.from_records(list(records), columns=list(COLUMNS)))

    @classmethod
    def from_parquet(cls, path: str | Path) -> SampleIndex:
        """Read an index written by `to_parquet` (validated again)."""
        path = Path(path)
        if not path.is_file():
            raise DatasetNotFoundError(f"sample index file not found: {path}")
        return cls(pd.read_parquet(path))

    @property
    def frame(self) -> pd.DataFrame:
        """The table (a copy: the index itself never changes)."""
        return self._frame.copy()

    @property
    def categories(self) -> list[str]:
        """Sorted category names."""
        return list(self._frame["category"].cat.categories)

    def object_ids(self) -> pd.Series:
        """Object id of each row of a multi-view dataset, indexed by row id (``Sample.index``).

        Only rows with both ``object_id`` and ``view`` are listed; empty for other datasets.
        """
        frame = self._frame
        rows = frame[frame["object_id"].notna() & frame["view"].notna()]
        return rows["object_id"].astype(str)

    def select(self, categories: Iterable[str]) -> SampleIndex:
        """Keep the rows of ``categories`` (renumbered from 0); an unknown name is an error."""
        wanted = list(dict.fromkeys(categories))
        known = self.categories
        for name in wanted:
            if name not in known:
                raise unknown_category(name, known, "this index")
        rows = self._frame[self._frame["category"].isin(wanted)]
        return SampleIndex(rows.reset_index(drop=True))

    def to_parquet(self, path: str | Path) -> Path:
        """Write the index to ``path`` (parent folders are created) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._frame.to_parquet(path, index=False)
        return path

    def counts(self) -> pd.DataFrame:
        """Per-category summary: train/test images, anomalies, masks."""
        frame = self._frame
        by_category = frame.groupby("category", observed=False)
        anomalous = frame[frame["label"] == 1].groupby("category", observed=False)["defect"]
        summary = pd.DataFrame(
            {
                "train": (frame["split"] == "train")
                .groupby(frame["category"], observed=False)
                .sum(),
                "test": (frame["split"] == "test").groupby(frame["category"], observed=False).sum(),
                "anomalous": by_category["label"].sum(),
                "masks": by_category["mask_path"].count(),
                "defects": anomalous.agg(lambda s: ",".join(sorted(s.unique()))),
            }
        ).astype({"train": int, "test": int, "anomalous": int, "masks": int})
        summary["defects"] = summary["defects"].fillna("")
        summary.index.name = "category"
        return summary

    def __len__(self) -> int:
        return len(self._frame)

    def __repr__(self) -> str:
        datasets = ",".join(sorted(self._frame["dataset"].unique()))
        return f"SampleIndex({len(self)} images, {len(self.categories)} categories, {datasets})"


def concat(indexes: Sequence[SampleIndex]) -> SampleIndex:
    """Combine indexes; with more than one dataset, categories become ``<dataset>/<category>``."""
    if not indexes:
        raise InvalidInputError("concat needs at least one SampleIndex, got none")
    frames = [index.frame for index in indexes]
    datasets = {name for frame in frames for name in frame["dataset"].unique()}
    for frame in frames:
        names = frame["category"].astype(str)
        if len(datasets) > 1:
            names = [
                name if name.startswith(f"{dataset}/") else f"{dataset}/{name}"
                for name, dataset in zip(names, frame["dataset"], strict=True)
            ]
        frame["category"] = list(names)
    return SampleIndex(pd.concat(frames, ignore_index=True))


def untrained_categories(frame: pd.DataFrame) -> dict[str, str]:
    """The categories of an index table that have no training row, each with its dataset root."""
    names = frame["category"].astype(str)
    trained = set(names[frame["split"] == "train"])
    roots = frame["root"].groupby(names).first()
    return {name: str(root) for name, root in roots.items() if name not in trained}


def no_training_images(untrained: Mapping[str, str]) -> str:
    """The one-line error for categories without training images (`untrained_categories`)."""
    names = ", ".join(f"'{name}'" for name in untrained)
    roots = ", ".join(sorted(set(untrained.values())))
    what, has, them = (
        ("category", "has", "it") if len(untrained) == 1 else ("categories", "have", "them")
    )
    return (
        f"{what} {names} {has} no training images (normal train split empty) in {roots}; "
        f"remove {them} or add images"
    )


def unknown_category(name: str, known: list[str], where: str) -> UnknownCategoryError:
    """The error for a category name that ``where`` does not hold, with a suggestion."""
    message = str(unknown_name("category", name, known))
    return UnknownCategoryError(message.replace(f"'{name}'", f"'{name}' in {where}", 1))


def _validate(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the schema and the row rules; return a clean copy numbered by a RangeIndex."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetFormatError(
            f"sample index lacks column(s) {', '.join(missing)}; columns present: "
            f"{', '.join(map(str, frame.columns))}. Build indexes with adbench.data.load_index."
        )
    frame = frame.reset_index(drop=True).copy()
    for column in _OPTIONAL:  # missing cells become None, whatever the column's dtype
        values = frame[column]
        frame[column] = values.astype(object).where(values.notna(), None)
    problems: list[str] = []
    for column in ("path", "split", "category", "defect", "dataset", "root"):
        if frame[column].isna().any():
            row = int(frame.index[frame[column].isna()][0])
            problems.append(f"row {row}: '{column}' is missing")
    if not problems:
        _check_rows(frame, problems)
    if problems:
        raise DatasetFormatError(listing("invalid sample index", problems))
    for column in ("path", "split", "defect", "dataset", "root"):
        frame[column] = frame[column].astype(str)
    frame["label"] = frame["label"].astype("int64")
    names = frame["category"].astype(str)
    frame["category"] = pd.Categorical(names, categories=sorted(names.unique()))
    return frame


def _check_rows(frame: pd.DataFrame, problems: list[str]) -> None:
    duplicated = frame["path"][frame["path"].duplicated()]
    problems += [f"image listed twice: {path}" for path in duplicated.unique()]
    bad_split = frame[~frame["split"].isin(["train", "test"])]
    problems += [
        f"row {i}: split '{s}' is not train or test" for i, s in bad_split["split"].items()
    ]
    bad_label = frame[~frame["label"].isin([0, 1])]
    problems += [f"row {i}: label {v!r} is not 0 or 1" for i, v in bad_label["label"].items()]
    has_mask = frame["mask_path"].notna()
    label = frame["label"]
    for i in frame.index[(frame["split"] == "train") & (label != 0)]:
        problems.append(f"{frame.at[i, 'path']}: the train split must hold only normal images")
    for i in frame.index[(label == 0) & has_mask]:
        problems.append(f"{frame.at[i, 'path']}: a normal image must not have a mask")
    for i in frame.index[(label == 0) != (frame["defect"] == "good")]:
        problems.append(
            f"{frame.at[i, 'path']}: defect '{frame.at[i, 'defect']}' does not match label "
            f"{label[i]} ('good' is for normal images only)"
        )
    origin = frame.groupby(frame["category"].astype(str))[["dataset", "root"]].nunique()
    for name in origin.index[(origin > 1).any(axis=1)]:
        problems.append(
            f"category '{name}' comes from more than one dataset root; give each dataset its "
            "own name (load_index(..., dataset='mpdd')) before combining them"
        )


def listing(title: str, problems: Sequence[str], fix: str = "") -> str:
    """A titled, bullet-listed message of problems (the first 20, then a count)."""
    shown = [f"  - {p}" for p in problems[:_MAX_LISTED]]
    if len(problems) > _MAX_LISTED:
        shown.append(f"  ... and {len(problems) - _MAX_LISTED} more")
    tail = f"\n{fix}" if fix else ""
    return f"{title}: {len(problems)} problem(s)\n" + "\n".join(shown) + tail
