"""Interrupted work: a killed ``adbench run`` mid-write and a torn ``data prepare`` cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from reliability_helpers import LINUX_FDS, killed_while_writing, snapshot, toy_sweep

from adbench.data import prepare_cache, verify_cache
from adbench.data.cache import MANIFEST
from adbench.runner import plan, run_sweep
from adbench.runner.rundir import LOCK, RESULT, cell_dir

# `adbench run` that SIGKILLs itself halfway through writing the second cell's result.json
KILLED_WHILE_WRITING = killed_while_writing("result.json")


@LINUX_FDS
def test_run_killed_while_writing_a_result_resumes(
    small_root: Path, tmp_path: Path, plugins
) -> None:
    sweep = toy_sweep(small_root)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_WHILE_WRITING,
            "run",
            str(path),
            "--out",
            str(out),
            "--no-progress",
            "--no-report",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _, (first, second) = plan(sweep)
    done, torn = cell_dir(out, first.id), cell_dir(out, second.id)
    assert (done / RESULT).is_file() and not (torn / RESULT).exists()
    assert len(list(torn.glob(".result.json.*.tmp"))) == 1  # the half-written temp file
    assert (torn / LOCK).is_file()  # held by the dead runner
    finished = snapshot(done)

    report = run_sweep(sweep, out, progress=False, report=False)
    assert report.statuses == {first.id: "skipped", second.id: "finished"}
    assert snapshot(done) == finished
    assert json.loads((torn / RESULT).read_text())["cell_id"] == second.id
    assert not list(torn.glob(".*.tmp")) and not (torn / LOCK).exists()


def test_prepare_resumes_over_a_torn_file_and_a_leftover_temp(
    small_root: Path, tmp_path: Path
) -> None:
    root = Path(shutil.copytree(small_root, tmp_path / "data"))
    out = tmp_path / "cache"
    first = prepare_cache(root, "synthetic", out=out, size=16, workers=0, progress=False)
    files = sorted((out / "files").rglob("*.png"))
    torn, leftover = files[0], files[1].with_name(f".{files[1].name}.999.tmp")
    torn.write_bytes(torn.read_bytes()[:40])  # e.g. a copy interrupted on a network disk
    leftover.write_bytes(b"partial")
    (out / MANIFEST).unlink()  # as a run killed before its end leaves it
    kept = {p: p.read_bytes() for p in files[1:]}

    again = prepare_cache(root, "synthetic", out=out, size=16, workers=0, progress=False)
    assert (again.total, again.written, again.reused) == (first.total, 1, first.total - 1)
    assert not leftover.exists() and len(verify_cache(out)) == first.total
    assert all(p.read_bytes() == data for p, data in kept.items())
