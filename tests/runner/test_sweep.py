"""Sweep files: expansion, the rules that fill method fields, validation errors, cell ids."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import pytest
import yaml
from runner_helpers import make_sweep

import adbench
from adbench.contract import AnomalyMethod, MethodConfig
from adbench.data import CategorySubset, load_index
from adbench.errors import ConfigError, DatasetNotFoundError, UnknownNameError
from adbench.runner import load_sweep, plan
from adbench.runner.sweep import expand


def _cells(sweep):
    return plan(sweep)[1]


def test_expansion_counts_order_and_nested_subsets(tiny_root, toy):
    sweep = make_sweep(
        tiny_root,
        categories=[1, 2, "all"],
        seeds=[0, 1],
        methods=[
            {"name": "toy", "preset": "tiny"},
            {"name": "toy", "preset": "tiny", "set": {"channels": 2}, "label": "toy2"},
        ],
    )
    cells = _cells(sweep)
    assert len(cells) == 3 * 2 * 2
    assert [(c.k, c.seed, c.label) for c in cells[:4]] == [
        (1, 0, "toy"),
        (1, 0, "toy2"),
        (1, 1, "toy"),
        (1, 1, "toy2"),
    ]
    assert sorted({c.k for c in cells}) == [1, 2, 4]
    index = load_index("synthetic", tiny_root)
    for cell in cells:
        expected = CategorySubset(cell.k, seed=0).names(index.categories)
        assert cell.categories == tuple(sorted(expected))
    by_k = {c.k: set(c.categories) for c in cells if c.seed == 0}
    assert by_k[1] < by_k[2] < by_k[4] == set(index.categories)


def test_subset_seed_none_draws_per_seed(tiny_root, toy):
    cells = _cells(make_sweep(tiny_root, categories=[2], seeds=[0, 1, 2, 3], subset_seed=None))
    index = load_index("synthetic", tiny_root)
    for cell in cells:
        assert cell.categories == tuple(
            sorted(CategorySubset(2, seed=cell.seed).names(index.categories))
        )
        assert cell.config["subset_seed"] == cell.seed
    assert len({c.categories for c in cells}) > 1


def test_sweep_settings_fill_the_method_config(tiny_root, toy):
    sweep = make_sweep(
        tiny_root,
        image_size=24,
        categories=[3],
        trainer={"accelerator": "cpu", "devices": 1, "max_steps": 7, "precision": 32},
    )
    (cell,) = _cells(sweep)
    config = cell.config["method"]["config"]
    assert config["num_classes"] == 3  # the num_classes rule: 0 -> k
    assert config["data"]["image_size"] == 24
    assert cell.config["data"] == {"image_size": 24, "batch_size": 4}
    assert config["trainer"]["max_steps"] == 7
    assert config["trainer"]["max_epochs"] is None  # a step budget replaces the epoch budget
    assert config["trainer"]["precision"] == "32"
    assert cell.config["trainer"] == {
        "accelerator": "cpu",
        "devices": 1,
        "strategy": "auto",
        "num_nodes": 1,
    }


def test_sweep_budget_replaces_the_method_budget(tiny_root, toy):
    def trainer(**settings):
        (cell,) = _cells(make_sweep(tiny_root, categories=[2], trainer=settings))
        return cell.config["method"]["config"]["trainer"]

    assert trainer() == {**trainer(), "max_epochs": 1, "max_steps": 30}  # the tiny preset's
    assert trainer(max_epochs=3)["max_steps"] == -1
    assert trainer(max_steps=5)["max_epochs"] is None
    assert (
        trainer(max_epochs=3, max_steps=5)["max_epochs"],
        trainer(max_epochs=3, max_steps=5)["max_steps"],
    ) == (3, 5)


def test_method_set_wins_over_sweep_settings(tiny_root, toy):
    sweep = make_sweep(
        tiny_root,
        image_size=24,
        categories=[2],
        methods=[
            {"name": "toy", "preset": "tiny", "set": {"data.image_size": 16, "num_classes": 9}}
        ],
    )
    (cell,) = _cells(sweep)
    assert cell.config["method"]["config"]["data"]["image_size"] == 16
    assert cell.config["method"]["config"]["num_classes"] == 9


def test_sweep_file_and_overrides(tmp_path, tiny_root, toy):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(make_sweep(tiny_root, name="")))
    sweep = load_sweep(path, overrides={"seeds": [3], "trainer.max_epochs": 2})
    assert sweep.name == "mine"
    assert sweep.seeds == (3,)
    assert sweep.trainer.max_epochs == 2
    assert sweep.launcher.name == "local"


def test_cell_ids_are_stable_and_distinct(tiny_root, toy):
    base = make_sweep(tiny_root, seeds=[0, 1])
    ids = [c.id for c in _cells(base)]
    assert len(set(ids)) == len(ids) == 4
    reordered = dict(reversed(list(base.items())))
    reordered["trainer"] = dict(reversed(list(base["trainer"].items())))
    assert [c.id for c in _cells(reordered)] == ids
    cwd = os.getcwd()
    os.chdir(tiny_root.parent)
    try:
        relative = make_sweep(tiny_root.name, seeds=[0, 1])
        assert [c.id for c in _cells(relative)] == ids
    finally:
        os.chdir(cwd)
    changed = [
        make_sweep(
            tiny_root,
            seeds=[0, 1],
            methods=[{"name": "toy", "preset": "tiny", "set": {"channels": 3}}],
        ),
        make_sweep(tiny_root, seeds=[0, 1], trainer={"accelerator": "cpu", "max_epochs": 2}),
        make_sweep(tiny_root, seeds=[0, 1], evaluation="exact"),
        make_sweep(
            tiny_root, seeds=[0, 1], methods=[{"name": "toy", "preset": "tiny", "label": "renamed"}]
        ),
    ]
    for sweep in changed:
        assert not set(ids) & {c.id for c in _cells(sweep)}
    runtime_only = make_sweep(tiny_root, seeds=[0, 1], num_workers=2, checkpoints=False)
    assert [c.id for c in _cells(runtime_only)] == ids


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"seed": [0]}, ConfigError, "unknown key 'seed'; did you mean 'seeds'?"),
        (
            {"methods": [{"name": "toy", "prest": "tiny"}]},
            ConfigError,
            "methods[0]: unknown key 'prest'; did you mean 'preset'?",
        ),
        (
            {"methods": [{"name": "toy", "set": {"chanels": 2}}]},
            ConfigError,
            "method 'toy': toy: unknown key 'chanels'; did you mean 'channels'?",
        ),
        (
            {"methods": [{"name": "tyo"}]},
            UnknownNameError,
            "unknown method 'tyo'; did you mean 'toy'?",
        ),
        (
            {"methods": [{"name": "toy", "preset": "tiyn"}]},
            UnknownNameError,
            "did you mean 'tiny'?",
        ),
        ({"methods": []}, ConfigError, "methods must be 'all' or a non-empty list"),
        (
            {"methods": [{"name": "toy"}, {"name": "toy"}]},
            ConfigError,
            "two methods are labelled 'toy:paper'",
        ),
        ({"launcher": {"name": "slrum"}}, UnknownNameError, "did you mean 'slurm'?"),
        (
            {"launcher": {"name": "slurm", "partitin": "gpu"}},
            ConfigError,
            "unknown key 'partitin'; did you mean 'partition'?",
        ),
        ({"categories": [2, 5]}, ConfigError, "asks for k=5 but dataset 'synthetic' has 4"),
        ({"categories": [0]}, ConfigError, "k must be >= 1"),
        ({"seeds": []}, ConfigError, "seeds must list at least one seed"),
        ({"trainer": {"max_epoch": 1}}, ConfigError, "did you mean 'trainer.max_epochs'?"),
        ({"evaluation": "exakt"}, ConfigError, "did you mean 'exact'?"),
        (
            {"datasets": [{"format": "mvtec", "root": "x", "synthetic": {}}]},
            ConfigError,
            "'synthetic' options need format: synthetic",
        ),
        ({"datasets": [{"format": "mvtec"}]}, ConfigError, "needs format and root"),
        (
            {"datasets": [{"format": "mvtek", "root": "."}]},
            UnknownNameError,
            "did you mean 'mvtec'?",
        ),
        (
            {"datasets": [{"format": "mvtec", "root": "/nonexistent/mvtec"}]},
            DatasetNotFoundError,
            "/nonexistent/mvtec",
        ),
    ],
)
def test_validation_errors(tiny_root, toy, change, error, message):
    with pytest.raises(error) as info:
        _cells(make_sweep(tiny_root, **change))
    assert message in str(info.value)


def test_missing_required_key(toy):
    with pytest.raises(ConfigError, match="missing required key 'datasets'"):
        load_sweep({"methods": [{"name": "toy"}]})


@dataclass(frozen=True)
class _PaperOnlyConfig(MethodConfig):
    pass


def test_methods_all_expands_registered_methods(tiny_root, toy, caplog):
    @adbench.method("toy_paper_only", config=_PaperOnlyConfig, presets={"paper": {}})
    class _PaperOnly(AnomalyMethod):
        config: _PaperOnlyConfig

    with caplog.at_level(logging.WARNING, logger="adbench.runner.sweep"):
        cells = expand(
            load_sweep(make_sweep(tiny_root, methods="all", preset="tiny", categories=[2]))
        )
    names = {c.method for c in cells}
    assert "toy" in names and "toy_paper_only" not in names
    left_out = [r.getMessage() for r in caplog.records if "leaving out" in r.getMessage()]
    assert len(left_out) == 1  # one message naming every method left out
    assert left_out[0].startswith("leaving out: ")
    assert "toy_paper_only (no preset 'tiny')" in left_out[0]
