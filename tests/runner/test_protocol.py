"""The evaluation protocol card: its content hash, the AUPRO FPR limit from sweep to metric,
``protocol.yaml`` in run directories, and leaderboards that refuse to rank mixed protocols."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from runner_helpers import make_sweep

import adbench
from adbench.errors import ConfigError
from adbench.protocols import PROTOCOLS, RANKED_FIELDS, differing_fields, index_hash, protocol_card
from adbench.runner import leaderboard, load_results, run_sweep


def test_index_hash_is_the_content_not_the_location(tmp_path):
    first = adbench.make_synthetic(
        tmp_path / "a" / "synthetic", n_categories=3, image_size=32, n_train=2, n_test=3
    )
    second = adbench.make_synthetic(
        tmp_path / "elsewhere" / "deeper", n_categories=3, image_size=32, n_train=2, n_test=3
    )
    a, b = adbench.load_index("synthetic", first), adbench.load_index("synthetic", second)
    assert index_hash(a.frame) == index_hash(b.frame)
    fewer = a.select(a.categories[:2])
    assert index_hash(fewer.frame) != index_hash(a.frame)
    card = protocol_card(
        "synthetic",
        a,
        image_size=32,
        evaluation="streaming",
        protocol=PROTOCOLS["adbench"],
        seeds=[2, 0],
    )
    assert set(RANKED_FIELDS) <= set(card)
    assert card["aupro_fpr_limit"] == 0.3 and card["seeds"] == [0, 2]
    assert card["categories"] == sorted(a.categories)
    other = {**card, "aupro_fpr_limit": 0.05, "image_size": 64, "seeds": [1]}
    assert differing_fields(card, other) == ["aupro_fpr_limit"]  # size and seeds do not block


@pytest.fixture(scope="module")
def two_limits(tmp_path_factory, tiny_root, toy):
    """The toy sweep run with AUPRO's FPR limit at 0.3 (default) and at 0.05."""
    runs = {}
    for limit in (0.3, 0.05):
        out = tmp_path_factory.mktemp(f"fpr{limit}")
        sweep = make_sweep(
            tiny_root, categories=[2], **({} if limit == 0.3 else {"aupro_fpr_limit": limit})
        )
        run_sweep(sweep, out, progress=False, report=True, fail_fast=True)
        runs[limit] = out
    return runs


def test_the_fpr_limit_reaches_aupro_and_the_card(two_limits):
    tables = {}
    for limit, out in two_limits.items():
        (cell,) = (out / "cells").iterdir()
        result = json.loads((cell / "result.json").read_text())
        assert result["protocol"]["aupro_fpr_limit"] == limit
        assert yaml.safe_load((cell / "protocol.yaml").read_text()) == result["protocol"]
        tables[limit] = pd.read_csv(cell / "metrics.csv", index_col=0)
    wide, narrow = tables[0.3], tables[0.05]
    assert not wide["AUPRO"].equals(narrow["AUPRO"])  # same maps, another integration limit
    pd.testing.assert_frame_equal(
        wide.drop(columns=["AUPRO", "mAD"]), narrow.drop(columns=["AUPRO", "mAD"])
    )
    card = yaml.safe_load((two_limits[0.05] / "protocol.yaml").read_text())["protocols"]
    assert [(c["k"], c["aupro_fpr_limit"], c["seeds"]) for c in card] == [(2, 0.05, [0])]


def test_leaderboard_refuses_mixed_protocols_unless_split(two_limits):
    both = pd.concat([load_results(out) for out in two_limits.values()], ignore_index=True)
    with pytest.raises(
        ConfigError,
        match=r"k=2 .*differ in aupro_fpr_limit "
        r"\(aupro_fpr_limit=0.3; aupro_fpr_limit=0.05\)",
    ):
        leaderboard(both, per_category=[])
    text = leaderboard(both, per_category=[], split_protocols=True)
    assert "synthetic (aupro_fpr_limit=0.3): k = 2" in text
    assert "synthetic (aupro_fpr_limit=0.05): k = 2" in text
    old = both.assign(protocol="")  # results measured before protocol cards: not checked
    assert "synthetic: k = 2" in leaderboard(old, per_category=[])


def test_a_bad_fpr_limit_is_refused_before_training(tiny_root, toy, tmp_path):
    with pytest.raises(ConfigError, match=r"aupro_fpr_limit must be in \(0, 1\], got 0"):
        run_sweep(make_sweep(tiny_root, aupro_fpr_limit=0), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"aupro_fpr_limit must be in \(0, 1\], got 1.5"):
        adbench.Experiment(
            "toy", None, adbench.load_index("synthetic", tiny_root), aupro_fpr_limit=1.5
        )


@pytest.fixture(scope="module")
def dinomaly_run(tmp_path_factory, tiny_root, toy):
    """The toy sweep at k = 2 under the dinomaly protocol."""
    out = tmp_path_factory.mktemp("dinomaly")
    sweep = make_sweep(tiny_root, categories=[2], protocol="dinomaly")
    report = run_sweep(sweep, out, progress=False, report=False, fail_fast=True)
    return out, report


def test_a_named_protocol_reaches_the_cell_the_card_and_the_method_config(dinomaly_run, two_limits):
    out, report = dinomaly_run
    (cell,) = report.cells
    assert cell.config["protocol"] == "dinomaly" and cell.config["evaluation"] == "exact"
    assert cell.config["view_pooling"] is None
    assert cell.config["method"]["config"]["scoring"]["sigma"] == 0.0  # smoothed once
    assert cell.config["method"]["set"] == {}  # the user's overrides, as given
    result = json.loads((out / "cells" / cell.id / "result.json").read_text())
    card = result["protocol"]
    assert card["protocol"] == "dinomaly" and card["rules"]["eval_size"] == 256
    assert card["rules"]["smoothing"] == {"sigma": 4.0, "kernel_size": 5, "padding": "zeros"}
    default = json.loads(next((two_limits[0.3] / "cells").glob("*/result.json")).read_text())
    assert default["protocol"]["protocol"] == "adbench"
    (default_cell,) = (two_limits[0.3] / "cells").iterdir()
    config = yaml.safe_load((default_cell / "config.yaml").read_text())
    assert "protocol" not in config  # the default keeps the cell ids of earlier versions


def test_the_leaderboard_refuses_to_rank_two_protocols_together(dinomaly_run, two_limits):
    mixed = pd.concat([load_results(dinomaly_run[0]), load_results(two_limits[0.3])])
    with pytest.raises(ConfigError, match=r"differ in protocol, rules, .*protocol=dinomaly"):
        leaderboard(mixed, per_category=[])
    text = leaderboard(mixed, per_category=[], split_protocols=True)
    assert "protocol=dinomaly" in text and "protocol=adbench" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"evaluation": "streaming"}, r"protocol 'dinomaly' evaluates in exact mode"),
        ({"view_pooling": "mean"}, r"scores the views of an object as independent images"),
        ({"protocol": "dinomally"}, r"unknown protocol 'dinomally'; did you mean 'dinomaly'"),
    ],
)
def test_protocol_settings_are_checked_when_the_sweep_is_read(
    tiny_root, toy, tmp_path, change, message
):
    sweep = make_sweep(tiny_root, **{"protocol": "dinomaly", **change})
    with pytest.raises(ConfigError, match=message):
        run_sweep(sweep, tmp_path, progress=False)
