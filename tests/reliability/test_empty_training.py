"""A category with no training images is an error, not a category scored by an unseen model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures import folder
from reliability_helpers import run_cli, toy_sweep

from adbench.data import UnifiedDataModule, load_index
from adbench.errors import DatasetFormatError
from adbench.runner import plan, run_sweep
from adbench.runner.rundir import ERROR, RESULT, cell_dir, read_json


def _message(category: str, root: Path) -> str:
    return (
        f"category '{category}' has no training images (normal train split empty) in {root}; "
        "remove it or add images"
    )


def _empty(folder_: Path) -> None:
    for image in folder_.iterdir():
        image.unlink()


@pytest.mark.parametrize("format", ["synthetic", "folder"])
def test_category_without_training_images_is_refused(
    format: str, small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    if format == "synthetic":
        shutil.copytree(small_root, root)
        empty = load_index(format, root).categories[0]
        _empty(root / empty / "train" / "good")
    else:  # the folder format trains on the normal images it does not hold out for testing
        folder.write(root)
        empty = "gizmo"
        _empty(root / empty / "good")
    index = load_index(format, root)
    assert index.counts().loc[empty, "train"] == 0 and index.counts().loc[empty, "test"] > 0

    code, out, err = run_cli(capsys, "data", "check", str(root), "--format", format)
    assert code == 1 and "Traceback" not in err and _message(empty, root) in out

    with pytest.raises(DatasetFormatError) as info:
        UnifiedDataModule(index, image_size=16, batch_size=2).setup("fit")
    assert str(info.value) == _message(empty, root)
    others = [name for name in index.categories if name != empty]
    UnifiedDataModule(index.select(others), image_size=16, batch_size=2).setup("fit")
    UnifiedDataModule(index, image_size=16, batch_size=2).setup("test")  # scoring stays allowed


def test_sweep_cell_with_an_untrained_category_fails(small_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(small_root, tmp_path / "data"))
    sweep = toy_sweep(root)
    _, (first, second) = plan(sweep)
    (extra,) = set(second.categories) - set(first.categories)
    _empty(root / extra / "train" / "good")

    out = tmp_path / "run"
    report = run_sweep(sweep, out, progress=False, report=False)
    assert report.statuses == {first.id: "finished", second.id: "failed"}
    error = read_json(cell_dir(out, second.id) / ERROR)
    assert error["type"] == "DatasetFormatError" and error["message"] == _message(extra, root)
    assert not (cell_dir(out, second.id) / RESULT).exists()
