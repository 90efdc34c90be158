"""Users of adbench see adbench's output, not Lightning's tips or third-party deprecations;
a sweep cell's messages go to its run.log, and to the terminal only when verbose."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

import adbench
from adbench.quiet import TERMINAL, cell_logs, show_messages

FIT = (
    "import sys, adbench.quiet as q\n"
    "if sys.argv[1] == 'loud': q.quiet_third_party = lambda: None\n"
    "from adbench import cli\n"
    "sys.exit(cli.main(sys.argv[2:]))\n"
)


def _fit_output(mode: str, root, out) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "default"}
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            FIT,
            mode,
            "fit",
            "anomalib.padim",
            "--data",
            f"synthetic:{root}",
            "--preset",
            "tiny",
            "--image-size",
            "32",
            "--max-steps",
            "1",
            "--accelerator",
            "cpu",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
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


def _cell_messages() -> None:
    """What a cell logs: a Lightning banner, a method's message, a warning."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
    logging.getLogger("adbench.methods.glad.module").info("GLAD stopping timesteps {}")
    warnings.warn("a warning raised in the cell", UserWarning, stacklevel=1)


@pytest.mark.parametrize("verbose", [False, True])
def test_cell_logs_keep_a_cells_messages_in_its_file_and_off_the_terminal(tmp_path, capfd, verbose):
    lightning = logging.getLogger("lightning.pytorch")
    before = (list(lightning.handlers), lightning.propagate, lightning.level)
    with cell_logs(tmp_path / "run.log", verbose=verbose):
        _cell_messages()
    assert (list(lightning.handlers), lightning.propagate, lightning.level) == before
    written = (tmp_path / "run.log").read_text()
    shown = capfd.readouterr().err
    for text in (
        "GPU available: False",
        "GLAD stopping timesteps {}",
        "a warning raised in the cell",
    ):
        assert text in written
        assert (text in shown) == verbose
    if not verbose:
        assert shown == ""


def test_cell_logs_without_a_file_print_nothing(capfd):
    with cell_logs(None):  # a DDP rank > 0
        _cell_messages()
        logging.getLogger("lightning.pytorch").warning("a warning logged by Lightning")
    assert capfd.readouterr().err == ""


def test_show_messages_prints_adbench_messages_and_plain_warnings(capfd):
    logger = logging.getLogger("adbench")
    level, showwarning = logger.level, warnings.showwarning
    try:
        show_messages()
        logging.getLogger("adbench.runner").info("leaving out: x (no preset 'tiny')")
        logging.getLogger("other.library").info("an info message of another library")
        warnings.warn("a warning outside the cells", UserWarning, stacklevel=1)
    finally:
        logger.removeHandler(TERMINAL)
        logger.setLevel(level)
        warnings.showwarning = showwarning
    shown = capfd.readouterr().err
    assert shown == (
        "leaving out: x (no preset 'tiny')\nUserWarning: a warning outside the cells\n"
    )
