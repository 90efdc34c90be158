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
