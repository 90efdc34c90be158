"""A full disk while writing results: the previous file stays intact and no temp file is left."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import LINUX_FDS, TOY, run_cli, snapshot, toy_sweep

import adbench.io
from adbench.runner import load_cells, plan, run_sweep
from adbench.runner.rundir import ERROR, RESULT, cell_dir, read_json

pytestmark = LINUX_FDS


class _FullDisk:
    """A file handle whose first write stores half the data, then fails with ENOSPC."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill_disk(monkeypatch: pytest.MonkeyPatch, full: Callable[[str], bool]) -> None:
    """Make `adbench.io.write_atomic` hit a full disk for targets whose name satisfies ``full``."""
    real = adbench.io.os.fdopen

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        handle = real(fd, *args, **kwargs)
        temp = Path(os.readlink(f"/proc/self/fd/{fd}")).name  # ".<target name>.<random>.tmp"
        return _FullDisk(handle) if full(temp[1:].rsplit(".", 2)[0]) else handle

    monkeypatch.setattr(adbench.io.os, "fdopen", fdopen)


def test_failed_write_keeps_the_previous_file_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "leaderboard.md"
    adbench.io.write_atomic(target, "previous table")
    fill_disk(monkeypatch, lambda name: True)
    with pytest.raises(OSError) as info:
        adbench.io.write_atomic(target, "new table" * 100)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "previous table"
    assert [p.name for p in tmp_path.iterdir()] == ["leaderboard.md"]


def test_disk_full_on_the_results_export_keeps_every_file(
    run_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    plugins,
) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text((run_copy / "sweep.yaml").read_text())  # the sweep the run was made with
    before = snapshot(run_copy)
    fill_disk(monkeypatch, lambda name: name == "results.parquet")
    code, _, err = run_cli(
        capsys, "run", str(path), "--out", str(run_copy), "--plugin", TOY, "--no-progress"
    )
    assert code == 1 and "Traceback" not in err
    assert "No space left on device" in err and str(run_copy / "results.parquet") in err
    assert snapshot(run_copy) == before  # the skipped cells and every earlier export


def test_disk_full_on_a_cell_result_fails_that_cell_only(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins
) -> None:
    sweep = toy_sweep(small_root)
    _, (first, second) = plan(sweep)
    run_sweep(sweep, tmp_path, progress=False, report=False)
    (cell_dir(tmp_path, second.id) / RESULT).unlink()  # the second cell must run again
    kept = snapshot(cell_dir(tmp_path, first.id))
    fill_disk(monkeypatch, lambda name: name == RESULT)
    report = run_sweep(sweep, tmp_path, progress=False, report=False)
    assert report.statuses == {first.id: "skipped", second.id: "failed"}
    folder = cell_dir(tmp_path, second.id)
    error = read_json(folder / ERROR)
    assert "No space left on device" in error["message"]
    assert str(folder / RESULT) in error["message"]
    assert not (folder / RESULT).exists() and not list(folder.glob(".*.tmp"))
    assert snapshot(cell_dir(tmp_path, first.id)) == kept
    statuses = load_cells(tmp_path).set_index("cell_id")["status"]
    assert statuses.to_dict() == {first.id: "finished", second.id: "failed"}
