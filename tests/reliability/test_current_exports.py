"""After a kill, the results files hold every cell finished before it and no file is torn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from reliability_helpers import LINUX_FDS, killed_while_writing, toy_sweep

from adbench.runner import ResultStore, plan, run_sweep
from adbench.runner.rundir import RESULT, cell_dir, read_json
from adbench.runner.store import EXPORT_EVERY_S

# `adbench run` that SIGKILLs itself halfway through writing the second cell's index.parquet
KILLED_WRITING_AN_INDEX = killed_while_writing("index.parquet")


def finished_rows(folder: Path) -> pd.DataFrame:
    """The (category, metric, value) rows of a finished cell, read from its ``result.json``."""
    metrics = read_json(folder / RESULT)["metrics"]
    rows = [(c, m, v) for c, values in metrics.items() for m, v in values.items()]
    return pd.DataFrame(rows, columns=["category", "metric", "value"])


def exported_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The same columns of an exported results table, in the same order."""
    return frame[["category", "metric", "value"]].reset_index(drop=True)


@LINUX_FDS
def test_killed_run_leaves_current_results_and_no_torn_index(
    small_root: Path, tmp_path: Path, plugins
) -> None:
    sweep = toy_sweep(small_root)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    argv = ["run", str(path), "--out", str(out), "--no-progress", "--no-report"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITING_AN_INDEX, *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    _, (first, second) = plan(sweep)
    done, torn = cell_dir(out, first.id), cell_dir(out, second.id)
    assert not (torn / "index.parquet").exists()
    assert len(list(torn.glob(".index.parquet.*.tmp"))) == 1  # the half-written temp file
    expected = finished_rows(done)
    for name, read in (("results.parquet", pd.read_parquet), ("results.csv", pd.read_csv)):
        exported = read(out / name)
        assert set(exported["cell_id"]) == {first.id}, name
        pd.testing.assert_frame_equal(exported_rows(exported), expected, check_dtype=False)

    report = run_sweep(sweep, out, progress=False, report=False)
    assert report.statuses == {first.id: "skipped", second.id: "finished"}
    assert not list(torn.glob(".*.tmp")) and (torn / "index.parquet").is_file()
    assert set(pd.read_parquet(out / "results.parquet")["cell_id"]) == {first.id, second.id}


@pytest.mark.parametrize(
    ("age_s", "rewritten"), [(EXPORT_EVERY_S - 5, False), (EXPORT_EVERY_S + 5, True)]
)
def test_exports_are_refreshed_at_most_every_export_every_s(
    run_copy: Path, age_s: float, rewritten: bool
) -> None:
    exported = run_copy / "results.parquet"
    exported.write_bytes(b"stale")
    then = time.time() - age_s
    os.utime(exported, (then, then))
    ResultStore(run_copy).refresh(EXPORT_EVERY_S)
    assert (exported.read_bytes() != b"stale") == rewritten
