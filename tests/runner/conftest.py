"""Fixtures of the runner tests: the toy method plugin, a tiny synthetic dataset, a sweep, a
one-node SLURM cluster."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import TOY, make_sweep, skip_unless_ci

SLURM_SCRIPT = Path(__file__).parents[2] / "scripts" / "slurm_cluster.sh"
SLURM_TOOLS = ("sbatch", "sacct", "slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd")


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


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """The one-node cluster of ``scripts/slurm_cluster.sh``; yields its partition. Started here
    unless it is up; the last test session using a cluster that tests started stops it (each
    session holds a shared lock on a file of the cluster's directory while it runs). Without
    SLURM installed the tests skip, except under CI, where they fail."""
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        reason = (
            f"SLURM is not installed ({', '.join(missing)} missing): run "
            "'bash scripts/slurm_cluster.sh install' as root"
            if missing
            else "starting the SLURM cluster needs root"
        )
        skip_unless_ci(reason)
    state = Path(os.environ.get("ADBENCH_SLURM_DIR", "/var/lib/adbench-slurm"))
    state.mkdir(parents=True, exist_ok=True)
    started_by_tests = state / ".started-by-tests"
    with (state / ".test-sessions").open("a") as sessions:
        fcntl.flock(sessions, fcntl.LOCK_SH)  # this session uses the cluster
        if _slurm("status").returncode:
            started_by_tests.unlink(missing_ok=True)  # left by a session that died
            start = _slurm("start")
            if start.returncode:
                pytest.fail(f"slurm_cluster.sh start failed:\n{start.stdout}\n{start.stderr}")
            started_by_tests.touch()
        yield os.environ.get("ADBENCH_SLURM_PARTITION", "debug")
        fcntl.flock(sessions, fcntl.LOCK_UN)
        try:
            fcntl.flock(sessions, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another test session still uses the cluster
        if started_by_tests.exists():
            assert _slurm("stop").returncode == 0
            started_by_tests.unlink()


def _slurm(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SLURM_SCRIPT), command], capture_output=True, text=True, timeout=300
    )
