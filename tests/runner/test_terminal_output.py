"""What ``adbench run`` prints: one progress bar, one line of left-out methods, failures in one
line each, the leaderboard; every cell's Lightning and method messages go to its run.log."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from runner_helpers import CHILD_ENV

PLUGIN = str(Path(__file__).with_name("terminal_plugin.py"))
BANNERS = (
    "GPU available",
    "TPU available",
    "LOCAL_RANK",
    "`Trainer.fit` stopped",
    "Loading `train_dataloader`",
)
WARNING_SOURCE = re.compile(r"\.py:\d+: \w*Warning")


def _run(sweep: Path, out: Path, *options: str) -> str:
    process = subprocess.run(
        [sys.executable, "-m", "adbench.cli", "run", str(sweep), "--out", str(out), *options],
        env=CHILD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert process.returncode == 1, process.stdout  # toy_terminal_fails fails
    return process.stdout


@pytest.mark.slow
def test_terminal_shows_progress_left_out_methods_failures_and_leaderboard(tmp_path, tiny_root):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "terminal",
                "methods": "all",
                "preset": "terminal",
                "datasets": [{"format": "synthetic", "root": str(tiny_root)}],
                "categories": [1],
                "seeds": [0],
                "trainer": {"accelerator": "cpu", "max_epochs": 1},
                "plugins": [PLUGIN],
            }
        )
    )
    printed = _run(sweep, tmp_path / "quiet")
    for banner in BANNERS:
        assert banner not in printed
    assert not WARNING_SOURCE.search(printed), printed
    assert "toy_terminal: " not in printed  # the method's message and warning
    left_out = [line for line in printed.splitlines() if "leaving out" in line]
    assert len(left_out) == 1 and left_out[0].startswith("leaving out: ")
    names = set(re.findall(r"(?:: |, )(\S+) \(", left_out[0]))
    assert "toy" in names and "anomalib.padim" in names
    assert not names & {"toy_terminal", "toy_terminal_fails"}
    assert "epoch 1/1, step " in printed and "scoring batch " in printed  # in the cells' bar
    assert "Epoch 0" not in printed and "Predicting" not in printed  # Lightning's bar is off
    failure = [line for line in printed.splitlines() if "RuntimeError: toy failure" in line]
    assert len(failure) == 2  # the moment it fails, and the summary
    assert "Traceback" not in printed
    assert "| toy_terminal |" in printed and "2 cells in" in printed and "1 failed" in printed

    logs = {
        path.parent.name: path.read_text()
        for path in (tmp_path / "quiet" / "cells").glob("*/run.log")
    }
    assert len(logs) == 2
    for log in logs.values():
        assert "GPU available" in log and "toy_terminal: training starts" in log
        assert "toy_terminal: a warning of the method" in log
    assert sum("`Trainer.fit` stopped" in log for log in logs.values()) == 1
    assert sum("Traceback" in log and "toy failure" in log for log in logs.values()) == 1

    verbose = _run(sweep, tmp_path / "verbose", "--verbose")
    assert "GPU available" in verbose and "`Trainer.fit` stopped" in verbose
    assert "toy_terminal: training starts" in verbose and "Traceback" in verbose
