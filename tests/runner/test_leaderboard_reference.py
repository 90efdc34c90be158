"""Published reference rows: loading, validation, packaging and their place in a rendered
leaderboard."""

from __future__ import annotations

import argparse
import fnmatch
import io
import re
from pathlib import Path

import pandas as pd
import pytest
import tomllib
import yaml

import adbench.runner
from adbench.errors import ConfigError
from adbench.runner import leaderboard
from adbench.runner.commands import add_commands
from adbench.runner.reference import load_reference, shipped_reference

REPO = Path(__file__).resolve().parents[2]


def _frame(values, dataset="mvtec", k=15):
    """A results table from {(method, seed, category): {metric: value}}."""
    rows = [
        {
            "cell_id": f"{m}{s}",
            "method": m,
            "name": m,
            "preset": "paper",
            "dataset": dataset,
            "k": k,
            "seed": s,
            "category": c,
            "metric": metric,
            "value": v,
        }
        for (m, s, c), metrics in values.items()
        for metric, v in metrics.items()
    ]
    return pd.DataFrame(rows)


def test_shipped_reference_rows_hold_the_published_numbers():
    rows = load_reference()
    value = rows.set_index(["method", "dataset", "metric"])["value"]
    # Dinomaly, multi-class (Guo et al., CVPR 2025): MVTec AD, VisA, Real-IAD
    assert value[("Dinomaly", "mvtec", "I-AUROC")] == pytest.approx(0.996)
    assert value[("Dinomaly", "mvtec", "P-AUROC")] == pytest.approx(0.984)
    assert value[("Dinomaly", "mvtec", "AUPRO")] == pytest.approx(0.948)
    assert value[("Dinomaly", "visa", "AUPRO")] == pytest.approx(0.945)
    assert value[("Dinomaly", "realiad", "I-AUROC")] == pytest.approx(0.893)
    assert value[("Dinomaly+", "variety", "I-AUROC")] == pytest.approx(0.871)
    assert value[("Dinomaly", "variety", "P-AUROC")] == pytest.approx(0.915)
    assert rows["source"].str.len().min() > 10
    assert set(rows.loc[rows["dataset"] == "variety", "k"]) == {160}


def test_reference_rows_are_shown_marked_and_never_ranked():
    frame = _frame(
        {
            ("naive", 0, "mean"): {"I-AUROC": 0.70, "P-AUROC": 0.60},
            ("anomalib.patchcore", 0, "mean"): {"I-AUROC": 0.95, "P-AUROC": 0.90},
        }
    )
    plain = leaderboard(frame, per_category=[])
    text = leaderboard(frame, per_category=[], reference=True)
    assert plain in text  # the measured table is unchanged: the published rows are not mixed in
    measured, published = text.split("published reference rows")
    assert "Dinomaly" not in measured
    assert "| anomalib.patchcore | **95.0** | **90.0** |" in measured
    row = next(line for line in published.splitlines() if line.startswith("| Dinomaly"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # columns: the measured metrics, then the published-only AUPRO, then k and the source
    assert cells[:5] == ["Dinomaly (published)", "99.6", "98.4", "94.8", "15"]
    assert "arXiv:2405.14325" in cells[5]
    assert not any("**" in line for line in published.splitlines() if line.startswith("| "))
    # only the measured dataset's rows: no VisA or Real-IAD Variety rows here
    assert "98.7" not in published and "Dinomaly+" not in published

    csv = pd.read_csv(io.StringIO(leaderboard(frame, fmt="csv", reference=True)))
    flagged = csv[csv["published"]]
    assert set(flagged["method"]) == {"Dinomaly (published)", "Dinomaly+ (published)"}
    assert not csv.loc[~csv["published"], "method"].str.contains("published").any()
    latex = leaderboard(frame, fmt="latex", per_category=[], reference=True)
    assert r"Dinomaly (published) & 99.6 & 98.4 & 94.8 & 15 &" in latex


ROW = {
    "method": "X",
    "dataset": "d",
    "k": 3,
    "protocol": "p",
    "metrics": {"I-AUROC": 90},
    "source": "S, Table 1",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": 1}, r"unknown key 'metric'; did you mean 'metrics'\?"),
        ({"metrics": {"I-AUROC": 101}}, r"I-AUROC = 101 is not a percentage in \[0, 100\]"),
        ({"metrics": {"I-AUROC": "high"}}, r"I-AUROC = 'high' is not a percentage"),
        ({"metrics": {"AUC": 90}}, r"unknown metric 'AUC'"),
        ({"metrics": {}}, r"'metrics' must map metric names"),
        ({"k": "15"}, r"k must be int, got '15'"),
        ({"k": 0}, r"k must be a positive number"),
        ({"source": " "}, r"'source' must name the paper and table"),
        ({"protocol": None}, r"missing 1 required positional argument: 'protocol'"),
    ],
)
def test_a_bad_reference_row_is_refused_naming_file_and_row(tmp_path, change, message):
    good = dict(ROW, method="Good")
    bad = {key: value for key, value in {**ROW, **change}.items() if value is not None}
    path = tmp_path / "ref.yaml"
    path.write_text(yaml.safe_dump({"rows": [good, bad]}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))} row 1: .*{message}"):
        load_reference(path)
    path.write_text(yaml.safe_dump({"rows": [good]}))
    assert list(load_reference(path)["method"]) == ["Good"]


def test_reference_files_and_folders_that_are_not_rows_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="neither a YAML file nor a folder"):
        load_reference(tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"holds no \*\.yaml files"):
        load_reference(tmp_path)
    (tmp_path / "empty.yaml").write_text("rows: []\n")
    with pytest.raises(ConfigError, match=r"empty.yaml: expected a non-empty list under 'rows:'"):
        load_reference(tmp_path)
    (tmp_path / "empty.yaml").write_text("rows:\n  - 3\n")
    with pytest.raises(ConfigError, match=r"empty.yaml row 0: the top level must be a mapping"):
        load_reference(tmp_path)


def test_the_shipped_rows_are_package_data_found_through_importlib_resources(monkeypatch, tmp_path):
    folder = Path(str(shipped_reference()))
    package = Path(adbench.runner.__file__).parent
    assert folder.parent == package
    names = sorted(p.name for p in folder.iterdir())
    assert {"dinomaly.yaml", "realiad_variety.yaml"} <= set(names)
    # every shipped file matches a package-data pattern, so a wheel carries it
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["adbench.runner"]
    assert all(any(fnmatch.fnmatch(f"{folder.name}/{n}", p) for p in patterns) for n in names)
    # the source tree's benchmarks/ folder plays no part: the rows load from anywhere
    assert not (REPO / "benchmarks" / "reference").exists()
    monkeypatch.chdir(tmp_path)
    assert {"Dinomaly", "Dinomaly+"} <= set(load_reference()["method"])


def test_cli_reference_flag():
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    assert parser.parse_args(["leaderboard", "runs/x", "--reference"]).reference is True
    args = parser.parse_args(["leaderboard", "runs/x", "--reference", "r.yaml"])
    assert args.reference == "r.yaml"
    assert parser.parse_args(["leaderboard", "runs/x"]).reference is None
