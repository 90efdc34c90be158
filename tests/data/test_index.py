"""SampleIndex: validation rules, parquet round trip, selection and combining datasets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fixtures import mvtec

from adbench.data import SampleIndex, concat, load_index
from adbench.errors import DatasetFormatError, UnknownNameError


def _rows(**changes) -> list[dict]:
    base = {
        "path": "/d/a/train/good/0.png",
        "mask_path": None,
        "split": "train",
        "label": 0,
        "category": "a",
        "defect": "good",
        "dataset": "mvtec",
        "view": None,
        "object_id": None,
        "root": "/d",
    }
    bad = {
        **base,
        "path": "/d/a/test/cut/0.png",
        "mask_path": "/d/m.png",
        "split": "test",
        "label": 1,
        "defect": "cut",
    }
    return [{**base, **changes}, bad]


def test_parquet_round_trip(mvtec_root, tmp_path: Path) -> None:
    index = load_index("mvtec", mvtec_root.root)
    path = index.to_parquet(tmp_path / "sub" / "index.parquet")
    again = SampleIndex.from_parquet(path)
    pd.testing.assert_frame_equal(index.frame, again.frame)
    assert again.categories == index.categories
    with pytest.raises(FileNotFoundError, match=r"missing\.parquet"):
        SampleIndex.from_parquet(tmp_path / "missing.parquet")


def test_select_renumbers_and_checks_names(mvtec_root) -> None:
    index = load_index("mvtec", mvtec_root.root)
    screw = index.select(["screw"])
    assert screw.categories == ["screw"]
    assert list(screw.frame.index) == list(range(len(screw)))
    assert list(screw.frame["category"].cat.categories) == ["screw"]
    with pytest.raises(UnknownNameError, match="did you mean 'screw'"):
        index.select(["scerw"])


def test_concat_prefixes_categories_with_the_dataset(tmp_path: Path) -> None:
    mvtec.write(tmp_path / "mvtec", {"bottle": (2, 1, {"cut": 1})})
    mvtec.write(tmp_path / "mpdd", {"tubes": (2, 1, {"anomalous": 1}), "bottle": (1, 1, {})})
    first = load_index("mvtec", tmp_path / "mvtec")
    second = load_index("mvtec", tmp_path / "mpdd", dataset="mpdd")
    both = concat([first, second])
    assert both.categories == ["mpdd/bottle", "mpdd/tubes", "mvtec/bottle"]
    assert len(both) == len(first) + len(second)
    assert list(both.frame.index) == list(range(len(both)))
    assert concat([first]).categories == ["bottle"]  # one dataset: names unchanged


def test_same_category_from_two_roots_is_refused(tmp_path: Path) -> None:
    mvtec.write(tmp_path / "one", {"bottle": (1, 1, {})})
    mvtec.write(tmp_path / "two", {"bottle": (1, 1, {})})
    a = load_index("mvtec", tmp_path / "one")
    b = load_index("mvtec", tmp_path / "two")
    with pytest.raises(DatasetFormatError, match="more than one dataset root"):
        concat([a, b])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"label": 1, "defect": "cut"}, "train split must hold only normal images"),
        ({"mask_path": "/d/m0.png"}, "a normal image must not have a mask"),
        ({"defect": "cut"}, "does not match label"),
        ({"split": "validation"}, "split 'validation' is not train or test"),
        ({"path": "/d/a/test/cut/0.png"}, "image listed twice"),
        ({"category": None}, "'category' is missing"),
    ],
)
def test_validation_rules(changes: dict, message: str) -> None:
    with pytest.raises(DatasetFormatError, match=message):
        SampleIndex.from_records(_rows(**changes))


def test_missing_column() -> None:
    frame = pd.DataFrame(_rows()).drop(columns=["object_id"])
    with pytest.raises(DatasetFormatError, match=r"lacks column.*object_id"):
        SampleIndex(frame)


def test_frame_is_a_copy() -> None:
    index = SampleIndex.from_records(_rows())
    frame = index.frame
    frame.loc[0, "path"] = "/elsewhere.png"
    assert index.frame.loc[0, "path"] == "/d/a/train/good/0.png"
