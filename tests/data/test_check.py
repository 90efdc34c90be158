"""`adbench data check` and the data subcommands (synth, check, prepare)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from fixtures import mvtec

from adbench.data import check_dataset, load_index
from adbench.data.cache import MANIFEST
from adbench.data.commands import add_commands
from adbench.data.formats.synthetic import META
from adbench.errors import UnknownNameError


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="adbench")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_valid_root_summary(mvtec_root) -> None:
    report = check_dataset(mvtec_root.root, "mvtec", progress=False)
    assert report.ok, report.problems
    for name, numbers in mvtec_root.expected.items():
        for column in ("train", "test", "anomalous"):
            assert report.summary.loc[name, column] == numbers[column]
    text = str(report)
    assert "no problems found" in text and "total" in text and "bottle" in text


def test_every_problem_is_listed(tmp_path: Path) -> None:
    mvtec.write(tmp_path, {"bottle": (3, 1, {"broken": 2}), "screw": (2, 1, {"cut": 1})})
    (tmp_path / "bottle" / "ground_truth" / "broken" / "001_mask.png").unlink()
    report = check_dataset(tmp_path, "mvtec", progress=False)
    assert len(report.problems) == 1 and "001.png has no mask" in report.problems[0]
    assert report.summary.loc["bottle", "train"] == 3  # the readable rows are still summarised

    truncated = tmp_path / "screw" / "train" / "good" / "001.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    big_mask = tmp_path / "screw" / "ground_truth" / "cut" / "000_mask.png"
    mvtec.write_mask(big_mask, size=24)
    report = check_dataset(tmp_path, "mvtec", progress=False)
    text = "\n".join(report.problems)
    assert len(report.problems) == 3 and not report.ok
    assert "cannot read image" in text and str(truncated) in text
    assert "mask size (24, 24) differs from image size (16, 16)" in text


def test_check_command_exit_codes(mvtec_root, tmp_path: Path, capsys) -> None:
    assert _run("data", "check", str(mvtec_root.root), "--format", "mvtec") == 0
    assert "no problems found" in capsys.readouterr().out
    mvtec.write(tmp_path, {"bottle": (1, 1, {"broken": 1})})
    (tmp_path / "bottle" / "ground_truth" / "broken" / "000_mask.png").unlink()
    assert _run("data", "check", str(tmp_path), "--format", "mvtec") == 1
    assert "1 problem(s)" in capsys.readouterr().out


def test_synth_and_prepare_commands(tmp_path: Path, capsys) -> None:
    root = tmp_path / "synthetic"
    argv = [
        "data",
        "synth",
        str(root),
        "--categories",
        "2",
        "--image-size",
        "32",
        "--n-train",
        "3",
        "--n-test",
        "4",
        "--seed",
        "1",
    ]
    assert _run(*argv) == 0
    assert (root / META).is_file()
    index = load_index("synthetic", root)
    assert len(index.categories) == 2 and len(index) == 2 * 7
    out = tmp_path / "cache"
    argv = [
        "data",
        "prepare",
        str(root),
        "--format",
        "synthetic",
        "--out",
        str(out),
        "--size",
        "16",
        "--workers",
        "0",
    ]
    assert _run(*argv) == 0
    assert (out / MANIFEST).is_file()
    assert "written" in capsys.readouterr().out
    with pytest.raises(UnknownNameError, match="did you mean 'mvtec'"):
        _run("data", "check", str(root), "--format", "mvtek")
