"""One experiment path: the same seed gives the same numbers from the CLI, the Python API and a
sweep cell, and no method's scores depend on the evaluation batch size."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import adbench
from adbench import cli, registry
from adbench.engine import cleared_budget, split_trainer_settings, trainer_kwargs
from adbench.errors import ConfigError

SIZE, SEED, STEPS = 32, 3, 2


def _tiny_methods() -> list[str]:
    names = []
    for name in adbench.list_methods():
        try:
            if "tiny" in registry.get_method_spec(name).presets:
                names.append(name)
        except Exception:  # an uninstallable plugin is the registry tests' business
            continue
    return names


TINY = _tiny_methods()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    adbench.make_synthetic(root, n_categories=2, seed=0, image_size=SIZE, n_train=6, n_test=6)
    return root


def _python_api(name: str, root) -> pd.DataFrame:
    index = adbench.load_index("synthetic", root)
    method = adbench.create(
        name, "tiny", seed=SEED, num_classes=len(index.categories), **{"data.image_size": SIZE}
    )
    datamodule = adbench.UnifiedDataModule(
        index, image_size=SIZE, batch_size=method.config.data.batch_size, seed=SEED
    )
    adbench.fit(
        method,
        datamodule,
        seed=SEED,
        max_steps=STEPS,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
    )
    return adbench.evaluate(
        method, datamodule, accelerator="cpu", devices=1, enable_progress_bar=False
    ).to_frame()


def _cli(name: str, root, out) -> pd.DataFrame:
    code = cli.main(
        [
            "fit",
            name,
            "--data",
            f"synthetic:{root}",
            "--preset",
            "tiny",
            "--image-size",
            str(SIZE),
            "--max-steps",
            str(STEPS),
            "--seed",
            str(SEED),
            "--accelerator",
            "cpu",
            "--devices",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return pd.read_csv(out / "metrics.csv", index_col=0)


def _sweep(name: str, root, out) -> pd.DataFrame:
    sweep = {
        "name": "one",
        "methods": [{"name": name, "preset": "tiny"}],
        "datasets": [{"format": "synthetic", "root": str(root)}],
        "categories": ["all"],
        "seeds": [SEED],
        "image_size": SIZE,
        "checkpoints": False,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": STEPS},
    }
    adbench.run_sweep(sweep, out, progress=False, report=False, fail_fast=True)
    (cell,) = (out / "cells").iterdir()
    return pd.read_csv(cell / "metrics.csv", index_col=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_cli_python_api_and_sweep_give_identical_metrics(name, root, tmp_path):
    python = _python_api(name, root)
    from_cli = _cli(name, root, tmp_path / "cli")
    from_sweep = _sweep(name, root, tmp_path / "sweep")
    python.index = python.index.astype(str)
    pd.testing.assert_frame_equal(from_cli, python, check_exact=False, rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(from_sweep, python, check_exact=False, rtol=0, atol=1e-12)
    # what the method recorded (build time and training): CLI run_record.json = the cell's
    (cell,) = (tmp_path / "sweep" / "cells").iterdir()
    record = json.loads((cell / "result.json").read_text())["run_record"]
    written = tmp_path / "cli" / "run_record.json"
    assert (json.loads(written.read_text()) if written.exists() else {}) == record
    if name in ("mddnet", "glad"):  # both synthesise anomalies from scikit-image's textures here
        synthesis = record["synthesis"] if name == "mddnet" else record["synthesis"]["textured"]
        assert synthesis["source"] == "textures" and synthesis["textures"]


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_image_scores_do_not_depend_on_the_evaluation_batch_size(name, root):
    index = adbench.load_index("synthetic", root)
    method = adbench.create(
        name, "tiny", seed=0, num_classes=len(index.categories), **{"data.image_size": SIZE}
    )
    datamodule = adbench.UnifiedDataModule(index, image_size=SIZE, batch_size=4, seed=0)
    adbench.fit(
        method, datamodule, max_steps=STEPS, accelerator="cpu", devices=1, enable_progress_bar=False
    )
    method.eval()
    scores = {}
    for batch_size in (1, 5):
        loader = adbench.UnifiedDataModule(index, image_size=SIZE, batch_size=batch_size, seed=0)
        loader.setup("predict")
        with torch.no_grad():
            scores[batch_size] = torch.cat(
                [method(batch.image).score for batch in loader.predict_dataloader()]
            )
    assert scores[1].shape == (len(index.frame.query("split == 'test'")),)
    # 1e-5 relative: float32 round-off of batched matrix products (PaDiM's scores are ~400)
    torch.testing.assert_close(scores[5], scores[1], rtol=1e-5, atol=1e-5)


def test_a_user_budget_replaces_the_methods_budget():
    assert cleared_budget({"max_steps": 10}) == {"max_epochs": None}
    assert cleared_budget({"max_epochs": 3}) == {"max_steps": -1}
    assert cleared_budget({"max_epochs": 3, "max_steps": 10}) == {}
    assert cleared_budget({"max_steps": -1}) == {}
    config_cls = type(registry.resolve_config("mddnet", "tiny"))
    overrides, trainer = split_trainer_settings(
        {"max_steps": 7, "max_epochs": None, "accelerator": "cpu"}, config_cls
    )
    assert overrides == {"trainer.max_steps": 7, "trainer.max_epochs": None}
    assert trainer == {"accelerator": "cpu"}
    method = adbench.create("mddnet", "tiny", num_classes=2)
    kwargs = trainer_kwargs(method.config, max_steps=7)
    assert kwargs["max_steps"] == 7 and "max_epochs" not in kwargs


def test_create_seeds_the_initial_weights():
    first = adbench.create("mddnet", "tiny", seed=5, num_classes=2)
    second = adbench.create("mddnet", "tiny", seed=5, num_classes=2)
    other = adbench.create("mddnet", "tiny", seed=6, num_classes=2)
    state, again, changed = (m.state_dict() for m in (first, second, other))
    assert all(torch.equal(state[key], again[key]) for key in state)
    assert any(
        not torch.equal(state[key], changed[key]) for key in state if state[key].is_floating_point()
    )


@pytest.mark.parametrize("flag", ["--image-size", "--batch-size", "--max-steps", "--max-epochs"])
def test_cli_refuses_non_positive_sizes_and_budgets(flag, root, tmp_path, capsys):
    code = cli.main(
        [
            "fit",
            "mddnet",
            "--data",
            f"synthetic:{root}",
            "--preset",
            "tiny",
            flag,
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--image-size must be >= 1, got -3"):
        cli._positive("--image-size", -3)
