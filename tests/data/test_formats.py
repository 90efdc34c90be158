"""Contract tests for every dataset reader, on tiny fixtures in the as-downloaded layouts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from fixtures import folder, mvtec, realiad, visa

from adbench.data import COLUMNS, AnomalyDataset, UnknownCategoryError, load_index
from adbench.errors import (
    ConfigError,
    DatasetFormatError,
    DatasetNotFoundError,
    UnknownNameError,
)

# name -> (fixture writer, format, reader options)
CASES = {
    "mvtec": (mvtec.write, "mvtec", {}),
    "mvtec_plain_mask_names": (lambda r: mvtec.write(r, plain_mask_names=True), "mvtec", {}),
    "visa_raw": (visa.write, "visa", {}),
    "realiad_nested_json": (realiad.write, "realiad", {}),
    "realiad_flat_json": (lambda r: realiad.write(r, flat=True), "realiad", {}),
    "realiad_variety": (lambda r: realiad.write(r, variety=True), "realiad", {}),
    "folder": (folder.write, "folder", {}),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    write, fmt, options = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    expected = write(root)
    return fmt, root, expected, load_index(fmt, root, **options)


class TestReaderContract:
    """What every reader guarantees, checked against the counts the fixture wrote."""

    def test_counts_per_category(self, case) -> None:
        _, _, expected, index = case
        counts = index.counts()
        assert sorted(index.categories) == sorted(expected)
        for name, numbers in expected.items():
            for column in ("train", "test", "anomalous"):
                assert counts.loc[name, column] == numbers[column], (name, column)

    def test_schema(self, case) -> None:
        _, root, _, index = case
        frame = index.frame
        assert set(COLUMNS) <= set(frame.columns)
        assert isinstance(frame.index, pd.RangeIndex)
        assert isinstance(frame["category"].dtype, pd.CategoricalDtype)
        assert frame["label"].dtype == "int64"
        assert set(frame["split"]) == {"train", "test"}
        assert (frame.loc[frame["split"] == "train", "label"] == 0).all()
        assert (frame["defect"] == "good").eq(frame["label"] == 0).all()
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in frame["path"])
        assert set(frame["root"]) == {str(Path(root).resolve())}

    def test_masks_pair_with_their_images(self, case) -> None:
        _, _, expected, index = case
        frame = index.frame
        masked = frame[frame["mask_path"].notna()]
        assert (masked["label"] == 1).all()
        for path, mask in zip(masked["path"], masked["mask_path"], strict=True):
            assert Path(mask).stem.removesuffix("_mask") == Path(path).stem
        wanted = sum(e.get("masks", e["anomalous"]) for e in expected.values())
        assert len(masked) == wanted

    def test_samples_decode_with_binary_masks(self, case) -> None:
        _, _, _, index = case
        frame = index.frame
        rows = frame[frame["mask_path"].notna()].head(2)
        data = AnomalyDataset(rows, index.categories, image_size=8)
        for i in range(len(data)):
            sample = data[i]
            assert sample.image.shape == (3, 8, 8) and sample.mask.shape == (1, 8, 8)
            assert set(sample.mask.unique().tolist()) == {0.0, 1.0}  # fixture masks: a quarter
            assert sample.mask.mean() == pytest.approx(0.25)
            assert sample.index == rows.index[i]

    def test_category_filter(self, case) -> None:
        fmt, root, _, index = case
        first = index.categories[0]
        only = load_index(fmt, root, categories=[first])
        assert only.categories == [first]
        assert len(only) == (index.frame["category"] == first).sum()

    def test_unknown_category_suggests_the_closest(self, case) -> None:
        fmt, root, _, index = case
        typo = index.categories[0][:-1] + "x"
        with pytest.raises(UnknownCategoryError, match=rf"did you mean '{index.categories[0]}'"):
            load_index(fmt, root, categories=[typo])
        with pytest.raises(DatasetFormatError):  # also a DatasetFormatError ...
            load_index(fmt, root, categories=[typo])
        with pytest.raises(UnknownNameError):  # ... and an UnknownNameError
            load_index(fmt, root, categories=[typo])

    def test_missing_root(self, case, tmp_path: Path) -> None:
        fmt = case[0]
        with pytest.raises(DatasetNotFoundError, match="not_there"):
            load_index(fmt, tmp_path / "not_there")

    def test_wrong_layout(self, case, tmp_path: Path) -> None:
        fmt = case[0]
        (tmp_path / "unrelated" / "stuff").mkdir(parents=True)
        with pytest.raises(DatasetFormatError, match=str(tmp_path)):
            load_index(fmt, tmp_path)


def test_unknown_format_and_option(mvtec_root) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'mvtec'"):
        load_index("mvtek", mvtec_root.root)
    with pytest.raises(ConfigError, match="unknown option 'datset'; did you mean 'dataset'"):
        load_index("mvtec", mvtec_root.root, datset="mpdd")


class TestMVTec:
    def test_dataset_name_from_known_categories(self, tmp_path: Path) -> None:
        mvtec.write(tmp_path / "mpdd", {"tubes": (2, 1, {"anomalous": 1})})
        assert set(load_index("mvtec", tmp_path / "mpdd").frame["dataset"]) == {"mpdd"}
        mvtec.write(tmp_path / "own", {"gear": (2, 1, {"dent": 1})})
        assert set(load_index("mvtec", tmp_path / "own").frame["dataset"]) == {"mvtec"}
        renamed = load_index("mvtec", tmp_path / "own", dataset="factory")
        assert set(renamed.frame["dataset"]) == {"factory"}

    def test_every_problem_is_listed(self, tmp_path: Path) -> None:
        mvtec.write(tmp_path, {"bottle": (2, 1, {"broken": 2})})
        folder_ = tmp_path / "bottle"
        (folder_ / "ground_truth" / "broken" / "001_mask.png").unlink()  # image without mask
        shutil.copy(
            folder_ / "test" / "broken" / "000.png",
            folder_ / "ground_truth" / "broken" / "009_mask.png",
        )
        (folder_ / "train" / "bad").mkdir()  # anomalies in the train split
        (folder_ / "test" / "good" / "notes.txt").write_text("x")
        with pytest.raises(DatasetFormatError) as info:
            load_index("mvtec", tmp_path)
        message = str(info.value)
        assert "4 problem(s)" in message
        assert "test/broken/001.png has no mask" in message
        assert "mask without image" in message and "009_mask.png" in message
        assert "train/bad" in message
        assert "not an image file" in message and "notes.txt" in message
        assert len(info.value.problems) == 4

    def test_single_category_folder_hint(self, tmp_path: Path) -> None:
        mvtec.write(tmp_path, {"bottle": (1, 1, {})})
        with pytest.raises(DatasetFormatError, match="pass its parent folder"):
            load_index("mvtec", tmp_path / "bottle")


class TestVisA:
    def test_split_file_has_crlf_line_ends(self, visa_root) -> None:
        raw = (visa_root.root / "split_csv" / "1cls.csv").read_bytes()
        assert raw.count(b"\r\n") == raw.count(b"\n") > 1

    def test_upper_case_jpg_and_value_one_masks(self, visa_root) -> None:
        index = load_index("visa", visa_root.root)
        assert all(p.endswith(".JPG") for p in index.frame["path"])
        rows = index.frame[index.frame["label"] == 1].head(1)
        sample = AnomalyDataset(rows, index.categories, 16)[0]
        assert sample.mask.sum() == 64  # mask value 1 is anomalous: 8x8 of 16x16

    def test_bad_rows_name_their_line(self, tmp_path: Path) -> None:
        visa.write(tmp_path)
        csv_path = tmp_path / "split_csv" / "1cls.csv"
        lines = csv_path.read_bytes().decode().split("\r\n")
        lines[2] = lines[2].replace("normal", "normall")
        csv_path.write_bytes("\r\n".join(lines).encode())
        (tmp_path / "pcb1" / "Data" / "Images" / "Anomaly" / "001.JPG").unlink()
        with pytest.raises(DatasetFormatError) as info:
            load_index("visa", tmp_path)
        assert "1cls.csv line 3: label 'normall' is not normal or anomaly" in str(info.value)
        assert "image 'pcb1/Data/Images/Anomaly/001.JPG' not found" in str(info.value)

    def test_missing_column(self, tmp_path: Path) -> None:
        visa.write(tmp_path)
        csv_path = tmp_path / "split_csv" / "1cls.csv"
        csv_path.write_bytes(csv_path.read_bytes().replace(b"label,", b"lbl,", 1))
        with pytest.raises(DatasetFormatError, match="missing column"):
            load_index("visa", tmp_path)

    def test_converted_layout(self, tmp_path: Path) -> None:
        mvtec.write(tmp_path, {"candle": (2, 1, {"bad": 2})}, plain_mask_names=True)
        index = load_index("visa", tmp_path)
        assert set(index.frame["dataset"]) == {"visa"}
        assert index.counts().loc["candle", "masks"] == 2


class TestRealIAD:
    def test_views_objects_and_unmasked_views(self, realiad_root) -> None:
        frame = load_index("realiad", realiad_root.root).frame
        assert set(frame["view"]) == {f"C{v}" for v in range(1, 6)}
        bad = frame[frame["object_id"].str.contains("/NG/")]
        assert bad.groupby("object_id")["label"].sum().eq(len(realiad.MASKED_VIEWS)).all()
        unmasked = bad[bad["label"] == 0]
        assert (unmasked["defect"] == "good").all() and unmasked["mask_path"].isna().all()
        assert set(frame["object_id"]) >= {"audiojack/OK/S0001", "audiojack/NG/AK/S0004"}
        assert set(frame["dataset"]) == {"realiad"}

    def test_variety_name(self, variety_root) -> None:
        assert set(load_index("realiad", variety_root.root).frame["dataset"]) == {"realiad_variety"}

    def test_json_pointing_at_missing_file(self, tmp_path: Path) -> None:
        realiad.write(tmp_path)
        json_path = tmp_path / "realiad_jsons" / "realiad_jsons" / "mint.json"
        content = json.loads(json_path.read_text())
        content["test"][3]["image_path"] = "OK/S9999/gone.jpg"
        del content["train"][0]["anomaly_class"]
        json_path.write_text(json.dumps(content))
        with pytest.raises(DatasetFormatError) as info:
            load_index("realiad", tmp_path)
        assert "mint.json test[3]: image_path 'OK/S9999/gone.jpg' not found" in str(info.value)
        assert "mint.json train[0]: field 'anomaly_class' is missing" in str(info.value)

    def test_invalid_json_and_anomaly_in_train(self, tmp_path: Path) -> None:
        realiad.write(tmp_path)
        jsons = tmp_path / "realiad_jsons" / "realiad_jsons"
        (jsons / "mint.json").write_text("{not json")
        content = json.loads((jsons / "audiojack.json").read_text())
        content["train"].append(next(s for s in content["test"] if s["mask_path"]))
        (jsons / "audiojack.json").write_text(json.dumps(content))
        with pytest.raises(DatasetFormatError) as info:
            load_index("realiad", tmp_path)
        assert "mint.json: not readable JSON" in str(info.value)
        assert "anomalous sample" in str(info.value) and "in the train split" in str(info.value)

    def test_several_resolutions_need_image_dir(self, tmp_path: Path) -> None:
        realiad.write(tmp_path)
        shutil.copytree(tmp_path / "realiad_256", tmp_path / "realiad_512")
        with pytest.raises(DatasetFormatError, match="choose one with image_dir"):
            load_index("realiad", tmp_path)
        index = load_index("realiad", tmp_path, image_dir="realiad_512")
        assert all("/realiad_512/" in p for p in index.frame["path"])


class TestFolder:
    def test_split_is_seeded_and_complete(self, folder_root) -> None:
        first = load_index("folder", folder_root.root).frame
        again = load_index("folder", folder_root.root).frame
        pd.testing.assert_frame_equal(first, again)
        other = load_index("folder", folder_root.root, seed=1).frame
        assert not first["split"].equals(other["split"])
        assert first.loc[first["category"] == "gizmo", "mask_path"].isna().all()

    def test_single_category_root(self, folder_root) -> None:
        index = load_index("folder", folder_root.root / "widget")
        assert index.categories == ["widget"]

    def test_missing_mask_and_stray_folder(self, tmp_path: Path) -> None:
        folder.write(tmp_path)
        (tmp_path / "widget" / "masks" / "dent" / "dent_001_mask.png").unlink()
        (tmp_path / "notes").mkdir()
        with pytest.raises(DatasetFormatError) as info:
            load_index("folder", tmp_path)
        assert "dent_001.jpg has no mask" in str(info.value)
        assert "notes: not a category folder" in str(info.value)


def test_synthetic_reader_needs_its_meta(synthetic_root: Path, tmp_path: Path) -> None:
    index = load_index("synthetic", synthetic_root)
    assert set(index.frame["dataset"]) == {"synthetic"} and len(index.categories) == 4
    mvtec.write(tmp_path, {"bottle": (1, 1, {})})
    with pytest.raises(DatasetFormatError, match="not written by make_synthetic"):
        load_index("synthetic", tmp_path)


def test_truncated_image_names_its_path(tmp_path: Path) -> None:
    mvtec.write(tmp_path, {"bottle": (2, 1, {"broken": 1})})
    broken = tmp_path / "bottle" / "train" / "good" / "001.png"
    broken.write_bytes(broken.read_bytes()[:60])
    index = load_index("mvtec", tmp_path)  # listing does not decode
    data = AnomalyDataset(index.frame, index.categories, 8)
    row = index.frame.index[index.frame["path"] == str(broken)][0]
    with pytest.raises(DatasetFormatError, match=r"cannot read image .*001\.png"):
        data[int(row)]
    assert torch.is_tensor(data[0].image)


@pytest.mark.parametrize("script", ["mvtec", "visa", "realiad", "folder"])
def test_fixture_scripts_run_standalone(script: str, tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[1] / "fixtures" / f"{script}.py"
    done = subprocess.run(
        [sys.executable, str(path), str(tmp_path / "out")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    expected = json.loads(done.stdout)
    fmt = CASES[{"realiad": "realiad_nested_json", "visa": "visa_raw"}.get(script, script)][1]
    assert load_index(fmt, tmp_path / "out").categories == sorted(expected)
