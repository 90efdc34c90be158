"""The slurm launcher against a real one-node SLURM cluster (``scripts/slurm_cluster.sh``): a job
array that gives the local launcher's numbers, a cancelled job resubmitted alone, a requeued job
that finishes its cell. CI installs SLURM, so there a missing SLURM fails instead of skipping."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import import_or_skip, make_sweep

from adbench.runner import leaderboard, load_results, plan, run_sweep
from adbench.runner.launchers.slurm import ACTIVE_STATES, JOB
from adbench.runner.rundir import ERROR, LOCK, RESULT, cell_dir

import_or_skip("submitit")  # CI installs the slurm extra: there a missing one fails


def _launcher(partition: str) -> dict[str, Any]:
    return {
        "name": "slurm",
        "cluster": "slurm",
        "partition": partition,
        "gpus_per_node": 0,
        "cpus_per_task": 1,
        "timeout_min": 10,
        "poll_s": 0.5,
    }


def _frame(out: Path):
    table = load_results(out).drop(columns="protocol")
    return table.sort_values(["cell_id", "category", "metric"]).reset_index(drop=True)


def _job(out: Path, cell_id: str) -> dict[str, Any]:
    return json.loads((cell_dir(out, cell_id) / JOB).read_text())


def _sacct(job_id: str) -> list[str]:
    """The states SLURM's accounting recorded for a job, oldest first (requeues included), once
    it has ended (a job whose result is written may still be exiting)."""
    deadline = time.monotonic() + 30
    while True:
        lines = subprocess.run(
            ["sacct", "-n", "-P", "-D", "-X", "-o", "JobID,State", "-j", job_id],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        states = [
            state.split()[0] for jid, state in (line.split("|") for line in lines) if jid == job_id
        ]
        if (states and states[-1] not in ACTIVE_STATES) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _squeue_state(job_id: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()


def _in_background(sweep: dict[str, Any], out: Path) -> tuple[threading.Thread, dict[str, Any]]:
    """``run_sweep`` in a thread (it waits for the jobs); the report lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = run_sweep(sweep, out, progress=False, report=False)
        except BaseException as err:  # re-raised by the test
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _report(thread: threading.Thread, outcome: dict[str, Any]) -> Any:
    thread.join(180)
    assert not thread.is_alive(), "run_sweep did not return"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["report"]


def _all_submitted(out: Path, cells: list[Any], timeout: float = 60) -> dict[str, Any]:
    """Wait until every cell has its ``job.json``; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return {cell.id: _job(out, cell.id) for cell in cells}
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError(f"the cells' jobs were not submitted within {timeout} s")


def _when_running(out: Path, cell_id: str, timeout: float = 90) -> tuple[str, dict[str, Any]]:
    """Wait until the cell's job is RUNNING and its process holds the cell's lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job_id, lock = (
                _job(out, cell_id)["job_id"],
                json.loads((cell_dir(out, cell_id) / LOCK).read_text()),
            )
        except (OSError, ValueError):
            time.sleep(0.1)
            continue
        if _squeue_state(job_id) == "RUNNING":
            return job_id, lock
        time.sleep(0.1)
    raise AssertionError(f"cell {cell_id} did not start running within {timeout} s")


@pytest.mark.slow
def test_a_job_array_gives_the_local_launchers_results(tmp_path, tiny_root, toy, slurm_cluster):
    sweep = make_sweep(tiny_root, categories=[1, 2, 4])
    local = run_sweep(sweep, tmp_path / "local", progress=False, report=False)
    remote = run_sweep(
        {**sweep, "launcher": _launcher(slurm_cluster)},
        tmp_path / "slurm",
        progress=False,
        report=False,
    )
    assert remote.statuses == dict.fromkeys(local.statuses, "finished")
    assert _frame(tmp_path / "slurm").equals(_frame(tmp_path / "local"))
    tables = [leaderboard(tmp_path / name, fmt="csv", cost=False) for name in ("local", "slurm")]
    assert tables[0] == tables[1]
    jobs = [_job(tmp_path / "slurm", cell.id) for cell in remote.cells]
    array = {job["job_id"].split("_")[0] for job in jobs}
    assert len(array) == 1 and len({job["job_id"] for job in jobs}) == len(jobs)
    for cell, job in zip(remote.cells, jobs, strict=True):
        assert job["cluster"] == "slurm" and _sacct(job["job_id"]) == ["COMPLETED"]
        result = json.loads((cell_dir(tmp_path / "slurm", cell.id) / RESULT).read_text())
        local_result = json.loads((cell_dir(tmp_path / "local", cell.id) / RESULT).read_text())
        assert result["metrics"] == local_result["metrics"]
        assert (tmp_path / "slurm" / "slurm" / job["job_id"]).is_dir()  # DIR/slurm/<jobid>


@pytest.mark.slow
def test_a_cancelled_job_alone_is_resubmitted(tmp_path, tiny_root, toy, slurm_cluster):
    sweep = make_sweep(
        tiny_root,
        categories=[2],
        launcher=_launcher(slurm_cluster),
        methods=[
            {"name": "toy", "preset": "tiny", "set": {"step_sleep_s": 3.0}, "label": "slow"},
            {"name": "toy", "preset": "tiny"},
            {"name": "toy", "preset": "tiny", "set": {"channels": 8}, "label": "wide"},
        ],
    )
    _, cells = plan(sweep)
    slow = cells[0]
    thread, outcome = _in_background(sweep, tmp_path)
    submitted = _all_submitted(tmp_path, cells)
    meanwhile = run_sweep(
        {**sweep, "launcher": {**sweep["launcher"], "wait": False}},
        tmp_path,
        progress=False,
        report=False,
    )  # a re-launch while the jobs are queued
    assert "queued" in meanwhile.statuses.values()  # 3 jobs on 2 CPUs: one at least pending
    assert set(meanwhile.statuses.values()) <= {"queued", "busy"}  # "busy": it holds the lock
    assert {c.id: _job(tmp_path, c.id) for c in cells} == submitted
    job_id, _ = _when_running(tmp_path, slow.id)
    subprocess.run(["scancel", job_id], check=True)
    first = _report(thread, outcome)
    assert first.statuses == {c.id: "failed" if c.id == slow.id else "finished" for c in cells}
    assert _sacct(job_id) == ["CANCELLED"]
    error = json.loads((cell_dir(tmp_path, slow.id) / ERROR).read_text())
    assert error["type"] == "JobKilled"
    assert error["message"] == f"job {job_id} ended CANCELLED before its cell finished"
    done = [c for c in cells if c.id != slow.id]
    before = {
        c.id: ((cell_dir(tmp_path, c.id) / RESULT).read_bytes(), _job(tmp_path, c.id)) for c in done
    }

    second = run_sweep(sweep, tmp_path, progress=False, report=False)
    assert second.statuses == {c.id: "finished" if c.id == slow.id else "skipped" for c in cells}
    assert {
        c.id: ((cell_dir(tmp_path, c.id) / RESULT).read_bytes(), _job(tmp_path, c.id)) for c in done
    } == before
    resubmitted = _job(tmp_path, slow.id)["job_id"]
    assert resubmitted != job_id and _sacct(resubmitted) == ["COMPLETED"]
    assert not (cell_dir(tmp_path, slow.id) / ERROR).exists()
    assert set(load_results(tmp_path)["cell_id"]) == {c.id for c in cells}


@pytest.mark.slow
def test_a_requeued_job_finishes_its_cell(tmp_path, tiny_root, toy, slurm_cluster):
    sweep = make_sweep(
        tiny_root,
        categories=[2],
        launcher=_launcher(slurm_cluster),
        methods=[{"name": "toy", "preset": "tiny", "set": {"step_sleep_s": 3.0}, "label": "slow"}],
    )
    _, (cell,) = plan(sweep)
    thread, outcome = _in_background(sweep, tmp_path)
    job_id, lock = _when_running(tmp_path, cell.id)
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    report = _report(thread, outcome)
    assert report.statuses == {cell.id: "finished"}
    assert _job(tmp_path, cell.id)["job_id"] == job_id  # the same job, run twice
    assert _sacct(job_id) == ["REQUEUED", "COMPLETED"]
    result = json.loads((cell_dir(tmp_path, cell.id) / RESULT).read_text())
    assert result["pid"] != lock["pid"]  # the second run broke the killed first run's lock
    assert not (cell_dir(tmp_path, cell.id) / LOCK).exists()
