"""Fixtures of the reliability tests: a tiny synthetic set and a finished toy sweep."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from reliability_helpers import NAN_TOY, TOY, toy_sweep


@pytest.fixture(scope="session")
def plugins() -> None:
    """The toy plugins, imported into this process."""
    from adbench.runner.plugins import load_plugins

    load_plugins([TOY, NAN_TOY])


@pytest.fixture(scope="session")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 synthetic categories of 32 px, 3 training and 4 test images each."""
    from adbench.data import make_synthetic

    root = tmp_path_factory.mktemp("reliability") / "synthetic"
    return make_synthetic(root, n_categories=3, image_size=32, n_train=3, n_test=4)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, small_root: Path, plugins) -> Path:
    """A run directory with both cells of `toy_sweep` finished (do not modify: copy it)."""
    from adbench.runner import run_sweep

    out = tmp_path_factory.mktemp("finished") / "run"
    report = run_sweep(toy_sweep(small_root), out, progress=False)
    assert set(report.statuses.values()) == {"finished"}
    return out


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of `finished_run`."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))
