"""The experiment seam: `resolve` layers every setting once, the engine's rules, and the files a
run leaves (the same from `adbench fit` and a sweep cell)."""

from __future__ import annotations

import json

import lightning as L
import pytest
import yaml

import adbench
from adbench import cli
from adbench.config import num_classes_fields
from adbench.errors import ConfigError
from adbench.experiment import Experiment, resolve
from adbench.run_files import RESULT

SIZE = 32


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    adbench.make_synthetic(root, n_categories=2, seed=0, image_size=SIZE, n_train=4, n_test=4)
    return root


@pytest.fixture(scope="module")
def index(root):
    return adbench.load_index("synthetic", root)


def test_resolve_layers_preset_file_settings_and_overrides_in_that_order(index, tmp_path):
    file = tmp_path / "extra.yaml"
    file.write_text(
        yaml.safe_dump({"optim": {"lr": 0.5}, "data": {"image_size": 48, "batch_size": 3}})
    )
    experiment = resolve(
        "mddnet",
        index,
        preset="tiny",
        files=[file],
        settings={"image_size": 40, "max_steps": 7, "accelerator": "cpu", "max_epochs": None},
        overrides={"data.image_size": 24},
        seed=4,
    )
    config = experiment.config
    assert config.optim.lr == 0.5  # the file over the preset
    assert config.data.batch_size == 3  # the file, no setting given
    assert experiment.image_size == 24  # the override over the setting over the file
    assert experiment.batch_size == 3
    assert (config.trainer.max_steps, config.trainer.max_epochs) == (7, None)  # budget replaced
    assert dict(experiment.trainer) == {"accelerator": "cpu"}  # not a config field
    assert set(num_classes_fields(config).values()) == {len(index.categories)}  # from the data
    assert experiment.preset == "tiny" and experiment.overrides == {"data.image_size": 24}


def test_resolve_names_the_method_of_a_bad_key(index):
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        resolve("mddnet", index, preset="tiny", overrides={"optim.lrr": 1.0})


def test_an_experiment_round_trips_through_its_record(index):
    experiment = resolve(
        "naive",
        index,
        preset="tiny",
        settings={"image_size": SIZE},
        seed=2,
        evaluation="exact",
        aupro_fpr_limit=0.05,
        label="floor",
    )
    record = json.loads(json.dumps(experiment.to_record()))  # what config.yaml / cell.json hold
    again = Experiment.from_record(record, index)
    assert again == experiment
    assert record["data"] == {"image_size": SIZE, "batch_size": experiment.batch_size}


def test_an_experiment_refuses_an_unknown_evaluation_mode(index):
    with pytest.raises(ConfigError, match="evaluation must be one of streaming, exact"):
        resolve("naive", index, preset="tiny", evaluation="fast")


def _tiny_naive(index, size=SIZE):
    return adbench.create("naive", "tiny", **{"data.image_size": size})


def test_fit_reseeds_only_when_given_a_seed(index, monkeypatch):
    seeds = []
    monkeypatch.setattr(L, "seed_everything", lambda seed, **_: seeds.append(seed))
    datamodule = adbench.UnifiedDataModule(index, image_size=SIZE, batch_size=4)
    options = {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False}
    adbench.fit(_tiny_naive(index), datamodule, **options)
    assert seeds == []
    adbench.fit(_tiny_naive(index), datamodule, seed=11, **options)
    assert seeds == [11]


def test_fit_refuses_a_datamodule_at_another_image_size(index):
    method = _tiny_naive(index)
    datamodule = adbench.UnifiedDataModule.for_config(index, method.config)
    assert datamodule.image_size == (SIZE, SIZE)
    assert datamodule.batch_size == method.config.data.batch_size
    with pytest.raises(ConfigError, match=r"32 x 32 px images .* data.image_size=64"):
        adbench.fit(_tiny_naive(index, size=64), datamodule, max_epochs=1, accelerator="cpu")


def test_cli_fit_leaves_the_files_of_a_sweep_cell(root, tmp_path):
    out = tmp_path / "fit"
    code = cli.main(
        [
            "fit",
            "naive",
            "--data",
            f"synthetic:{root}",
            "--preset",
            "tiny",
            "--image-size",
            str(SIZE),
            "--max-epochs",
            "1",
            "--accelerator",
            "cpu",
            "--devices",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    sweep = {
        "name": "one",
        "methods": [{"name": "naive", "preset": "tiny"}],
        "datasets": [{"format": "synthetic", "root": str(root)}],
        "categories": ["all"],
        "image_size": SIZE,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1},
    }
    adbench.run_sweep(sweep, tmp_path / "sweep", progress=False, report=False, fail_fast=True)
    (cell,) = (tmp_path / "sweep" / "cells").iterdir()
    runner_only = {"cell.json", "runtime.json", "run.log", ".lock"}  # the runner's bookkeeping
    assert {p.name for p in out.iterdir()} == {p.name for p in cell.iterdir()} - runner_only
    fit_result = json.loads((out / RESULT).read_text())
    cell_result = json.loads((cell / RESULT).read_text())
    assert set(cell_result) - set(fit_result) == {"cell_id"}
    assert fit_result["metrics"] == cell_result["metrics"]
    fit_config = yaml.safe_load((out / "config.yaml").read_text())
    cell_config = yaml.safe_load((cell / "config.yaml").read_text())
    assert set(cell_config) - set(fit_config) == {"subset_seed"}
    assert fit_config["method"]["config"] == cell_config["method"]["config"]
