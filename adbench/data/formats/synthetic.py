"""The built-in synthetic dataset: any number of product categories in the MVTec layout.

`make_synthetic` writes ``<root>/<category>/{train/good,test/<defect>,ground_truth/<defect>}``
plus ``meta.json``; the ``synthetic`` reader is the MVTec reader with ``dataset="synthetic"``.
Every file depends only on (seed, category number, split, image number, image size), so the same
arguments give byte-identical files and more categories or images extend a smaller set. The set is
written into a private temporary folder beside ``root`` and renamed into place, so a reader never
sees a partial set; of two processes writing the same set, the second to finish keeps the first's.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from adbench.data.formats.common import existing_dir
from adbench.data.formats.mvtec import read_mvtec
from adbench.data.index import SampleIndex
from adbench.data.synthetic.defects import apply_defect, changed_mask
from adbench.data.synthetic.products import background_sheet, category_spec, draw, sample_scene
from adbench.errors import AdbenchError, ConfigError, DatasetFormatError
from adbench.io import write_atomic

META = "meta.json"
GENERATOR_VERSION = 1
_TRAIN, _TEST_GOOD, _TEST_BAD = 0, 1, 2


def make_synthetic(
    root: str | Path,
    n_categories: int,
    seed: int = 0,
    image_size: int = 64,
    n_train: int = 20,
    n_test: int = 20,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic dataset to ``root`` (MVTec layout) and return the root.

    Args:
        root: output folder; it must not exist or be empty, unless it already holds this exact
            dataset (then nothing is written) or ``overwrite`` is set.
        n_categories: number of categories (any positive number).
        seed: generator seed.
        image_size: side of the square images in pixels.
        n_train: normal training images per category.
        n_test: test images per category, about 40% of them normal.
        overwrite: replace a synthetic dataset with other settings at ``root``.
    """
    for name, value, low in (
        ("n_categories", n_categories, 1),
        ("image_size", image_size, 16),
        ("n_train", n_train, 1),
        ("n_test", n_test, 2),
    ):
        if int(value) != value or value < low:
            raise ConfigError(f"make_synthetic: {name} must be an integer >= {low}, got {value!r}")
    root = Path(root).expanduser().resolve()
    settings = {"seed": seed, "image_size": image_size, "n_train": n_train, "n_test": n_test}
    if not _prepare_root(root, n_categories, settings, overwrite):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.partial-"))
    try:
        _write(scratch / root.name, n_categories, settings)
        try:
            (scratch / root.name).rename(root)  # atomic; POSIX replaces an empty ``root``
        except OSError:
            if _prepare_root(root, n_categories, settings, overwrite=False):
                raise
            # another process wrote this same set first: keep its (byte-identical) copy
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return root


def _write(partial: Path, n_categories: int, settings: dict) -> None:
    """Write every category and then ``meta.json`` into the new folder ``partial``."""
    seed, image_size = settings["seed"], settings["image_size"]
    n_train, n_test = settings["n_train"], settings["n_test"]
    specs = [category_spec(seed, number) for number in range(n_categories)]
    for number, spec in enumerate(specs):
        _write_category(partial / spec.name, spec, seed, number, image_size, n_train, n_test)
    meta = {
        "generator": "adbench.data.make_synthetic",
        "version": GENERATOR_VERSION,
        **settings,
        "n_categories": n_categories,
        "categories": [
            {
                "name": s.name,
                "family": s.family,
                "defects": list(s.defects),
                "texture": s.background["texture"] if s.background["strength"] else None,
            }
            for s in specs
        ],
    }
    write_atomic(partial / META, json.dumps(meta, indent=1) + "\n")


def _prepare_root(root: Path, n_categories: int, settings: dict, overwrite: bool) -> bool:
    """Return whether the dataset must be written; empty ``root`` when it is replaced."""
    if not root.exists() or not any(root.iterdir()):
        return True
    meta_path = root / META
    if not meta_path.is_file():
        raise DatasetFormatError(
            f"{root} is not empty and holds no synthetic dataset ({META} missing); "
            "choose an empty or new folder"
        )
    meta = json.loads(meta_path.read_text())
    wanted = {**settings, "n_categories": n_categories, "version": GENERATOR_VERSION}
    if all(meta.get(k) == v for k, v in wanted.items()):
        return False
    if not overwrite:
        differing = ", ".join(
            f"{k}={meta.get(k)!r} (asked {v!r})" for k, v in wanted.items() if meta.get(k) != v
        )
        raise DatasetFormatError(
            f"{root} holds a synthetic dataset with other settings: {differing}; "
            "pass overwrite=True (--overwrite) or choose another folder"
        )
    for entry in meta.get("categories", []):
        shutil.rmtree(root / entry["name"], ignore_errors=True)
    meta_path.unlink()
    if any(root.iterdir()):
        raise DatasetFormatError(f"{root} holds files that are not part of the synthetic dataset")
    return True


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply the per-image lighting gain and sensor noise, then quantise to uint8."""
    gain = rng.uniform(0.96, 1.04)
    noisy = image * gain + rng.normal(0.0, 0.012, image.shape)
    return np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _write_category(
    folder: Path, spec, seed: int, number: int, size: int, n_train: int, n_test: int
) -> None:
    sheet = background_sheet(spec, size)
    for i in range(n_train):
        rng = np.random.default_rng([seed, number, _TRAIN, i])
        _save(
            _finish(draw(sample_scene(spec, sheet, rng, size)), rng),
            folder / f"train/good/{i:03d}.png",
        )
    n_good = max(1, round(0.4 * n_test))
    for i in range(n_good):
        rng = np.random.default_rng([seed, number, _TEST_GOOD, i])
        _save(
            _finish(draw(sample_scene(spec, sheet, rng, size)), rng),
            folder / f"test/good/{i:03d}.png",
        )
    min_area = max(4, round(6 * (size / 64) ** 2))
    counters = dict.fromkeys(spec.defects, 0)
    for j in range(n_test - n_good):
        kind = spec.defects[j % len(spec.defects)]
        rng = np.random.default_rng([seed, number, _TEST_BAD, j])
        scene = sample_scene(spec, sheet, rng, size)
        normal = draw(scene)
        for _attempt in range(20):
            anomalous = np.clip(apply_defect(kind, scene, normal, rng), 0, 1)
            mask = changed_mask(normal, anomalous)
            if mask.sum() >= min_area:
                break
        else:
            raise AdbenchError(
                f"{spec.name}: could not draw a visible '{kind}' defect "
                f"(at least {min_area} pixels) in 20 tries at size {size}"
            )
        stem = f"{counters[kind]:03d}"
        counters[kind] += 1
        _save(_finish(anomalous, rng), folder / f"test/{kind}/{stem}.png")
        _save(mask.astype(np.uint8) * 255, folder / f"ground_truth/{kind}/{stem}_mask.png")


def read_synthetic(root: str | Path, categories: Iterable[str] | str | None = None) -> SampleIndex:
    """Read a dataset written by `make_synthetic` (the MVTec reader, ``dataset="synthetic"``)."""
    folder = existing_dir(root, "synthetic dataset")
    if not (folder / META).is_file():
        raise DatasetFormatError(
            f"{folder} has no {META}: it was not written by make_synthetic. Create it with "
            f"`adbench data synth {folder} --categories N` or read it with format 'mvtec'"
        )
    return read_mvtec(folder, categories, dataset="synthetic")


def meta_problems(root: str | Path, counts: pd.DataFrame, every_category: bool = True) -> list[str]:
    """Where a synthetic set differs from its ``meta.json`` (used by ``adbench data check``).

    Args:
        root: the dataset root.
        counts: `SampleIndex.counts` of the categories read from ``root``.
        every_category: ``counts`` covers every category on disk (not a selection), so a
            category of ``meta.json`` absent from it is missing.

    Returns:
        One sentence per category of ``meta.json`` that is missing, per category read that it
        does not list, and per split whose image count is not its ``n_train`` / ``n_test``.
    """
    root = Path(root).expanduser().resolve()
    meta_path = root / META
    try:
        meta = json.loads(meta_path.read_text())
        listed = [entry["name"] for entry in meta["categories"]]
        implied = {"train": ("training", meta["n_train"]), "test": ("test", meta["n_test"])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{meta_path} is not a {META} written by make_synthetic: {err!r}"]
    present = set(map(str, counts.index))
    problems = [
        f"category '{name}' is listed in {meta_path} but missing from {root}"
        for name in listed
        if every_category and name not in present
    ]
    problems += [
        f"category '{name}' is in {root} but not listed in {meta_path}"
        for name in sorted(present - set(listed))
    ]
    for name in (name for name in listed if name in present):
        for column, (word, expected) in implied.items():
            found = int(counts.loc[name, column])
            if found != expected:
                problems.append(
                    f"category '{name}': {found} {word} images, {meta_path} implies {expected}"
                )
    return problems
