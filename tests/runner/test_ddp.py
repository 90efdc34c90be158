"""A cell on two CPU processes (gloo DDP) gives the metrics of one process."""

from __future__ import annotations

import json

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
        sweep = make_sweep(tiny_root, categories=[3], methods=methods,
                           trainer={"accelerator": "cpu", "devices": devices,
                                    "strategy": strategy, "max_epochs": 1})
        report = run_sweep(sweep, tmp_path / str(devices), progress=False, report=False)
        (cell,) = report.cells
        assert report.statuses[cell.id] == "finished", report.summary()
        results[devices] = json.loads((cell_dir(tmp_path / str(devices), cell.id) / RESULT)
                                      .read_text())
    assert results[1]["trainer"]["world_size"] == 1
    assert results[2]["trainer"]["world_size"] == 2
    assert results[2]["timings"]["n_test"] == 15
    one, two = results[1]["metrics"], results[2]["metrics"]
    assert one.keys() == two.keys()
    for category in one:
        for metric, value in one[category].items():
            assert two[category][metric] == pytest.approx(value, abs=1e-12), (category, metric)


@pytest.mark.gpu
def test_gpu_cells_record_gpu_memory_and_ddp_matches(tmp_path, tiny_root, toy):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gpus = min(2, torch.cuda.device_count())
    methods = [{"name": "toy", "preset": "tiny", "set": {"optim.lr": 0.0}}]
    results = {}
    for devices in sorted({1, gpus}):
        sweep = make_sweep(tiny_root, categories=[3], methods=methods,
                           trainer={"accelerator": "gpu", "devices": devices, "max_epochs": 1,
                                    "strategy": "ddp" if devices > 1 else "auto"})
        out = tmp_path / str(devices)
        report = run_sweep(sweep, out, progress=False, report=False)
        (cell,) = report.cells
        assert report.statuses[cell.id] == "finished", report.summary()
        results[devices] = json.loads((cell_dir(out, cell.id) / RESULT).read_text())
        environment = json.loads((cell_dir(out, cell.id) / "environment.json").read_text())
        assert environment["gpus"] and environment["cuda"]
        assert results[devices]["memory"]["peak_gpu_mb"] > 0
        assert results[devices]["trainer"]["world_size"] == devices
    for category, metrics in results[1]["metrics"].items():
        for metric, value in metrics.items():
            assert results[gpus]["metrics"][category][metric] == pytest.approx(value, abs=1e-6)
