"""A full disk while Lightning writes a cell's checkpoint: that cell fails, no torn file stays."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from reliability_helpers import LINUX_FDS, TOY, run_cli, toy_sweep
from test_disk_full import fill_disk

from adbench.runner import load_results, plan, run_sweep
from adbench.runner.rundir import ERROR, LOCK, RESULT, cell_dir, read_json

BALLAST = str(Path(__file__).with_name("ballast_plugin.py"))
FULL = "No space left on device"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: the first 640 KiB checkpoint of `ballast_plugin` fits, the second not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command to make a small file system")
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def ballast_sweep(root: Path) -> dict:
    """`toy_sweep` of the large-checkpoint method, keeping its one checkpoint (one step)."""
    return toy_sweep(
        root,
        methods=[{"name": "toy_ballast", "preset": "tiny"}],
        plugins=[TOY, BALLAST],
        checkpoints=True,
        trainer={"accelerator": "cpu", "max_steps": 1},
    )


def checkpoint_files(folder: Path) -> list[Path]:
    """Checkpoints and temporary files anywhere under a cell folder."""
    return [p for p in folder.rglob("*") if p.suffix in (".ckpt", ".tmp")]


def test_full_disk_on_a_checkpoint_fails_that_cell_only(small_root: Path, small_disk: Path) -> None:
    sweep = ballast_sweep(small_root)
    _, (first, second) = plan(sweep)
    out = small_disk / "run"
    report = run_sweep(sweep, out, progress=False, report=False)
    assert report.statuses == {first.id: "finished", second.id: "failed"}
    failed = cell_dir(out, second.id)
    message = read_json(failed / ERROR)["message"]
    assert FULL in message and f"'{failed}/logs/" in message and ".ckpt'" in message
    assert "\n" not in message
    assert checkpoint_files(failed) == [] and not (failed / RESULT).exists()
    (kept,) = checkpoint_files(cell_dir(out, first.id))
    assert torch.load(kept, weights_only=False)["state_dict"]["ballast"].numel() > 0
    exported = set(load_results(out)["cell_id"])  # the exports are written after the failure
    assert exported == {first.id} and (out / "results.parquet").is_file()


@LINUX_FDS
def test_simulated_full_disk_on_a_checkpoint_and_the_sweep_goes_on(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins
) -> None:
    sweep = toy_sweep(small_root, checkpoints=True)
    _, (first, second) = plan(sweep)
    failed_writes: list[str] = []

    def first_checkpoint(name: str) -> bool:  # the disk is full for the first checkpoint only
        if name.endswith(".ckpt") and not failed_writes:
            failed_writes.append(name)
            return True
        return False

    fill_disk(monkeypatch, first_checkpoint)
    report = run_sweep(sweep, tmp_path, progress=False, report=False)
    assert report.statuses == {first.id: "failed", second.id: "finished"}
    failed = cell_dir(tmp_path, first.id)
    message = read_json(failed / ERROR)["message"]
    assert message.startswith("[Errno 28]") and FULL in message and ".ckpt'" in message
    assert checkpoint_files(failed) == []
    assert len(checkpoint_files(cell_dir(tmp_path, second.id))) == 1


@LINUX_FDS
def test_disk_still_full_for_the_error_stops_the_sweep_with_one_line(
    small_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    plugins,
) -> None:
    sweep = toy_sweep(small_root, checkpoints=True)
    _, (first, second) = plan(sweep)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "run"
    full: list[str] = []

    def full_from_the_first_checkpoint(name: str) -> bool:
        if name.endswith(".ckpt"):
            full.append(name)
        return bool(full)

    fill_disk(monkeypatch, full_from_the_first_checkpoint)
    code, _, err = run_cli(capsys, "run", str(path), "--out", str(out), "--no-progress")
    folder = cell_dir(out, first.id)
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"adbench: error: [Errno 28] cell {first.id} failed ([Errno 28] {FULL}: "
        f"'{folder}/logs/version_0/checkpoints/{full[0]}'), and writing {folder / ERROR} "
        "failed too"
    )
    assert checkpoint_files(folder) == [] and not (folder / LOCK).exists()
    assert not cell_dir(out, second.id).exists()  # stopped before the next cell

    monkeypatch.undo()  # space was freed: the re-run runs both cells
    report = run_sweep(sweep, out, progress=False, report=False)
    assert report.statuses == {first.id: "finished", second.id: "finished"}
