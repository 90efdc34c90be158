"""A cell on two CPU processes (gloo DDP) gives the metrics of one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runner_helpers import make_sweep

from adbench.runner import run_sweep
from adbench.runner.rundir import RESULT, cell_dir


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_ddp_cell_matches_one_process(tmp_path, tiny_root, toy):
    # lr 0 keeps the seeded initial weights, so both runs score with the same model; k = 3 gives
    # 15 test images, which a repeating sampler would pad to 16 on two processes.
    methods = [{"name": "toy", "preset": "tiny", "set": {"optim.lr": 0.0}}]
    results = {}
    for devices, strategy in ((1, "auto"), (2, "ddp")):
        sweep = make_sweep(
            tiny_root,
            categories=[3],
            methods=methods,
            trainer={
                "accelerator": "cpu",
                "devices": devices,
                "strategy": strategy,
                "max_epochs": 1,
            },
        )
        report = run_sweep(sweep, tmp_path / str(devices), progress=False, report=False)
        (cell,) = report.cells
        assert report.statuses[cell.id] == "finished", report.summary()
        results[devices] = json.loads(
            (cell_dir(tmp_path / str(devices), cell.id) / RESULT).read_text()
        )
    assert results[1]["trainer"]["world_size"] == 1
    assert results[2]["trainer"]["world_size"] == 2
    assert results[2]["timings"]["n_test"] == 15
    one, two = results[1]["metrics"], results[2]["metrics"]
    assert one.keys() == two.keys()
    for category in one:
        for metric, value in one[category].items():
            assert two[category][metric] == pytest.approx(value, abs=1e-12), (category, metric)


def run_gpu_cell(out: Path, tiny_root: Path, devices: int) -> dict:
    """Run the toy cell (lr 0) on ``devices`` GPUs and return its result after checking that the
    cell recorded the GPUs and their peak memory."""
    methods = [{"name": "toy", "preset": "tiny", "set": {"optim.lr": 0.0}}]
    sweep = make_sweep(
        tiny_root,
        categories=[3],
        methods=methods,
        trainer={
            "accelerator": "gpu",
            "devices": devices,
            "max_epochs": 1,
            "strategy": "ddp" if devices > 1 else "auto",
        },
    )
    report = run_sweep(sweep, out, progress=False, report=False)
    (cell,) = report.cells
    assert report.statuses[cell.id] == "finished", report.summary()
    result = json.loads((cell_dir(out, cell.id) / RESULT).read_text())
    environment = json.loads((cell_dir(out, cell.id) / "environment.json").read_text())
    assert environment["gpus"] and environment["cuda"]
    assert result["memory"]["peak_gpu_mb"] > 0
    assert result["trainer"]["world_size"] == devices
    return result


@pytest.mark.gpu
def test_gpu_cell_records_gpu_memory(tmp_path, tiny_root, toy):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    run_gpu_cell(tmp_path, tiny_root, devices=1)


@pytest.mark.gpu
def test_two_gpu_ddp_cell_matches_one_gpu(tmp_path, tiny_root, toy):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 CUDA devices, found {torch.cuda.device_count()}")
    one = run_gpu_cell(tmp_path / "1", tiny_root, devices=1)["metrics"]
    two = run_gpu_cell(tmp_path / "2", tiny_root, devices=2)["metrics"]
    assert one.keys() == two.keys()
    for category, metrics in one.items():
        for metric, value in metrics.items():
            assert two[category][metric] == pytest.approx(value, abs=1e-6), (category, metric)
