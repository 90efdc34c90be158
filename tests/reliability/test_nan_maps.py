"""A method that outputs NaN maps: its cell fails naming the sample; other cells are kept."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from reliability_helpers import NAN_TOY, TOY, snapshot, toy_sweep

from adbench.runner import load_results, run_sweep
from adbench.runner.rundir import ERROR, RESULT, cell_dir, read_json


def test_nan_maps_fail_their_cell_and_name_the_sample(
    small_root: Path, tmp_path: Path, plugins
) -> None:
    methods = [{"name": "toy", "preset": "tiny"}, {"name": "toy_nan", "preset": "tiny"}]
    sweep = toy_sweep(small_root, methods=methods, categories=[1], plugins=[TOY, NAN_TOY])
    report = run_sweep(sweep, tmp_path, progress=False, report=False)
    good, bad = report.cells
    assert report.statuses == {good.id: "finished", bad.id: "failed"}
    error = read_json(cell_dir(tmp_path, bad.id) / ERROR)
    assert error["type"] == "InvalidInputError"
    assert "anomaly map of sample index" in error["message"] and "NaN" in error["message"]
    sample = int(error["message"].split("sample index ")[1].split()[0])
    index = pd.read_parquet(cell_dir(tmp_path, bad.id) / "index.parquet")
    assert index.loc[sample, "split"] == "test"  # the index maps the sample to its file
    assert not (cell_dir(tmp_path, bad.id) / RESULT).exists()
    assert set(load_results(tmp_path)["method"]) == {"toy"}  # no NaN reaches the tables

    kept = snapshot(cell_dir(tmp_path, good.id))
    again = run_sweep(sweep, tmp_path, progress=False, report=False)
    assert again.statuses == report.statuses | {good.id: "skipped"}
    assert snapshot(cell_dir(tmp_path, good.id)) == kept
