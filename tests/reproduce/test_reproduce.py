"""``adbench reproduce``: the mechanics mode end to end on an MVTec-format fixture, the report
against the shipped published row, resuming, and the errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from adbench.cli import main
from adbench.errors import ConfigError, UnknownNameError
from adbench.reproduce import PLANS, REPORT_CSV, REPORT_MD, reproduce
from adbench.reproduce.plans import get_plan
from adbench.runner import rundir
from adbench.runner.reference import load_reference


@pytest.fixture(scope="module")
def reproduced(mvtec_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    done = reproduce(
        "anomalib.dinomaly", f"mvtec:{mvtec_root.root}", out, random_weights=True, progress=False
    )
    return out, done


@pytest.mark.slow
def test_mechanics_run_is_reported_against_the_published_row(reproduced):
    out, done = reproduced
    assert all(f.is_file() for f in done.files) and {f.name for f in done.files} == {
        REPORT_MD,
        REPORT_CSV,
    }
    (cell,) = (out / "cells").iterdir()
    result = json.loads((cell / "result.json").read_text())
    assert result["protocol"]["protocol"] == "dinomaly"
    assert result["protocol"]["evaluation"] == "exact" and result["random_weights"]
    rows = load_reference()
    paper = rows[(rows["method"] == "Dinomaly") & (rows["dataset"] == "mvtec")]
    published = dict(zip(paper["metric"], paper["value"] * 100, strict=True))
    table = pd.read_csv(out / REPORT_CSV).set_index("metric")
    measured = result["metrics"]["mean"]
    for metric, value in published.items():
        assert table.loc[metric, "published"] == pytest.approx(value)
        assert table.loc[metric, "measured"] == pytest.approx(measured[metric] * 100)
        assert table.loc[metric, "difference"] == pytest.approx(measured[metric] * 100 - value)
    assert table.loc["I-AUROC", "seeds"] == 1
    page = done.markdown
    assert "Protocol **dinomaly**" in page and "random weights (mechanics mode)" in page
    assert "k = 3 categories here, 15 in the paper" in page
    assert "config crop_size: 392 in the paper preset, 56 here" in page
    assert "scoring.sigma: 4.0 in the paper preset, 0.0 here (the protocol smooths" in page
    assert "utils.py:651-697" in page  # the protocol card cites the official lines


@pytest.mark.slow
def test_a_rerun_resumes_and_the_cli_prints_the_same_report(reproduced, mvtec_root, capsys):
    out, done = reproduced
    (cell,) = (out / "cells").iterdir()
    before = (cell / "result.json").read_bytes()
    code = main(
        ["reproduce", "anomalib.dinomaly", "--data", f"mvtec:{mvtec_root.root}", "--out",
         str(out), "--random-weights", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    assert (cell / "result.json").read_bytes() == before  # not re-run
    assert done.markdown in capsys.readouterr().out
    assert rundir.read_result(cell)["cell_id"] == cell.name


def test_every_plan_names_a_registered_method_preset_and_protocol():
    from adbench.protocols import PROTOCOLS
    from adbench.registry import get_method_spec

    for plan in PLANS.values():
        presets = get_method_spec(plan.method).presets
        assert set(plan.presets.values()) <= set(presets), plan.method
        assert plan.protocol in PROTOCOLS
    assert get_plan("anomalib.dinomaly").preset("realiad") == "paper-realiad"
    assert get_plan("glad").preset("visa") == "paper-visa"
    assert get_plan("anomalib.dinomaly").preset("mvtec") == "paper"


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(UnknownNameError, match=r"known: anomalib\.dinomaly"):
        reproduce("patchcore", "mvtec:/nowhere", tmp_path)
    with pytest.raises(ConfigError, match="FORMAT:ROOT"):
        reproduce("anomalib.dinomaly", "mvtec", tmp_path)


def test_protocols_command_lists_every_protocol_and_its_sources(capsys):
    assert main(["protocols"]) == 0
    table = capsys.readouterr().out
    assert all(f"`{name}`" in table for name in ("adbench", "dinomaly", "glad", "ader"))
    assert main(["protocols", "glad"]) == 0
    assert "main_multi.py:332" in capsys.readouterr().out
    assert main(["protocols", "dinomally"]) == 2
    assert "did you mean 'dinomaly'" in capsys.readouterr().err
