"""Helpers shared by the runner tests: the toy plugin path, sweep dicts, child processes."""

from __future__ import annotations

import copy
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

TOY = str(Path(__file__).with_name("toy_plugin.py"))
CHILD_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}


def make_sweep(root: Path, **changes: Any) -> dict[str, Any]:
    """A sweep of the toy method on the synthetic dataset at ``root`` (2 cells by default)."""
    sweep = {
        "name": "test",
        "methods": [{"name": "toy", "preset": "tiny"}],
        "datasets": [{"format": "synthetic", "root": str(root)}],
        "categories": [2, 4],
        "seeds": [0],
        "trainer": {"accelerator": "cpu", "max_epochs": 1},
        "plugins": [TOY],
    }
    sweep.update(copy.deepcopy(changes))
    return sweep


def run_child(code: str, *args: str) -> subprocess.Popen:
    """Start ``python -c code args...`` in a new process group (so a test can kill all of it)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=CHILD_ENV,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip a test whose engine or package is missing, except under CI (which installs every
    one of them): there the test fails, so a missing install step cannot pass unnoticed."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason, allow_module_level=True)


def import_or_skip(module: str) -> Any:
    """``import module``, or `skip_unless_ci` when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        skip_unless_ci(f"{module} is not installed: {err}")
