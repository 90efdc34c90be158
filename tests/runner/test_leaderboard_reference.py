"""Published reference rows: loading, validation and their place in a rendered leaderboard."""

from __future__ import annotations

import argparse
import io

import pandas as pd
import pytest

from adbench.errors import ConfigError, UnknownNameError
from adbench.runner import leaderboard
from adbench.runner.commands import add_commands
from adbench.runner.leaderboard import load_reference


def _frame(values, dataset="mvtec", k=15):
    """A results table from {(method, seed, category): {metric: value}}."""
    rows = [{"cell_id": f"{m}{s}", "method": m, "name": m, "preset": "paper",
             "dataset": dataset, "k": k, "seed": s, "category": c, "metric": metric, "value": v}
            for (m, s, c), metrics in values.items() for metric, v in metrics.items()]
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
    frame = _frame({
        ("naive", 0, "mean"): {"I-AUROC": 0.70, "P-AUROC": 0.60},
        ("anomalib.patchcore", 0, "mean"): {"I-AUROC": 0.95, "P-AUROC": 0.90},
    })
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


def test_reference_file_errors_name_the_row(tmp_path):
    path = tmp_path / "ref.yaml"
    row = "method: X\n    dataset: d\n    k: 3\n    protocol: p\n    source: S, Table 1\n"
    path.write_text(f"rows:\n  - {row}    metrics: {{I-AUROC: 101}}\n")
    with pytest.raises(ConfigError, match=r"row 0: I-AUROC = 101 is not a percentage"):
        load_reference(path)
    path.write_text(f"rows:\n  - {row}    metrics: {{AUC: 90}}\n")
    with pytest.raises(UnknownNameError, match="AUC"):
        load_reference(path)
    path.write_text("rows:\n  - {method: X, dataset: d, k: 3, metrics: {I-AUROC: 90}}\n")
    with pytest.raises(ConfigError, match=r"missing key.*protocol, source"):
        load_reference(path)
    with pytest.raises(ConfigError, match="neither a YAML file nor a folder"):
        load_reference(tmp_path / "absent")


def test_cli_reference_flag():
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    assert parser.parse_args(["leaderboard", "runs/x", "--reference"]).reference is True
    args = parser.parse_args(["leaderboard", "runs/x", "--reference", "r.yaml"])
    assert args.reference == "r.yaml"
    assert parser.parse_args(["leaderboard", "runs/x"]).reference is None
