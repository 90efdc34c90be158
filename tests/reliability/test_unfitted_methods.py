"""Scoring a method that was never fitted is refused, for every registered method.

Mechanics mode (``random_weights=True``) is the exception: it scores the untrained weights and
says so. The fitted state travels with a Lightning checkpoint and a state dict.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
from golden.test_golden_tiny_presets import CASES  # how each method is built small

import adbench
from adbench.errors import NotFittedError

SIZE = 64  # the golden fixture's size, which every method's small setting accepts
CPU = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}
# methods built in mechanics mode (a random ViT: about half a minute each on a CPU)
MECHANICS = {name for name, options in CASES.items() if options.get("random_weights")}
# the methods the package installs (not the toys other test modules register in this process)
INSTALLED = sorted(ep.name for ep in entry_points(group="adbench.methods"))


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory: pytest.TempPathFactory) -> adbench.UnifiedDataModule:
    """2 synthetic categories of 64 px, 2 training and 4 test images each."""
    root = tmp_path_factory.mktemp("unfitted") / "synthetic"
    adbench.make_synthetic(root, n_categories=2, seed=0, image_size=SIZE, n_train=2, n_test=4)
    index = adbench.load_index("synthetic", root)
    return adbench.UnifiedDataModule(index, image_size=SIZE, batch_size=4, seed=0)


def _refusal(name: str, method: adbench.AnomalyMethod) -> str:
    return (
        f"{name} was never fitted: fit it first (adbench.fit(method, datamodule)) or load a "
        f"fitted checkpoint ({type(method).__name__}.from_checkpoint(path))"
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in MECHANICS else name
        for name in INSTALLED
    ],
)
def test_every_method_refuses_to_score_before_fitting(
    name: str, datamodule: adbench.UnifiedDataModule
) -> None:
    options = {**CASES.get(name, {}), "data.image_size": SIZE}
    preset = options.pop("preset", "tiny")
    method = adbench.create(
        name, preset=preset, seed=0, num_classes=len(datamodule.categories), **options
    )
    if method.config.random_weights:
        _scored_in_mechanics_mode(name, method, datamodule)
        return
    with pytest.raises(NotFittedError) as info:
        adbench.evaluate(method, datamodule, **CPU)
    assert str(info.value) == _refusal(name, method)


def _scored_in_mechanics_mode(
    name: str, method: adbench.AnomalyMethod, datamodule: adbench.UnifiedDataModule
) -> None:
    said = f"{name} was never fitted: scoring its untrained weights .*mechanics mode"
    with pytest.warns(UserWarning, match=said):
        table = adbench.evaluate(method, datamodule, **CPU).to_frame()
    assert np.isfinite(table.loc["mean", "I-AUROC"])


def test_mechanics_mode_scores_an_unfitted_method_and_says_so(
    datamodule: adbench.UnifiedDataModule,
) -> None:
    method = adbench.create(
        "mddnet", "tiny", seed=0, random_weights=True, num_classes=2, **{"data.image_size": SIZE}
    )
    _scored_in_mechanics_mode("mddnet", method, datamodule)


def test_the_test_loop_refuses_too(datamodule: adbench.UnifiedDataModule) -> None:
    method = adbench.create("naive", "tiny", **{"data.image_size": SIZE})
    trainer = L.Trainer(logger=False, enable_model_summary=False, **CPU)
    with pytest.raises(NotFittedError, match="naive was never fitted"):
        trainer.test(method, datamodule=datamodule, verbose=False)


def test_fitted_state_travels_with_checkpoints_and_state_dicts(
    datamodule: adbench.UnifiedDataModule, tmp_path: Path
) -> None:
    def naive() -> adbench.AnomalyMethod:
        return adbench.create("naive", "tiny", **{"data.image_size": SIZE})

    def scores(method: adbench.AnomalyMethod) -> pd.DataFrame:
        return adbench.evaluate(method, datamodule, **CPU).to_frame()

    fitted = naive()
    adbench.fit(fitted, datamodule, default_root_dir=tmp_path, **CPU)
    expected = scores(fitted)
    (checkpoint,) = tmp_path.rglob("*.ckpt")  # Lightning wrote it before the fit ended
    pd.testing.assert_frame_equal(scores(type(fitted).from_checkpoint(str(checkpoint))), expected)

    copy = naive()
    copy.load_state_dict(fitted.state_dict())
    pd.testing.assert_frame_equal(scores(copy), expected)

    blank = naive()
    blank.load_state_dict(naive().state_dict())  # the weights of an unfitted method
    with pytest.raises(NotFittedError, match="naive was never fitted"):
        scores(blank)

    older = {key: value for key, value in fitted.state_dict().items() if key != "fitted"}
    legacy = naive()
    legacy.load_state_dict(older)  # strict: weights saved before the flag existed load as fitted
    pd.testing.assert_frame_equal(scores(legacy), expected)
