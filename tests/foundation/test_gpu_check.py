"""``benchmarks/perf/gpu_check.py``: its dry run on the CPU, failures, the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.perf import gpu_check

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
STEPS = ["contract", "sweep", "paper", "ddp"]


def dry_run(out: Path, *arguments: str) -> tuple[int, dict]:
    """Run the script's dry run into ``out``: (exit code, its JSON)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable,
        "-m",
        "benchmarks.perf.gpu_check",
        "--dry-run",
        "--out",
        str(out),
        *arguments,
    ]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    path = out / "gpu_check.json"
    assert path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done.returncode, json.loads(path.read_text())


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (modification time, size)."""
    return {
        str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()
    }


def steps(data: dict) -> dict[str, dict]:
    return {step["step"]: step for step in data["steps"]}


@pytest.mark.slow
def test_dry_run_records_every_step_and_writes_only_into_out(tmp_path):
    before = snapshot(RESULTS)
    code, data = dry_run(
        tmp_path / "out", "--methods", "naive", "anomalib.stfpm", "mddnet", "--k", "1", "3"
    )
    assert code == 0, data["steps"]
    assert snapshot(RESULTS) == before
    assert (tmp_path / "out" / "gpu_check.md").exists()
    assert [step["step"] for step in data["steps"]] == STEPS
    by_name = steps(data)
    assert all(by_name[name]["status"] == "passed" for name in STEPS[:3]), data["steps"]
    assert by_name["contract"]["device"] == "cpu" and "6 passed" in by_name["contract"]["summary"]
    assert {cell["status"] for cell in by_name["sweep"]["cells"]} == {"finished"}
    assert len(by_name["sweep"]["cells"]) == 3 and by_name["sweep"]["trainer"]["max_epochs"] == 1
    assert by_name["ddp"]["status"] == "skipped" and "2 GPUs" in by_name["ddp"]["reason"]
    rows = {(row["method"], row["k"]): row for row in data["methods"]}
    assert set(rows) == {("naive", None), ("anomalib.stfpm", None), ("mddnet", 1), ("mddnet", 3)}
    for row in rows.values():
        assert row["status"] == "passed", row
        assert row["train_img_s"] > 0 and row["test_img_s"] > 0
        assert row["image_size"] == 64 and row["batch_size"] == 2 and row["train_steps"] == 1
        assert row["peak_gpu_MiB"] is None
    # the paper architecture: wide ResNet-50 teacher, memory of k x 32 slots
    assert rows[("mddnet", 3)]["params_M"] > rows[("mddnet", 1)]["params_M"] > 100
    assert data["environment"]["device"] == "cpu" and data["provenance"]["commit"]


@pytest.mark.slow
def test_a_failing_method_fails_the_run_and_the_other_steps_still_run(tmp_path):
    code, data = dry_run(tmp_path / "out", "--methods", "naive", "no_such_method")
    assert code == 1
    by_name = steps(data)
    assert by_name["contract"]["status"] == "failed"
    assert by_name["sweep"]["status"] == "passed"  # the methods that have a tiny preset
    assert by_name["paper"]["status"] == "failed" and "no_such_method" in by_name["paper"]["error"]
    rows = {row["method"]: row for row in data["methods"]}
    assert rows["naive"]["status"] == "passed" and rows["naive"]["train_img_s"] > 0
    assert rows["no_such_method"]["status"] == "failed" and rows["no_such_method"]["error"]
    assert by_name["ddp"]["status"] == "skipped"


def test_a_tiny_budget_skips_the_steps_that_would_not_fit(tmp_path):
    code, data = dry_run(tmp_path / "out", "--budget-s", "1", "--methods", "naive")
    assert code == 0
    by_name = steps(data)
    assert [step["step"] for step in data["steps"]] == STEPS
    for name in ("contract", "sweep", "paper"):
        assert by_name[name]["status"] == "skipped: budget" and by_name[name]["reason"]
    assert [row["status"] for row in data["methods"]] == ["skipped: budget"]
    assert not (tmp_path / "out" / "work" / "sweep").exists()
    assert by_name["ddp"]["status"] == "skipped" and by_name["ddp"]["reason"]


def test_a_dry_run_refuses_to_write_into_the_benchmark_results():
    with pytest.raises(SystemExit, match="does not write"):
        gpu_check.main(["--dry-run", "--budget-s", "0", "--out", str(RESULTS)])


def test_a_failing_step_is_recorded_and_a_step_that_does_not_fit_is_skipped():
    budget = gpu_check.Budget(60.0)

    def fail() -> dict:
        raise ValueError("broken")

    failed = gpu_check.run_step("one", budget, 1.0, fail)
    assert failed["status"] == "failed" and failed["error"] == "ValueError: broken"
    assert "ValueError" in failed["traceback"] and failed["seconds"] >= 0
    skipped = gpu_check.run_step("two", budget, 120.0, lambda: {"ran": True})
    assert skipped["status"] == "skipped: budget" and "ran" not in skipped
    passed = gpu_check.run_step("three", budget, 1.0, lambda: {"ran": True})
    assert passed["status"] == "passed" and passed["ran"]


def test_contract_targets_are_the_file_or_the_tests_of_the_chosen_methods():
    assert gpu_check.contract_targets(None) == ["tests/methods/test_contract.py"]
    assert gpu_check.contract_targets(["naive"]) == [
        "tests/methods/test_contract.py::test_method_contract[naive]",
        "tests/methods/test_contract.py::test_unknown_override_is_an_error[naive]",
    ]
