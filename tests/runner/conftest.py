"""Fixtures of the runner tests: the toy method plugin, a tiny synthetic dataset, a sweep, a
one-node SLURM cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import TOY, make_sweep

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
    (and stopped at the end) unless it is already up. Without SLURM installed the tests skip,
    except under CI, where they fail."""
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        reason = (f"SLURM is not installed ({', '.join(missing)} missing): run "
                  "'bash scripts/slurm_cluster.sh install' as root"
                  if missing else "starting the SLURM cluster needs root")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    partition = os.environ.get("ADBENCH_SLURM_PARTITION", "debug")
    status = subprocess.run(["bash", str(SLURM_SCRIPT), "status"], capture_output=True, text=True)
    started = status.returncode != 0
    if started:
        start = subprocess.run(["bash", str(SLURM_SCRIPT), "start"], capture_output=True,
                               text=True, timeout=300)
        if start.returncode:
            pytest.fail(f"slurm_cluster.sh start failed:\n{start.stdout}\n{start.stderr}")
    yield partition
    if started:
        subprocess.run(["bash", str(SLURM_SCRIPT), "stop"], check=True, timeout=120)
