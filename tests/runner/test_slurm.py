"""The slurm launcher through submitit's local executor: one job per cell, resubmission."""

from __future__ import annotations

import json

import pytest
from runner_helpers import make_sweep

from adbench.runner import run_sweep
from adbench.runner.launchers.slurm import JOB
from adbench.runner.rundir import ERROR, RESULT, cell_dir

pytest.importorskip("submitit")


@pytest.mark.slow
def test_slurm_jobs_run_cells_and_failed_cells_are_resubmitted(tmp_path, tiny_root, toy):
    sweep = make_sweep(
        tiny_root,
        categories=[2],
        methods=[
            {"name": "toy", "preset": "tiny"},
            {"name": "toy", "preset": "tiny", "set": {"fail": True}, "label": "broken"},
        ],
        launcher={
            "name": "slurm",
            "cluster": "local",
            "gpus_per_node": 0,
            "cpus_per_task": 1,
            "timeout_min": 10,
            "poll_s": 0.5,
        },
    )
    first = run_sweep(sweep, tmp_path, progress=False, report=False)
    good, broken = first.cells
    assert first.statuses == {good.id: "finished", broken.id: "failed"}
    assert (cell_dir(tmp_path, good.id) / RESULT).is_file()
    error = json.loads((cell_dir(tmp_path, broken.id) / ERROR).read_text())
    assert error["message"] == "toy failure requested by fail: true"
    jobs = {c.id: json.loads((cell_dir(tmp_path, c.id) / JOB).read_text()) for c in first.cells}
    assert jobs[good.id]["job_id"] != jobs[broken.id]["job_id"]
    assert all(j["cluster"] == "local" for j in jobs.values())
    assert (tmp_path / "slurm").is_dir()

    second = run_sweep(sweep, tmp_path, progress=False, report=False)
    assert second.statuses == {good.id: "skipped", broken.id: "failed"}
    resubmitted = json.loads((cell_dir(tmp_path, broken.id) / JOB).read_text())
    assert resubmitted["job_id"] != jobs[broken.id]["job_id"]
    assert json.loads((cell_dir(tmp_path, good.id) / JOB).read_text()) == jobs[good.id]
