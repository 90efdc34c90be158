"""Fixtures of the runner tests: the toy method plugin, a tiny synthetic dataset, a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from runner_helpers import TOY, make_sweep


@pytest.fixture(scope="session")
def toy() -> str:
    """The toy plugin's path, imported into this process."""
    from adbench.runner.plugins import load_plugins

    load_plugins([TOY])
    return TOY


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic categories of 32 px, 4 training and 5 test images each."""
    from adbench.data import make_synthetic

    root = tmp_path_factory.mktemp("data") / "synthetic"
    return make_synthetic(root, n_categories=4, image_size=32, n_train=4, n_test=5)


@pytest.fixture
def sweep(tiny_root: Path, toy: str) -> dict[str, Any]:
    """The default toy sweep."""
    return make_sweep(tiny_root)
