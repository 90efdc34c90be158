"""Broken dataset files: each error names the file, and finished work survives."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures import mvtec
from PIL import Image
from reliability_helpers import TOY, run_cli, snapshot, toy_sweep

from adbench.data import AnomalyDataset, load_index, prepare_cache
from adbench.data.cache import MANIFEST
from adbench.errors import DatasetFormatError
from adbench.runner import plan, run_sweep
from adbench.runner.rundir import ERROR, RESULT, cell_dir, read_json


def _jpeg_head(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()[:200]


BREAKAGES: dict[str, Callable[[Path], bytes]] = {
    "garbage bytes": lambda path: b"this is not an image\x00" * 8,
    "truncated png": lambda path: path.read_bytes()[:60],
    "truncated jpeg": _jpeg_head,
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_unreadable_image_names_its_path(breakage: str, tmp_path: Path) -> None:
    mvtec.write(tmp_path, {"bottle": (2, 1, {"broken": 1})})
    broken = tmp_path / "bottle" / "train" / "good" / "001.png"
    broken.write_bytes(BREAKAGES[breakage](broken))
    index = load_index("mvtec", tmp_path)
    data = AnomalyDataset(index.frame, index.categories, 8)
    row = int(index.frame.index[index.frame["path"] == str(broken)][0])
    with pytest.raises(DatasetFormatError, match=f"cannot read image {broken}"):
        data[row]
    assert all(data[i].image.shape == (3, 8, 8) for i in range(len(data)) if i != row)


def test_empty_image_file_is_refused_when_listing(tmp_path: Path) -> None:
    mvtec.write(tmp_path, {"bottle": (2, 1, {"broken": 1})})
    empty = tmp_path / "bottle" / "test" / "good" / "000.png"
    empty.write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=f"empty image file: {empty}"):
        load_index("mvtec", tmp_path)


def test_mask_of_the_wrong_size_names_mask_image_and_sizes(tmp_path: Path) -> None:
    mvtec.write(tmp_path, {"bottle": (1, 1, {"broken": 2})})
    mask = tmp_path / "bottle" / "ground_truth" / "broken" / "001_mask.png"
    mvtec.write_mask(mask, size=24)
    index = load_index("mvtec", tmp_path, check_masks=False)  # a sample load checks it too
    data = AnomalyDataset(index.frame, index.categories, 8)
    row = int(index.frame.index[index.frame["mask_path"] == str(mask)][0])
    image = index.frame.at[row, "path"]
    with pytest.raises(DatasetFormatError) as info:
        data[row]
    assert f"mask {mask} is 24x24 px but its image {image} is 16x16 px" in str(info.value)
    good = [i for i in range(len(data)) if i != row]
    assert all(data[i].mask.shape == (1, 8, 8) for i in good)
    out = tmp_path.parent / f"{tmp_path.name}_cache"
    with pytest.raises(DatasetFormatError) as info:
        prepare_cache(tmp_path, "mvtec", out=out, size=8, workers=0, progress=False)
    assert "1 problem(s)" in str(info.value) and f"mask {mask} is 24x24 px" in str(info.value)
    assert not (out / MANIFEST).exists()  # a cache is never built around the bad mask


def test_corrupt_image_fails_only_its_cell(
    small_root: Path, tmp_path: Path, plugins, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(shutil.copytree(small_root, tmp_path / "data"))
    sweep = toy_sweep(root)
    _, (first, second) = plan(sweep)
    (extra,) = set(second.categories) - set(first.categories)
    broken = sorted((root / extra / "train" / "good").glob("*.png"))[0]
    original = broken.read_bytes()
    broken.write_bytes(original[:70])

    code, out, err = run_cli(capsys, "data", "check", str(root), "--format", "synthetic")
    assert code == 1 and "Traceback" not in err and f"cannot read image {broken}" in out

    out = tmp_path / "run"
    report = run_sweep(sweep, out, progress=False, report=False)
    assert report.statuses == {first.id: "finished", second.id: "failed"}
    error = read_json(cell_dir(out, second.id) / ERROR)
    assert error["type"] == "DatasetFormatError" and str(broken) in error["message"]
    assert not (cell_dir(out, second.id) / RESULT).exists()
    finished = snapshot(cell_dir(out, first.id))

    broken.write_bytes(original)  # the user restores the file and runs again
    report = run_sweep(sweep, out, progress=False, report=False)
    assert report.statuses == {first.id: "skipped", second.id: "finished"}
    assert snapshot(cell_dir(out, first.id)) == finished
    assert not (cell_dir(out, second.id) / ERROR).exists()


def test_wrong_layout_stops_before_any_cell(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sweep.yaml"
    sweep = toy_sweep(small_root, datasets=[{"format": "realiad", "root": str(small_root)}])
    path.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", str(path), "--out", str(out), "--plugin", TOY)
    assert code == 2 and "Traceback" not in err
    assert str(small_root) in err and "realiad_jsons" in err
    assert not out.exists()
