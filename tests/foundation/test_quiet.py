"""Users of adbench see adbench's output, not Lightning's tips or third-party deprecations."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import adbench

FIT = ("import sys, adbench.quiet as q\n"
       "if sys.argv[1] == 'loud': q.quiet_third_party = lambda: None\n"
       "from adbench import cli\n"
       "sys.exit(cli.main(sys.argv[2:]))\n")


def _fit_output(mode: str, root, out) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}
    process = subprocess.run(
        [sys.executable, "-c", FIT, mode, "fit", "anomalib.padim", "--data", f"synthetic:{root}",
         "--preset", "tiny", "--image-size", "32", "--max-steps", "1", "--accelerator", "cpu",
         "--out", str(out)], env=env, capture_output=True, text=True, check=True)
    return process.stdout + process.stderr


@pytest.mark.slow
def test_fit_output_has_no_tips_or_third_party_deprecations(tmp_path):
    root = tmp_path / "data"
    adbench.make_synthetic(root, n_categories=1, seed=0, image_size=32, n_train=4, n_test=4)
    loud = _fit_output("loud", root, tmp_path / "loud")
    assert "Tip:" in loud and "FutureWarning" in loud  # the noise exists without the filters
    quiet = _fit_output("quiet", root, tmp_path / "quiet")
    assert "Tip:" not in quiet and "FutureWarning" not in quiet
    assert "DeprecationWarning" not in quiet
    assert "I-AUROC" in quiet and "Predicting" in quiet  # adbench's table and progress stay
