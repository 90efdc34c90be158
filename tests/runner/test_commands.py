"""``adbench run``, ``leaderboard`` and ``plot scaling`` end to end on tiny data."""

from __future__ import annotations

import argparse

import pytest
import yaml
from runner_helpers import TOY, make_sweep

from adbench.runner.commands import add_commands


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="adbench")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_run_leaderboard_and_plot(tmp_path, tiny_root, capsys):
    sweep = make_sweep(tiny_root, plugins=[])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "out"
    base = ["run", str(path), "--out", str(out), "--plugin", TOY, "--no-progress"]

    assert _main([*base, "--dry-run"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["cell", "method", "dataset", "k", "seed", "status"]
    assert [line.split()[-1] for line in listing[1:]] == ["new", "new"]

    assert _main([*base, "--set", "seeds=[1]"]) == 0
    printed = capsys.readouterr().out
    assert "2 cells in" in printed and "2 finished" in printed
    assert "| method | I-AUROC |" in printed
    assert "scaling_synthetic_I-AUROC.png" in printed

    assert _main([*base, "--set", "seeds=[1]", "--dry-run"]) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]] == [
        "finished",
        "finished",
    ]

    assert _main(["leaderboard", str(out), "--format", "latex", "--per-category"]) == 0
    assert r"\begin{tabular}" in capsys.readouterr().out
    target = tmp_path / "board.csv"
    assert _main(["leaderboard", str(out), "--format", "csv", "--output", str(target)]) == 0
    assert target.read_text().startswith("dataset,k,method,category,metric,mean,std,n_seeds")

    assert _main(["leaderboard", str(out), "--per-category"]) == 0
    assert "| train h | img/s | peak GB | params M |" in capsys.readouterr().out
    assert _main(["leaderboard", str(out), "--no-cost", "--per-category"]) == 0
    assert "train h" not in capsys.readouterr().out
    assert _main(["leaderboard", str(out), "--format", "csv", "--cost"]) == 0
    assert ",mean,train h," in capsys.readouterr().out
    assert _main(["leaderboard", str(out), "--per-gpu-hour"]) == 0
    assert "| method | I-AUROC (%) | train device-h | I-AUROC per device-h |" in (
        capsys.readouterr().out
    )
    assert _main(["leaderboard", str(out), "--per-gpu-hour", "mAD", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith(
        "dataset,k,method,metric,value,device_hours,per_device_hour,unit,n_seeds\nsynthetic,4,toy,mAD,"
    )

    assert (
        _main(
            [
                "plot",
                "scaling",
                str(out),
                "--metric",
                "AUPRO",
                "--format",
                "svg",
                "--output-dir",
                str(tmp_path / "figs"),
            ]
        )
        == 0
    )
    assert (tmp_path / "figs" / "scaling_synthetic_AUPRO.svg").is_file()
    assert not (tmp_path / "figs" / "scaling_synthetic_AUPRO.png").exists()
    assert (
        _main(
            [
                "plot",
                "scaling",
                str(out),
                "--metric",
                "peak GB",
                "--format",
                "svg",
                "--output-dir",
                str(tmp_path / "figs"),
            ]
        )
        == 0
    )
    assert (tmp_path / "figs" / "scaling_synthetic_peak_GB.svg").is_file()


def test_cli_run_exit_code_reports_failures(tmp_path, tiny_root, capsys):
    sweep = make_sweep(
        tiny_root,
        categories=[2],
        plugins=[TOY],
        methods=[{"name": "toy", "preset": "tiny", "set": {"fail": True}}],
    )
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sweep))
    code = _main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert "1 failed" in capsys.readouterr().out


def test_cli_rejects_a_bad_override(tmp_path, tiny_root):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(make_sweep(tiny_root)))
    from adbench.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'seeds'"):
        _main(["run", str(path), "--out", str(tmp_path / "o"), "--set", "sedes=[1]"])
