"""Two runners generating one synthetic set, and `data check` against the set's ``meta.json``."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from reliability_helpers import run_cli, snapshot
from runner.runner_helpers import run_child

from adbench.data import make_synthetic
from adbench.data.formats import synthetic
from adbench.data.formats.synthetic import META
from adbench.errors import DatasetFormatError

SETTINGS = {"n_categories": 6, "seed": 0, "image_size": 32, "n_train": 8, "n_test": 6}
# Each process imports adbench, says it is ready, then waits for the start signal.
GENERATE = """
import json, sys, time
from pathlib import Path
from adbench.data import make_synthetic
root, ready, go, settings = sys.argv[1:]
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.002)
make_synthetic(root, **json.loads(settings))
"""


def _race(root: Path, signals: Path) -> list[subprocess.CompletedProcess]:
    """Start two generating processes on ``root`` at the same moment; wait for both."""
    signals.mkdir()
    go = signals / "go"
    procs = [
        run_child(GENERATE, str(root), str(signals / f"ready{i}"), str(go), json.dumps(SETTINGS))
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all((signals / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    return [subprocess.CompletedProcess(p.args, p.wait(120), *p.communicate()) for p in procs]


def test_two_processes_generate_one_complete_set(tmp_path: Path) -> None:
    reference = snapshot(make_synthetic(tmp_path / "reference" / "data", **SETTINGS))
    assert len(reference) == 6 * (8 + 6 + 4) + 1  # images, the 4 anomalies' masks, meta.json
    for round_, existing in enumerate(["absent", "empty", "absent"]):
        parent = tmp_path / f"round{round_}"
        root = parent / "data"
        if existing == "empty":
            root.mkdir(parents=True)
        results = _race(root, tmp_path / f"signals{round_}")
        assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
        assert snapshot(root) == reference
        assert [p.name for p in parent.iterdir()] == ["data"]  # no partial folder is left


@pytest.mark.parametrize("winner_seed", [0, 1])
def test_the_loser_of_the_rename_keeps_the_winners_set(
    winner_seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = {"n_categories": 2, "image_size": 32, "n_train": 2, "n_test": 2}
    root = tmp_path / "run" / "data"
    winner = snapshot(make_synthetic(tmp_path / "winner", seed=winner_seed, **small))
    write_category = synthetic._write_category

    def another_runner_finishes_first(*args) -> None:
        monkeypatch.setattr(synthetic, "_write_category", write_category)
        make_synthetic(root, seed=winner_seed, **small)
        write_category(*args)

    monkeypatch.setattr(synthetic, "_write_category", another_runner_finishes_first)
    if winner_seed == 0:
        assert make_synthetic(root, seed=0, **small) == root
    else:  # the other runner wrote other settings: the error of a root with other settings
        with pytest.raises(DatasetFormatError, match=r"other settings: seed=1 \(asked 0\)"):
            make_synthetic(root, seed=0, **small)
    assert snapshot(root) == winner
    assert [p.name for p in root.parent.iterdir()] == ["data"]


def test_data_check_compares_a_synthetic_set_with_its_meta(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(shutil.copytree(small_root, tmp_path / "data"))
    code, out, _ = run_cli(capsys, "data", "check", str(root), "--format", "synthetic")
    assert code == 0 and "no problems found" in out
    meta = json.loads((root / META).read_text())
    assert (meta["n_train"], meta["n_test"]) == (3, 4)
    gone, cut_train, cut_test = (entry["name"] for entry in meta["categories"])
    shutil.rmtree(root / gone)
    sorted((root / cut_train / "train" / "good").glob("*.png"))[-1].unlink()
    sorted((root / cut_test / "test" / "good").glob("*.png"))[0].unlink()

    code, out, err = run_cli(capsys, "data", "check", str(root), "--format", "synthetic")
    assert code == 1 and "Traceback" not in err
    assert "3 problem(s)" in out
    assert f"category '{gone}' is listed in {root / META} but missing from {root}" in out
    assert f"category '{cut_train}': 2 training images, {root / META} implies 3" in out
    assert f"category '{cut_test}': 3 test images, {root / META} implies 4" in out

    only = ["data", "check", str(root), "--format", "synthetic", "--only", cut_train]
    code, out, _ = run_cli(capsys, *only)  # a selection: other categories are not missing
    assert code == 1 and "1 problem(s)" in out and f"category '{cut_train}': 2 training" in out
