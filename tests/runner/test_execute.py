"""Running cells: run-directory contents, recorded numbers, resume, failures, locks."""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import pandas as pd
import pytest
import yaml
from runner_helpers import make_sweep

from adbench.data import UnifiedDataModule, load_index
from adbench.engine import evaluate
from adbench.errors import ConfigError, MissingDependencyError
from adbench.registry import get_method_spec
from adbench.runner import CellFailed, load_cells, load_results, load_sweep, run_sweep
from adbench.runner.rundir import LOCK, CellLock, cell_dir, lock_holder


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_root, toy):
    """A finished two-cell sweep (k = 2 and 4)."""
    out = tmp_path_factory.mktemp("run")
    report = run_sweep(make_sweep(tiny_root), out, progress=False)
    return out, report


def test_cell_directory_holds_every_record(finished):
    out, report = finished
    assert sorted(report.statuses.values()) == ["finished", "finished"]
    for cell in report.cells:
        folder = cell_dir(out, cell.id)
        assert yaml.safe_load((folder / "config.yaml").read_text()) == cell.config
        index = load_index("synthetic", cell.config["dataset"]["root"])
        frame = pd.read_parquet(folder / "index.parquet")
        assert sorted(frame["category"].unique()) == list(cell.categories)
        assert len(frame) == len(index.select(cell.categories))
        environment = json.loads((folder / "environment.json").read_text())
        assert environment["packages"]["torch"] and environment["python"]
        assert "Trainer.fit" in (folder / "run.log").read_text()
        result = json.loads((folder / "result.json").read_text())
        assert (folder / result["checkpoint"]).is_file()
        assert result["timings"]["n_test"] == 5 * cell.k
        assert result["timings"]["n_train"] == 4 * cell.k
        assert result["timings"]["train_s"] > 0 and result["timings"]["inference_s"] > 0
        assert result["timings"]["images_per_s"] == pytest.approx(
            result["timings"]["n_test"] / result["timings"]["inference_s"]
        )
        assert result["memory"]["peak_rss_mb"] > 0
        assert result["params"] == {"total": 4 * 3 + 4 + 4, "trainable": 4}
        assert result["trainer"]["kwargs"]["max_epochs"] == 1
        assert not (folder / LOCK).exists()


def test_recorded_metrics_match_the_saved_checkpoint(finished):
    out, report = finished
    cell = report.cells[-1]
    folder = cell_dir(out, cell.id)
    result = json.loads((folder / "result.json").read_text())
    method = get_method_spec("toy").module.from_checkpoint(str(folder / result["checkpoint"]))
    index = load_index("synthetic", cell.config["dataset"]["root"]).select(cell.categories)
    datamodule = UnifiedDataModule(index, image_size=32, batch_size=3)
    table = evaluate(method, datamodule, accelerator="cpu", enable_progress_bar=False)
    for category, row in table.to_frame().iterrows():
        for metric, value in row.items():
            assert result["metrics"][category][metric] == pytest.approx(value, abs=1e-9)


def test_rerun_skips_finished_cells(finished, tiny_root):
    out, report = finished
    stamps = {c.id: os.stat(cell_dir(out, c.id) / "result.json").st_mtime_ns for c in report.cells}
    again = run_sweep(make_sweep(tiny_root), out, progress=False, report=False)
    assert set(again.statuses.values()) == {"skipped"}
    assert stamps == {
        c.id: os.stat(cell_dir(out, c.id) / "result.json").st_mtime_ns for c in report.cells
    }


def test_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_root, toy):
    sweep = make_sweep(
        tiny_root,
        methods=[
            {"name": "toy", "preset": "tiny", "set": {"fail": True}, "label": "broken"},
            {"name": "toy", "preset": "tiny"},
        ],
    )
    report = run_sweep(sweep, tmp_path, progress=False, report=False)
    by_label = {(c.label, c.k): report.statuses[c.id] for c in report.cells}
    assert by_label == {
        ("broken", 2): "failed",
        ("toy", 2): "finished",
        ("broken", 4): "failed",
        ("toy", 4): "finished",
    }
    broken = [c for c in report.cells if c.label == "broken"]
    error = json.loads((cell_dir(tmp_path, broken[0].id) / "error.json").read_text())
    assert error["type"] == "RuntimeError"
    assert error["message"] == "toy failure requested by fail: true"
    assert "training_step" in error["traceback"]
    assert "failed" in report.summary() and "toy failure requested" in report.summary()
    cells = load_cells(tmp_path).set_index("cell_id")
    assert cells.loc[broken[0].id, "status"] == "failed"
    assert "toy failure" in cells.loc[broken[0].id, "error"]
    assert set(load_results(tmp_path)["method"]) == {"toy"}


def test_fail_fast_stops_at_the_first_failure(tmp_path, tiny_root, toy):
    sweep = make_sweep(
        tiny_root,
        methods=[
            {"name": "toy", "preset": "tiny", "set": {"fail": True}, "label": "broken"},
            {"name": "toy", "preset": "tiny"},
        ],
    )
    with pytest.raises(CellFailed, match=r"broken.*toy failure requested"):
        run_sweep(sweep, tmp_path, progress=False, report=False, fail_fast=True)
    assert list(load_cells(tmp_path)["status"]) == ["failed"]


def test_lock_is_exclusive_and_released(tmp_path):
    first, second = CellLock(tmp_path), CellLock(tmp_path)
    assert first.acquire()
    assert not second.acquire()
    assert lock_holder(tmp_path)["pid"] == os.getpid()
    first.release()
    assert lock_holder(tmp_path) is None
    assert second.acquire()
    second.release()
    assert not (tmp_path / LOCK).exists()


def _fake_lock(folder, host, pid, age=0.0):
    path = folder / LOCK
    path.write_text(json.dumps({"host": host, "pid": pid, "token": "other"}))
    os.utime(path, (time.time() - age, time.time() - age))


def test_stale_locks_are_broken(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    _fake_lock(tmp_path, socket.gethostname(), dead)
    assert lock_holder(tmp_path) is None
    lock = CellLock(tmp_path)
    assert lock.acquire()
    lock.release()
    _fake_lock(tmp_path, "another-host", 1, age=5.0)
    assert not CellLock(tmp_path, stale_after=60).acquire()  # a live remote owner
    _fake_lock(tmp_path, "another-host", 1, age=120.0)
    assert CellLock(tmp_path, stale_after=60).acquire()  # its heartbeat stopped


def test_busy_cells_are_left_to_their_runner(tmp_path, tiny_root, toy):
    from adbench.runner import plan

    _, cells = plan(make_sweep(tiny_root))
    held = cell_dir(tmp_path, cells[0].id)
    held.mkdir(parents=True)
    _fake_lock(held, "another-host", 1)
    report = run_sweep(make_sweep(tiny_root), tmp_path, progress=False, report=False)
    assert report.statuses == {cells[0].id: "busy", cells[1].id: "finished"}


def test_ray_launcher_without_ray_names_the_extra(tmp_path, tiny_root, toy, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"adbench-uad\[ray\]"):
        run_sweep(make_sweep(tiny_root, launcher={"name": "ray"}), tmp_path, progress=False)


@pytest.mark.parametrize("pooling", ["mean", "top2"])
def test_view_pooling_of_the_sweep_reaches_the_object_metrics(
    tmp_path, realiad_root, toy, pooling, monkeypatch
):
    import adbench.engine as engine

    used = []
    monkeypatch.setattr(
        engine,
        "evaluate",
        lambda *args, **kwargs: (
            used.append(kwargs["protocol"].view_pooling) or evaluate(*args, **kwargs)
        ),
    )
    sweep = make_sweep(
        realiad_root.root,
        categories=["all"],
        view_pooling=pooling,
        datasets=[{"format": "realiad", "root": str(realiad_root.root)}],
    )
    report = run_sweep(sweep, tmp_path, progress=False)
    (cell,) = report.cells
    assert report.statuses[cell.id] == "finished" and cell.config["view_pooling"] == pooling
    assert used == [pooling]
    folder = cell_dir(tmp_path, cell.id)
    result = json.loads((folder / "result.json").read_text())
    method = get_method_spec("toy").module.from_checkpoint(str(folder / result["checkpoint"]))
    index = load_index("realiad", cell.config["dataset"]["root"])
    datamodule = UnifiedDataModule(
        index, image_size=cell.config["data"]["image_size"], batch_size=3
    )
    expected = evaluate(
        method, datamodule, view_pooling=pooling, accelerator="cpu", enable_progress_bar=False
    ).to_frame()
    assert "S-AUROC" in expected.columns
    for category, row in expected[["S-AUROC", "S-AP", "S-F1max"]].iterrows():
        for metric, value in row.items():
            assert result["metrics"][category][metric] == pytest.approx(value, abs=1e-9)


def test_unknown_view_pooling_is_a_config_error(tiny_root):
    with pytest.raises(ConfigError, match=r"view_pooling: unknown view pooling 'median'"):
        load_sweep(make_sweep(tiny_root, view_pooling="median"))
