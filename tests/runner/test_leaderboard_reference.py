"""Published reference rows: loading, validation, packaging, their place in a rendered
leaderboard and their comparison with measured rows under the same protocol."""

from __future__ import annotations

import argparse
import fnmatch
import io
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import tomllib
import yaml

import adbench.runner
from adbench.errors import ConfigError
from adbench.protocols import PROTOCOLS, protocol_card
from adbench.runner import leaderboard
from adbench.runner.commands import add_commands
from adbench.runner.reference import load_reference, shipped_reference
from adbench.runner.store import protocol_key

REPO = Path(__file__).resolve().parents[2]


def _frame(values, dataset="mvtec", k=15, protocol=None, names=None):
    """A results table from {(method, seed, category): {metric: value}}.

    ``protocol``: the name of the protocol whose card the cells carry (None: no card column);
    ``names``: method label -> registry name (default: the label).
    """
    key = protocol_key(_card(protocol, dataset)) if protocol else None
    rows = [
        {
            "cell_id": f"{m}{s}",
            "method": m,
            "name": (names or {}).get(m, m),
            "preset": "paper",
            "dataset": dataset,
            "k": k,
            "seed": s,
            "category": c,
            "metric": metric,
            "value": v,
            **({} if key is None else {"protocol": key}),
        }
        for (m, s, c), metrics in values.items()
        for metric, v in metrics.items()
    ]
    return pd.DataFrame(rows)


def _card(protocol, dataset):
    """The card `protocol_card` writes for two test images of ``dataset`` under ``protocol``."""
    frame = pd.DataFrame(
        {
            "category": ["a", "b"],
            "split": "test",
            "label": [0, 1],
            "defect": ["good", "crack"],
            "path": ["/data/a/0.png", "/data/b/1.png"],
            "mask_path": [None, "/data/b/1_mask.png"],
        }
    )
    index = SimpleNamespace(frame=frame, categories=["a", "b"])
    return protocol_card(
        dataset, index, image_size=448, evaluation="exact", protocol=PROTOCOLS[protocol]
    )


# The papers' multi-class tables (values in %): Dinomaly's Table 1, INP-Former's Table 2.
METRICS = ("I-AUROC", "I-AP", "I-F1max", "P-AUROC", "P-AP", "P-F1max", "AUPRO")
PAPERS = {
    ("Dinomaly", "mvtec"): (99.6, 99.8, 99.0, 98.4, 69.3, 69.2, 94.8),
    ("Dinomaly", "visa"): (98.7, 98.9, 96.2, 98.7, 53.2, 55.7, 94.5),
    ("Dinomaly", "realiad"): (89.3, 86.8, 80.2, 98.8, 42.8, 47.1, 93.9),
    ("INP-Former", "mvtec"): (99.7, 99.9, 99.2, 98.5, 71.0, 69.7, 94.9),
    ("INP-Former", "visa"): (98.9, 99.0, 96.6, 98.9, 51.2, 54.7, 94.4),
    ("INP-Former", "realiad"): (90.5, 88.1, 81.5, 99.0, 47.5, 50.3, 95.0),
}


def test_shipped_reference_rows_hold_the_published_numbers():
    rows = load_reference()
    value = rows.set_index(["method", "dataset", "metric"])["value"]
    for (method, dataset), numbers in PAPERS.items():
        got = [value[(method, dataset, metric)] for metric in METRICS]
        assert got == pytest.approx([n / 100 for n in numbers]), (method, dataset)
    assert value[("Dinomaly+", "variety", "I-AUROC")] == pytest.approx(0.871)
    assert value[("Dinomaly", "variety", "P-AUROC")] == pytest.approx(0.915)
    papers = rows[rows["dataset"] != "variety"]
    assert set(papers["protocol"]) == {"dinomaly"}
    assert rows.loc[rows["dataset"] == "variety", "protocol"].isna().all()  # not known
    assert set(rows.loc[rows["dataset"] == "realiad", "k"]) == {30}
    assert set(rows.loc[rows["dataset"] == "variety", "k"]) == {160}
    sources = set(papers["source"])
    assert sources == {
        "Guo et al., CVPR 2025, arXiv:2405.14325v5, Table 1",
        "Luo et al., CVPR 2025, arXiv:2503.02424, Table 2",
    }


def test_shipped_rows_name_every_author():
    folder = Path(str(shipped_reference()))
    authors = {
        row["method"]: row["authors"]
        for name in ("dinomaly.yaml", "inp_former.yaml")
        for row in yaml.safe_load((folder / name).read_text())["rows"]
    }
    assert authors["Dinomaly"] == [
        "Jia Guo", "Shuai Lu", "Weihang Zhang", "Fang Chen", "Huiqi Li", "Hongen Liao"
    ]  # fmt: skip
    assert authors["INP-Former"] == [
        "Wei Luo", "Yunkang Cao", "Haiming Yao", "Xiaotian Zhang", "Jianan Lou", "Yuqi Cheng",
        "Weiming Shen", "Wenyong Yu",
    ]  # fmt: skip


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
    # columns: the measured and the published-only metrics in table order, k, protocol, source
    assert cells == [
        "Dinomaly (published)", "99.6", "99.8", "99.0", "98.4", "69.3", "69.2", "94.8", "15",
        "dinomaly", "Guo et al., CVPR 2025, arXiv:2405.14325v5, Table 1",
    ]  # fmt: skip
    assert not any("**" in line for line in published.splitlines() if line.startswith("| "))
    # only the measured dataset's rows: no VisA or Real-IAD Variety rows here
    assert "98.9" not in published and "Dinomaly+" not in published

    csv = pd.read_csv(io.StringIO(leaderboard(frame, fmt="csv", reference=True)))
    flagged = csv[csv["published"]]
    assert set(flagged["method"]) == {
        "Dinomaly (published)", "INP-Former (published)", "Dinomaly+ (published)"
    }  # fmt: skip
    assert set(flagged["protocol"].dropna()) == {"dinomaly"}
    assert not csv.loc[~csv["published"], "method"].str.contains("published").any()
    latex = leaderboard(frame, fmt="latex", per_category=[], reference=True)
    assert r"Dinomaly (published) & 99.6 & 99.8 & 99.0 & 98.4 & 69.3 & 69.2 & 94.8 & 15 &" in latex


DINOMALY_RUN = {
    ("dinomaly", 0, "mean"): {"I-AUROC": 0.990, "P-AP": 0.700, "AUPRO": 0.950},
    ("dinomaly", 1, "mean"): {"I-AUROC": 0.994, "P-AP": 0.680, "AUPRO": 0.940},
    ("patchcore", 0, "mean"): {"I-AUROC": 0.980, "P-AP": 0.600, "AUPRO": 0.930},
}


def _rows(text, title):
    """The cells of the rows of the rendered Markdown table whose title contains ``title``."""
    block = next(b for b in text.split("\n\n**") if title in b.split("\n")[0])
    lines = [line for line in block.splitlines() if line.startswith("| ")][1:]  # no header
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_a_published_row_is_not_compared_across_protocols():
    # measured under adbench's protocol; the Dinomaly and INP-Former rows follow dinomaly's
    for frame in (_frame(DINOMALY_RUN, protocol="adbench"), _frame(DINOMALY_RUN)):
        text = leaderboard(frame, per_category=[], reference=True)
        assert "measured beside published" not in text
        assert "difference (points)" not in text
        reasons = {row[0]: row[2] for row in _rows(text, "published rows without a difference")}
        assert set(reasons) == {"Dinomaly (published)", "INP-Former (published)"}
        for reason in reasons.values():  # one line per published row, naming the differing rules
            assert reason.startswith("measured under adbench, published under dinomaly: ")
            differing = reason.split("the rules differ in ")[1].split(", ")
            assert differing == [
                "crop_fraction", "eval_size", "mask_load", "mask_threshold", "smoothing",
                "image_score", "aupro", "view_pooling",
            ]  # fmt: skip


def test_a_published_row_stands_beside_its_method_under_the_same_protocol():
    frame = _frame(DINOMALY_RUN, protocol="dinomaly")
    text = leaderboard(frame, per_category=[], reference=True)
    rows = _rows(text, "measured beside published under the same protocol (dinomaly) at k = 15")
    # Dinomaly is compared; patchcore has no published row; INP-Former was not measured
    assert [row[0] for row in rows] == [
        "dinomaly", "Dinomaly (published)", "difference (points)"
    ]  # fmt: skip
    measured = {"I-AUROC": 99.2, "P-AP": 69.0, "AUPRO": 94.5}  # the means over the two seeds
    paper = dict(zip(METRICS, PAPERS[("Dinomaly", "mvtec")], strict=True))
    assert [float(v) for v in rows[0][1:]] == [measured[m] for m in ("I-AUROC", "P-AP", "AUPRO")]
    assert [float(v) for v in rows[1][1:]] == [paper[m] for m in ("I-AUROC", "P-AP", "AUPRO")]
    assert rows[2][1:] == ["-0.4", "-0.3", "-0.3"]  # measured minus published, in points
    reasons = {row[0]: row[2] for row in _rows(text, "published rows without a difference")}
    assert reasons == {"INP-Former (published)": "no measured method is INP-Former"}
    # a registry name matches the paper's name ignoring case and punctuation
    renamed = leaderboard(
        _frame(DINOMALY_RUN, protocol="dinomaly", names={"patchcore": "inp_former"}),
        per_category=[],
        reference=True,
        digits=2,
    )
    rows = _rows(renamed, "measured beside published")
    assert [row[0] for row in rows][3:] == [
        "patchcore", "INP-Former (published)", "difference (points)"
    ]  # fmt: skip
    assert rows[5][1:] == ["-1.70", "-11.00", "-1.90"]


def test_a_published_row_is_not_compared_at_another_k_or_without_a_protocol():
    run = {("dinomaly", 0, "mean"): {"I-AUROC": 0.99}}
    text = leaderboard(_frame(run, k=8, protocol="dinomaly"), per_category=[], reference=True)
    reasons = {row[0]: row[1:] for row in _rows(text, "published rows without a difference")}
    assert reasons["Dinomaly (published)"] == ["15", "published at k = 15, measured at k = 8"]
    text = leaderboard(
        _frame(run, dataset="variety", k=160, protocol="dinomaly"), per_category=[], reference=True
    )
    reasons = {row[0]: row[2] for row in _rows(text, "published rows without a difference")}
    assert set(reasons.values()) == {
        "the paper's evaluation protocol is not recorded (protocol: null)"
    }  # fmt: skip
    assert "measured beside published" not in text


def test_split_protocols_compare_each_table_with_its_own_protocol():
    both = pd.concat(
        [
            _frame({("dinomaly", 0, "mean"): {"I-AUROC": 0.99}}, protocol="dinomaly"),
            _frame({("naive", 0, "mean"): {"I-AUROC": 0.60}}, protocol="adbench"),
        ]
    )
    text = leaderboard(both, per_category=[], reference=True, split_protocols=True)
    titles = [b.split("**")[0] for b in text.split("\n\n**")]
    # one measured table per protocol, each followed by the published rows of mvtec
    assert sum("published reference rows" in title for title in titles) == 2
    beside = [b for b in text.split("\n\n**") if "measured beside published" in b]
    assert len(beside) == 1 and "protocol=dinomaly" in beside[0].split("\n")[0]
    assert "| difference (points) | -0.6 |" in beside[0]
    adbench_table = text[text.index("protocol=adbench") :]  # the adbench table's blocks
    reasons = [row[2] for row in _rows(adbench_table, "published rows without a difference")]
    assert len(reasons) == 2
    assert all(r.startswith("measured under adbench, published under dinomaly") for r in reasons)


ROW = {
    "method": "X",
    "dataset": "d",
    "k": 3,
    "protocol": "dinomaly",
    "setting": "multi-class",
    "metrics": {"I-AUROC": 90},
    "authors": ["A. Author"],
    "venue": "V 2025",
    "table": "Table 1",
    "arxiv": "2405.14325v5",
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
        (
            {"protocol": "dinomally"},
            r"unknown protocol 'dinomally'; did you mean 'dinomaly'\? "
            rf"known: {', '.join(sorted(PROTOCOLS))}$",
        ),
        ({"protocol": None}, r"missing 1 required positional argument: 'protocol'"),
        ({"source": "S"}, r"unknown key 'source'"),
        ({"table": " "}, r"'table' must not be empty"),
        ({"authors": []}, r"'authors' must list the paper's authors"),
        ({"arxiv": "arXiv:2405.14325"}, r"arxiv = 'arXiv:2405.14325' is not an arXiv identifier"),
        ({"arxiv": 2405.14325}, r"arxiv must be a string or null"),
        ({"seeds": [0, "a"]}, r"seeds must be a list of integers or null, got \[0, 'a'\]"),
    ],
)
def test_a_bad_reference_row_is_refused_naming_file_and_row(tmp_path, change, message):
    good = dict(ROW, method="Good")
    bad = {key: value for key, value in {**ROW, **change}.items() if value is not None}
    path = tmp_path / "ref.yaml"
    path.write_text(yaml.safe_dump({"rows": [good, bad]}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))} row 1: .*{message}"):
        load_reference(path)
    path.write_text(yaml.safe_dump({"rows": [good, dict(ROW, protocol=None, arxiv=None)]}))
    loaded = load_reference(path)
    assert list(loaded["method"]) == ["Good", "X"]
    assert list(loaded["source"]) == [
        "Author, V 2025, arXiv:2405.14325v5, Table 1",  # the citation, with the arXiv id
        "Author, V 2025, Table 1",  # a row without one
    ]


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
    assert {"dinomaly.yaml", "inp_former.yaml", "realiad_variety.yaml"} <= set(names)
    # every shipped file matches a package-data pattern, so a wheel carries it
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["adbench.runner"]
    assert all(any(fnmatch.fnmatch(f"{folder.name}/{n}", p) for p in patterns) for n in names)
    # the source tree's benchmarks/ folder plays no part: the rows load from anywhere
    assert not (REPO / "benchmarks" / "reference").exists()
    monkeypatch.chdir(tmp_path)
    assert {"Dinomaly", "Dinomaly+", "INP-Former"} <= set(load_reference()["method"])


def test_cli_reference_flag():
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    assert parser.parse_args(["leaderboard", "runs/x", "--reference"]).reference is True
    args = parser.parse_args(["leaderboard", "runs/x", "--reference", "r.yaml"])
    assert args.reference == "r.yaml"
    assert parser.parse_args(["leaderboard", "runs/x"]).reference is None
