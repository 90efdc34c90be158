"""`adbench data prepare`: resized cache round trip, manifest verification, resume after a kill."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adbench.data import UnifiedDataModule, load_index, prepare_cache, verify_cache
from adbench.data.cache import MANIFEST, default_cache_dir
from adbench.errors import DatasetFormatError, DatasetNotFoundError


@pytest.fixture
def root(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic set (a cache is written next to it)."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "synthetic"))


def _batches(dm: UnifiedDataModule) -> list:
    return list(dm.test_dataloader()) + list(dm.dataset("train"))


def test_round_trip_equals_direct_reading(root: Path, tmp_path: Path) -> None:
    result = prepare_cache(
        root, "synthetic", out=tmp_path / "cache", size=16, workers=0, progress=False
    )
    index = load_index("synthetic", root)
    n_files = len(index) + index.frame["mask_path"].notna().sum()
    assert (result.total, result.written, result.reused) == (n_files, n_files, 0)
    cached = UnifiedDataModule(index, image_size=16, batch_size=8, cache_dir=result.out)
    direct = UnifiedDataModule(index, image_size=16, batch_size=8, cache_dir=())
    assert cached.cache_dirs == [result.out] and direct.cache_dirs == []
    assert cached.dataset("test").paths[0].startswith(str(result.out))
    for a, b in zip(_batches(cached), _batches(direct), strict=True):
        assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
        assert torch.equal(torch.as_tensor(a.index), torch.as_tensor(b.index))


def test_manifest_checksums(root: Path, tmp_path: Path) -> None:
    out = prepare_cache(
        root, "synthetic", out=tmp_path / "c", size=8, workers=0, progress=False
    ).out
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["size"] == 8 and manifest["root"] == str(root.resolve())
    assert len(verify_cache(out)) == len(manifest["entries"])
    rel, entry = next(iter(manifest["entries"].items()))
    image = Image.open(out / entry["cache"])
    assert image.size == (8, 8)
    tampered = np.asarray(image).copy()
    tampered[0, 0] = 255 - tampered[0, 0]
    Image.fromarray(tampered).save(out / entry["cache"], compress_level=1)
    with pytest.raises(DatasetFormatError, match=rf"for {rel}\) .*(SHA-256|wrong size)"):
        verify_cache(out)


def test_resume_keeps_complete_files_and_redoes_the_rest(root: Path, tmp_path: Path) -> None:
    out = prepare_cache(
        root, "synthetic", out=tmp_path / "c", size=8, workers=0, progress=False
    ).out
    files = sorted((out / "files").rglob("*.png"))
    (out / MANIFEST).unlink()  # as after a kill: no manifest yet
    for path in files[:3]:
        path.unlink()
    for path in files[3:5]:
        path.write_bytes(path.read_bytes()[:20])  # damaged
    (files[5].parent / f".{files[5].name}.123.tmp").write_bytes(b"partial")
    again = prepare_cache(root, "synthetic", out=out, size=8, workers=2, progress=False)
    assert (again.written, again.reused) == (5, len(files) - 5)
    assert not list((out / "files").rglob("*.tmp"))
    verify_cache(out)


def test_default_location_is_found_by_the_datamodule(root: Path) -> None:
    index = load_index("synthetic", root)
    assert UnifiedDataModule(index, image_size=16).cache_dirs == []
    prepare_cache(root, "synthetic", size=16, workers=0, progress=False)
    assert UnifiedDataModule(index, image_size=16).cache_dirs == [default_cache_dir(root, 16)]
    assert UnifiedDataModule(index, image_size=12).cache_dirs == [default_cache_dir(root, 16)]
    assert UnifiedDataModule(index, image_size=24).cache_dirs == []  # too small: not used
    with pytest.raises(DatasetFormatError, match="smaller than image_size 24"):
        UnifiedDataModule(index, image_size=24, cache_dir=default_cache_dir(root, 16))


def test_partial_cache_is_not_used(root: Path, tmp_path: Path) -> None:
    index = load_index("synthetic", root)
    first = index.categories[0]
    out = prepare_cache(
        root,
        "synthetic",
        out=tmp_path / "c",
        size=16,
        workers=0,
        categories=[first],
        progress=False,
    ).out
    UnifiedDataModule(index.select([first]), image_size=16, cache_dir=out)
    with pytest.raises(DatasetFormatError, match="is not in the cache"):
        UnifiedDataModule(index, image_size=16, cache_dir=out)
    with pytest.raises(DatasetNotFoundError, match="no finished cache"):
        UnifiedDataModule(index, image_size=16, cache_dir=tmp_path / "nothing")


def test_unreadable_sources_are_all_reported(root: Path, tmp_path: Path) -> None:
    broken = sorted(root.glob("*/train/good/*.png"))[:2]
    for path in broken:
        path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DatasetFormatError) as info:
        prepare_cache(root, "synthetic", out=tmp_path / "c", size=8, workers=0, progress=False)
    message = str(info.value)
    assert "2 file(s)" in message and all(str(p) in message for p in broken)
    assert not (tmp_path / "c" / MANIFEST).exists()


def _dataset(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        path = root / "part" / "good" / f"{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)


def test_resume_after_kill(tmp_path: Path) -> None:
    """A run SIGKILLed after 25 files (it kills itself, so the moment is exact) resumes."""
    data, out = tmp_path / "data", tmp_path / "cache"
    _dataset(data, 60)
    script = textwrap.dedent(f"""
        import os, signal
        import adbench.data.cache as cache
        process, done = cache._process, []
        def process_then_die(job):
            if len(done) == 25:
                os.kill(os.getpid(), signal.SIGKILL)
            done.append(job)
            return process(job)
        cache._process = process_then_die
        cache.prepare_cache({str(data)!r}, "folder", out={str(out)!r}, size=32, workers=1,
                            progress=False)
    """)
    killed = subprocess.run([sys.executable, "-c", script], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert len(list(out.rglob("*.png"))) == 25 and not (out / MANIFEST).exists()
    result = prepare_cache(data, "folder", out=out, size=32, workers=2, progress=False)
    assert (result.total, result.reused, result.written) == (60, 25, 35)
    assert len(verify_cache(out)) == 60
