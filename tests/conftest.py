"""Session-wide fixtures: tiny generated datasets, each in its format's as-downloaded layout."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from fixtures import folder, mvtec, realiad, visa


class Generated(NamedTuple):
    """A generated dataset root and its expected per-category counts."""

    root: Path
    expected: dict


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic categories x (8 train + 8 test) images of 32 px."""
    from adbench.data import make_synthetic

    root = tmp_path_factory.mktemp("synthetic") / "data"
    return make_synthetic(root, n_categories=4, seed=0, image_size=32, n_train=8, n_test=8)


@pytest.fixture(scope="session")
def mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("mvtec")
    return Generated(root, mvtec.write(root))


@pytest.fixture(scope="session")
def visa_root(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("visa")
    return Generated(root, visa.write(root))


@pytest.fixture(scope="session")
def realiad_root(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("realiad")
    return Generated(root, realiad.write(root))


@pytest.fixture(scope="session")
def variety_root(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("variety")
    return Generated(root, realiad.write(root, variety=True))


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    root = tmp_path_factory.mktemp("folder")
    return Generated(root, folder.write(root))


@pytest.fixture
def empty_offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The model hub is offline and its caches (hub and torch hub) are empty folders."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return cache
