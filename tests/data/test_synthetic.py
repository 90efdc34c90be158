"""The built-in synthetic dataset: determinism, variety, exact visible masks, difficulty."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adbench.baselines.naive import mean_image_auroc
from adbench.data import UnifiedDataModule, load_index, make_synthetic
from adbench.data.synthetic.defects import CHANGE_THRESHOLD, DEFECTS, apply_defect, changed_mask
from adbench.data.synthetic.products import (
    FAMILIES,
    background_sheet,
    category_spec,
    draw,
    sample_scene,
)
from adbench.errors import ConfigError, DatasetFormatError


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    settings = {"n_categories": 4, "image_size": 32, "n_train": 3, "n_test": 5}
    first = _digests(make_synthetic(tmp_path / "a", seed=5, **settings))
    second = _digests(make_synthetic(tmp_path / "b", seed=5, **settings))
    other = _digests(make_synthetic(tmp_path / "c", seed=6, **settings))
    assert first == second
    assert len(first) == 4 * (3 + 5 + 3) + 1  # train, test, masks of 3 anomalies, meta.json
    images = [k for k in first if k.endswith(".png")]
    assert not {first[k] for k in images} & {other.get(k) for k in images}


def test_more_categories_extend_a_smaller_set(tmp_path: Path) -> None:
    small = _digests(make_synthetic(tmp_path / "small", 2, image_size=32, n_train=2, n_test=4))
    large = _digests(make_synthetic(tmp_path / "large", 3, image_size=32, n_train=2, n_test=4))
    shared = [k for k in small if k != "meta.json"]
    assert all(small[k] == large[k] for k in shared)
    assert len(large) > len(small)


def test_at_least_200_distinct_categories() -> None:
    specs = [category_spec(0, n) for n in range(200)]
    assert len({s.name for s in specs}) == 200
    assert {s.family for s in specs} == set(FAMILIES)
    assert {d for s in specs for d in s.defects} == set(DEFECTS)
    assert all(len(s.defects) >= 3 for s in specs)
    images = np.stack(
        [
            draw(sample_scene(s, background_sheet(s, 24), np.random.default_rng(0), 24)).ravel()
            for s in specs
        ]
    )
    squared = (images**2).sum(1)
    distances = squared[:, None] + squared[None, :] - 2 * images @ images.T
    np.fill_diagonal(distances, np.inf)
    rms = np.sqrt(np.maximum(distances.min(), 0) / images.shape[1])
    assert rms > 0.03  # no two categories render the same product


@pytest.mark.parametrize("kind", DEFECTS)
def test_defects_are_visible_and_masks_exact(kind: str) -> None:
    specs = [s for s in (category_spec(1, n) for n in range(60)) if kind in s.defects][:3]
    assert specs, kind
    for number, spec in enumerate(specs):
        rng = np.random.default_rng(number)
        scene = sample_scene(spec, background_sheet(spec, 64), rng, 64)
        normal = draw(scene)
        anomalous = np.clip(apply_defect(kind, scene, normal, rng), 0, 1)
        mask = changed_mask(normal, anomalous)
        change = np.abs(anomalous - normal).max(axis=-1)
        assert mask.sum() > 0, (kind, spec.name)
        assert change[mask].mean() > 0.1  # clearly visible where the mask says
        assert change[~mask].max() <= CHANGE_THRESHOLD  # and nothing changed elsewhere


@pytest.fixture(scope="module")
def canonical(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented difficulty setting: 8 categories x (20 train + 20 test) at 64 px."""
    root = tmp_path_factory.mktemp("canonical") / "synthetic"
    return make_synthetic(root, 8, seed=0, image_size=64, n_train=20, n_test=20)


def test_masks_range_from_tiny_to_large(canonical: Path) -> None:
    fractions = [
        (np.asarray(Image.open(p)) > 0).mean()
        for p in sorted(canonical.glob("*/ground_truth/*/*_mask.png"))
    ]
    assert len(fractions) == 8 * 12
    assert min(fractions) > 0
    assert min(fractions) < 0.01 and max(fractions) > 0.05


def test_meta_describes_the_folders(canonical: Path) -> None:
    meta = json.loads((canonical / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["image_size"] == 64
    for entry in meta["categories"]:
        defects = sorted(p.name for p in (canonical / entry["name"] / "test").iterdir())
        assert defects == sorted(["good", *entry["defects"]])


def test_naive_detector_is_far_from_perfect(canonical: Path) -> None:
    dm = UnifiedDataModule(load_index("synthetic", canonical), image_size=64, batch_size=32)
    per_category, mean = mean_image_auroc(dm)
    assert len(per_category) == 8
    assert 0.5 < mean < 0.8  # measured 0.66 for seed 0; a perfect 1.0 would make it useless


def test_mean_image_auroc_matches_a_direct_computation(synthetic_root: Path) -> None:
    from sklearn.metrics import roc_auc_score

    dm = UnifiedDataModule(load_index("synthetic", synthetic_root), image_size=32, batch_size=5)
    per_category, mean = mean_image_auroc(dm)
    frame = dm.index.frame
    name = dm.categories[1]
    load = lambda p: np.asarray(Image.open(p), dtype=np.float64).ravel() / 255  # noqa: E731
    rows = frame[frame["category"] == name]
    centre = np.mean([load(p) for p in rows.loc[rows["split"] == "train", "path"]], axis=0)
    test = rows[rows["split"] == "test"]
    scores = [np.linalg.norm(load(p) - centre) for p in test["path"]]
    assert per_category[name] == pytest.approx(roc_auc_score(test["label"], scores))
    assert mean == pytest.approx(np.mean(list(per_category.values())))


def test_existing_roots(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "s", 2, image_size=32, n_train=2, n_test=2)
    stamp = (root / "meta.json").stat().st_mtime_ns
    assert make_synthetic(root, 2, image_size=32, n_train=2, n_test=2) == root
    assert (root / "meta.json").stat().st_mtime_ns == stamp  # same settings: nothing rewritten
    with pytest.raises(DatasetFormatError, match=r"n_train=2 \(asked 3\)"):
        make_synthetic(root, 2, image_size=32, n_train=3, n_test=2)
    make_synthetic(root, 1, image_size=32, n_train=3, n_test=2, overwrite=True)
    assert len(load_index("synthetic", root).categories) == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(DatasetFormatError, match="not empty"):
        make_synthetic(tmp_path / "other", 1)
    with pytest.raises(ConfigError, match="n_test must be an integer >= 2"):
        make_synthetic(tmp_path / "bad", 1, n_test=1)
