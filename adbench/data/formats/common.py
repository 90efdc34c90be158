"""Helpers shared by the format readers: listing files, collecting problems, building rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from adbench.data.index import listing, unknown_category
from adbench.errors import DatasetFormatError, DatasetNotFoundError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def pick_categories(
    available: Iterable[str], requested: Iterable[str] | str | None, where: str | Path
) -> list[str]:
    """Return the requested categories (all when ``None``) after checking each exists."""
    known = sorted(available)
    if requested is None:
        return known
    if isinstance(requested, str):
        requested = [requested]
    chosen = list(dict.fromkeys(requested))
    for name in chosen:
        if name not in known:
            raise unknown_category(name, known, str(where))
    return chosen


_COLLECTOR: ContextVar[list[str] | None] = ContextVar("adbench_problem_collector", default=None)


@contextmanager
def collecting_problems() -> Iterator[list[str]]:
    """Within this block readers record their problems in the yielded list instead of raising.

    They return the rows they could read (used by ``adbench data check``).
    """
    found: list[str] = []
    token = _COLLECTOR.set(found)
    try:
        yield found
    finally:
        _COLLECTOR.reset(token)


class Problems:
    """Collects every problem a reader finds, then raises one error that lists them all.

    Args:
        root: the dataset root being read.
        layout: a one-line description of the expected layout, repeated in the error.
    """

    def __init__(self, root: Path, layout: str) -> None:
        self.root = root
        self.layout = layout
        self.items: list[str] = []

    def add(self, message: str) -> None:
        """Record one problem (a sentence naming the file or field)."""
        self.items.append(message)

    def raise_if_any(self) -> None:
        """Raise a `DatasetFormatError` listing every problem (kept in ``.problems``)."""
        collector = _COLLECTOR.get()
        if collector is not None:
            collector.extend(self.items)
        elif self.items:
            error = DatasetFormatError(
                listing(
                    f"{self.root} does not match the expected layout",
                    self.items,
                    f"Expected layout: {self.layout}. Run `adbench data check` to list every "
                    "problem; fix or remove the files named above.",
                )
            )
            error.problems = list(self.items)  # type: ignore[attr-defined]
            raise error


def existing_dir(root: str | Path, what: str) -> Path:
    """Return ``root`` as an absolute path, or raise `DatasetNotFoundError` naming it."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"{what} root not found: {path}. Point it at the unpacked dataset folder."
        )
    return path.resolve()


def list_images(folder: Path, problems: Problems) -> list[Path]:
    """Sorted image files directly in ``folder``; other files and empty files are problems."""
    images = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            problems.add(f"unexpected folder {entry}")
        elif entry.suffix.lower() not in IMAGE_EXTENSIONS:
            problems.add(f"not an image file: {entry}")
        elif entry.stat().st_size == 0:
            problems.add(f"empty image file: {entry}")
        else:
            images.append(entry)
    return images


def subfolders(folder: Path) -> list[Path]:
    """Sorted visible sub-folders of ``folder``."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def record(
    path: Path,
    *,
    split: str,
    category: str,
    dataset: str,
    root: Path,
    defect: str = "good",
    mask_path: Path | None = None,
    view: str | None = None,
    object_id: str | None = None,
) -> dict[str, Any]:
    """One index row; ``label`` follows from ``defect`` (``good`` is normal)."""
    return {
        "path": str(path),
        "mask_path": None if mask_path is None else str(mask_path),
        "split": split,
        "label": int(defect != "good"),
        "category": category,
        "defect": defect,
        "dataset": dataset,
        "view": view,
        "object_id": object_id,
        "root": str(root),
    }
