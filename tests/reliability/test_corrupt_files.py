"""Corrupt run files and leftover locks: the bad file is named and kept, the cell runs again."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from reliability_helpers import run_cli, snapshot, toy_sweep

from adbench.runner import load_cells, plan
from adbench.runner.rundir import (
    CELL,
    ERROR,
    LOCK,
    RESULT,
    CellLock,
    cell_dir,
    lock_holder,
    write_json,
)

GARBAGE = b"\x89PNG\r\n\x1a\n\xff\xfe\x00 not a result " * 4
CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "garbage bytes": lambda data: GARBAGE,
    "cut JSON": lambda data: data[: len(data) // 2],
    "no metrics": lambda data: json.dumps(
        {key: value for key, value in json.loads(data).items() if key != "metrics"}
    ).encode(),
}
# how the warning names each problem, after the file's path
PROBLEMS = {
    "garbage bytes": "is not UTF-8 JSON (",
    "cut JSON": "is not UTF-8 JSON (",
    "no metrics": "holds no metrics;",
}
DEAD_PID = 2**22 + 12345  # above the default pid_max: no such process


def _corrupt(out: Path, corruption: str = "garbage bytes") -> tuple[Path, bytes]:
    """Corrupt the result of the sweep's second cell (k = 2): its path and the bad bytes."""
    path = sorted(out.glob(f"cells/*/{RESULT}"), key=lambda p: json.loads(p.read_text())["k"])[1]
    bad = CORRUPTIONS[corruption](path.read_bytes())
    path.write_bytes(bad)
    return path, bad


def _moved_aside(path: Path, bad: bytes, err: str, corruption: str = "garbage bytes") -> bool:
    """Whether ``err`` warns about the bad result at ``path`` without a traceback, and the bad
    bytes are kept beside it under the name the warning gives."""
    (kept,) = path.parent.glob(f"{RESULT}.corrupt-*")
    warning = f"{path} {PROBLEMS[corruption]}"
    moved = f"; moved it to {kept.name}, the cell counts as unfinished\n"
    warned = any(line.startswith(warning) and line.endswith(moved) for line in err.splitlines(True))
    return warned and "Traceback" not in err and kept.read_bytes() == bad


def _sweep_file(root: Path, folder: Path) -> str:
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(toy_sweep(root)))
    return str(path)


def _statuses(listing: str) -> list[str]:
    """The status column of ``adbench run --dry-run``."""
    return [line.split()[-1] for line in listing.splitlines()[1:]]


def _lock(folder: Path, owner: dict | bytes, age: float = 0.0) -> Path:
    """A lock as another runner left it: its owner, or the bytes it holds."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    text = owner if isinstance(owner, bytes) else json.dumps({**owner, "token": "other"}).encode()
    path.write_bytes(text)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_leaderboard_skips_a_corrupt_result(
    corruption: str, run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, bad = _corrupt(run_copy, corruption)
    reference = Path(shutil.copytree(run_copy, tmp_path / "reference"))
    shutil.rmtree(reference / "cells" / path.parent.name)  # the run without the corrupt cell
    expected = run_cli(capsys, "leaderboard", str(reference))

    code, out, err = run_cli(capsys, "leaderboard", str(run_copy))
    assert (code, out) == (0, expected[1]) and expected[0] == 0
    assert _moved_aside(path, bad, err, corruption) and not path.exists()


def test_plot_skips_a_corrupt_result(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, bad = _corrupt(run_copy)
    code, out, err = run_cli(capsys, "plot", "scaling", str(run_copy), "--format", "svg")
    assert code == 0 and out.strip().endswith(".svg")
    assert _moved_aside(path, bad, err) and not path.exists()


def test_dry_run_lists_a_corrupt_result_as_to_run(
    run_copy: Path, small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, bad = _corrupt(run_copy)
    sweep = _sweep_file(small_root, tmp_path)
    code, out, err = run_cli(capsys, "run", sweep, "--out", str(run_copy), "--dry-run")
    assert code == 0 and _statuses(out) == ["finished", "incomplete"]
    assert _moved_aside(path, bad, err) and not path.exists()


def test_run_reruns_a_corrupt_result_and_keeps_the_bad_file(
    run_copy: Path, small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, bad = _corrupt(run_copy)
    _, (first, second) = plan(toy_sweep(small_root))
    assert path.parent == cell_dir(run_copy, second.id)
    finished = snapshot(cell_dir(run_copy, first.id))
    sweep = _sweep_file(small_root, tmp_path)
    code, out, err = run_cli(
        capsys, "run", sweep, "--out", str(run_copy), "--no-progress", "--no-report"
    )
    assert code == 0 and "1 finished, 1 skipped" in out and _moved_aside(path, bad, err)
    assert json.loads(path.read_text())["cell_id"] == second.id
    assert snapshot(cell_dir(run_copy, first.id)) == finished


def test_unreadable_cell_and_error_files_are_named(
    run_copy: Path, small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, (first, second) = plan(toy_sweep(small_root))
    folder = cell_dir(run_copy, second.id)
    (folder / RESULT).unlink()  # as a failed attempt leaves the cell
    (folder / ERROR).write_bytes(GARBAGE)
    cells = load_cells(run_copy).set_index("cell_id")
    assert cells.loc[second.id, "status"] == "failed"
    assert f"{folder / ERROR} is not UTF-8 JSON" in cells.loc[second.id, "error"]

    (folder / CELL).write_bytes(GARBAGE)
    sweep = _sweep_file(small_root, tmp_path)
    code, out, err = run_cli(capsys, "run", sweep, "--out", str(run_copy), "--dry-run")
    assert code == 0 and "Traceback" not in err and f"{folder / CELL} is not UTF-8 JSON" in err
    assert _statuses(out) == ["finished", "new"]
    assert list(load_cells(run_copy)["cell_id"]) == [first.id]


def test_a_lock_left_empty_by_a_kill_is_broken_at_once(
    small_root: Path, tmp_path: Path, plugins, capsys: pytest.CaptureFixture[str]
) -> None:
    _, (first, _) = plan(toy_sweep(small_root))
    writing = _lock(tmp_path / "writing", b"")  # a lock being written right now
    assert lock_holder(writing.parent) == {} and not CellLock(writing.parent).acquire()
    garbage = _lock(tmp_path / "garbage", GARBAGE, age=30.0)
    assert lock_holder(garbage.parent) is None
    with CellLock(garbage.parent) as lock:
        assert lock.acquire() and lock_holder(garbage.parent) == lock.owner

    out = tmp_path / "run"
    left = _lock(cell_dir(out, first.id), b"", age=30.0)  # killed between creating and writing
    sweep = _sweep_file(small_root, tmp_path)
    code, listing, _ = run_cli(capsys, "run", sweep, "--out", str(out), "--dry-run")
    assert code == 0 and _statuses(listing) == ["new", "new"]
    code, printed, err = run_cli(
        capsys, "run", sweep, "--out", str(out), "--no-progress", "--no-report"
    )
    assert code == 0 and "2 finished" in printed
    assert f"broke the lock {left}: it names no owner" in err
    assert not list(cell_dir(out, first.id).glob(f"{LOCK}*"))


def test_a_dead_runners_lock_is_broken_and_a_live_one_is_busy(
    small_root: Path, tmp_path: Path, plugins, capsys: pytest.CaptureFixture[str]
) -> None:
    _, (first, second) = plan(toy_sweep(small_root))
    out, host = tmp_path / "run", socket.gethostname()
    _lock(cell_dir(out, first.id), {"host": host, "pid": DEAD_PID})
    _lock(cell_dir(out, second.id), {"host": host, "pid": os.getpid()})  # a live runner
    sweep = _sweep_file(small_root, tmp_path)
    code, listing, _ = run_cli(capsys, "run", sweep, "--out", str(out), "--dry-run")
    assert code == 0 and _statuses(listing) == ["new", "busy"]

    code, printed, _ = run_cli(
        capsys, "run", sweep, "--out", str(out), "--no-progress", "--no-report"
    )
    assert code == 0 and "1 busy, 1 finished" in printed
    assert (cell_dir(out, first.id) / RESULT).is_file()
    assert not (cell_dir(out, second.id) / RESULT).exists()
    write_json(cell_dir(out, second.id) / CELL, second.to_dict())  # the runner started the cell
    code, listing, _ = run_cli(capsys, "run", sweep, "--out", str(out), "--dry-run")
    assert code == 0 and _statuses(listing) == ["finished", "busy"]
