"""A mask of another size than its image stops a run when the dataset is read, before training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image
from reliability_helpers import TOY, run_cli, toy_sweep

from adbench.data import load_index
from adbench.errors import DatasetFormatError


def _wrong_masks(root: Path, count: int) -> list[tuple[Path, Path]]:
    """Rewrite ``count`` masks at 48 px (their images are 32 px); (mask, image) pairs."""
    masks = sorted(root.glob("*/ground_truth/*/*_mask.png"))[:count]
    for mask in masks:
        Image.new("L", (48, 48), 255).save(mask)
    return [
        (mask, mask.parents[2] / "test" / mask.parent.name / mask.name.replace("_mask", ""))
        for mask in masks
    ]


def test_wrong_mask_sizes_stop_the_run_before_any_cell(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(shutil.copytree(small_root, tmp_path / "data"))
    wrong = _wrong_masks(root, 2)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(toy_sweep(root)))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", str(path), "--out", str(out), "--plugin", TOY)
    assert code == 2 and "Traceback" not in err and not out.exists()
    assert f"masks of another size than their image in {root}: 2 problem(s)" in err
    for mask, image in wrong:
        assert f"mask {mask} is 48x48 px but its image {image} is 32x32 px" in err

    with pytest.raises(DatasetFormatError, match="2 problem"):
        load_index("synthetic", root)  # what `adbench fit` and the API read first
    rows = len(load_index("synthetic", small_root))
    assert len(load_index("synthetic", root, check_masks=False)) == rows

    # `adbench data check` lists them its own way, from the decoded files or from their headers
    code, out_text, _ = run_cli(capsys, "data", "check", str(root), "--format", "synthetic")
    assert code == 1 and "2 problem(s)" in out_text
    for mask, _ in wrong:
        assert f"{mask}: mask size (48, 48) differs from image size (32, 32)" in out_text
    code, out_text, _ = run_cli(
        capsys, "data", "check", str(root), "--format", "synthetic", "--no-decode"
    )
    assert code == 1 and "2 problem(s)" in out_text
    assert all(f"mask {mask} is 48x48 px" in out_text for mask, _ in wrong)


def test_an_unreadable_header_is_left_to_the_sample_load(small_root: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(small_root, tmp_path / "data"))
    mask = sorted(root.glob("*/ground_truth/*/*_mask.png"))[0]
    mask.write_bytes(b"not a png at all")
    assert len(load_index("synthetic", root)) == len(load_index("synthetic", small_root))
