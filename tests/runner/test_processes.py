"""Runners as separate processes: resume after ``kill -9``, two runners on one run directory."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from runner_helpers import make_sweep, run_child

from adbench.runner import load_results, plan, run_sweep
from adbench.runner.rundir import LOCK, RESULT, cell_dir

RUNNER = """
import json, pathlib, sys, time
from adbench.runner import run_sweep
sweep, out = json.loads(sys.argv[1]), sys.argv[2]
if len(sys.argv) > 3:  # start together: say ready, wait for the go file
    pathlib.Path(sys.argv[3] + ".ready." + sys.argv[4]).touch()
    while not pathlib.Path(sys.argv[3]).exists():
        time.sleep(0.01)
report = run_sweep(sweep, out, progress=False, report=False)
print(json.dumps(report.statuses))
"""


def _slow_sweep(root: Path, sleep: float) -> dict:
    return make_sweep(
        root,
        categories=[1, 2, 3, 4],
        methods=[{"name": "toy", "preset": "tiny", "set": {"step_sleep_s": sleep}}],
    )


def _wait(predicate, process, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"runner exited early: {process.communicate()}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("timed out waiting for the runner")
        time.sleep(0.02)


@pytest.mark.slow
def test_resume_after_kill(tmp_path, tiny_root, toy):
    sweep = _slow_sweep(tiny_root, sleep=0.3)
    _, cells = plan(sweep)
    folders = [cell_dir(tmp_path, c.id) for c in cells]

    def two_done_and_one_in_flight():
        done = [f for f in folders if (f / RESULT).exists()]
        running = [f for f in folders if (f / LOCK).exists() and not (f / RESULT).exists()]
        return len(done) >= 2 and running

    child = run_child(RUNNER, json.dumps(sweep), str(tmp_path))
    _wait(two_done_and_one_in_flight, child)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    done = [f for f in folders if (f / RESULT).exists()]
    in_flight = [f for f in folders if (f / LOCK).exists() and not (f / RESULT).exists()]
    assert 2 <= len(done) < 4 and len(in_flight) == 1
    before = {f: ((f / RESULT).read_bytes(), (f / RESULT).stat().st_mtime_ns) for f in done}

    report = run_sweep(sweep, tmp_path, progress=False, report=False)
    for cell, folder in zip(cells, folders, strict=True):
        assert report.statuses[cell.id] == ("skipped" if folder in before else "finished")
        assert (folder / RESULT).is_file() and not (folder / LOCK).exists()
    for folder, (content, mtime) in before.items():
        assert (folder / RESULT).read_bytes() == content
        assert (folder / RESULT).stat().st_mtime_ns == mtime
    assert set(load_results(tmp_path)["cell_id"]) == {c.id for c in cells}


@pytest.mark.slow
def test_two_runners_share_one_directory(tmp_path, tiny_root, toy):
    sweep = _slow_sweep(tiny_root, sleep=0.4)
    _, cells = plan(sweep)
    go = tmp_path / "go"
    out = tmp_path / "run"
    children = [run_child(RUNNER, json.dumps(sweep), str(out), str(go), str(i)) for i in (0, 1)]
    for i, child in enumerate(children):
        _wait(lambda i=i: Path(f"{go}.ready.{i}").exists(), child)
    go.touch()
    statuses = []
    for child in children:
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr
        statuses.append(json.loads(stdout.strip().splitlines()[-1]))
    for cell in cells:
        pair = sorted(s[cell.id] for s in statuses)
        assert pair in (["finished", "skipped"], ["busy", "finished"]), pair
        runner = children[[s[cell.id] for s in statuses].index("finished")]
        result = json.loads((cell_dir(out, cell.id) / RESULT).read_text())
        assert result["pid"] == runner.pid
    assert all("finished" in s.values() for s in statuses)  # both did work
    assert set(load_results(out)["cell_id"]) == {c.id for c in cells}
