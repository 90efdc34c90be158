"""A method's own trainer values out of range (a preset or a sweep's ``set:``): refused up front."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from reliability_helpers import run_cli, toy_sweep

from adbench.contract import TrainerDefaults
from adbench.errors import ConfigError
from adbench.runner import plan

OUT_OF_RANGE = {
    "max_epochs 0": ("max_epochs", 0, "must be >= 1 (or null: no epoch limit), got 0"),
    "max_epochs -1": ("max_epochs", -1, "must be >= 1 (or null: no epoch limit), got -1"),
    "max_steps 0": ("max_steps", 0, "must be >= 1, or -1 for no step limit, got 0"),
    "max_steps -2": ("max_steps", -2, "must be >= 1, or -1 for no step limit, got -2"),
    "accumulate_grad_batches 0": ("accumulate_grad_batches", 0, "must be >= 1, got 0"),
    "gradient_clip_val -0.5": (
        "gradient_clip_val",
        -0.5,
        "must be >= 0 (or null: no clipping), got -0.5",
    ),
}
EDGES = [
    {"max_epochs": None, "max_steps": 1},
    {"max_epochs": 1, "max_steps": -1},
    {"gradient_clip_val": 0.0, "accumulate_grad_batches": 1},
    {"gradient_clip_val": None},
]


@pytest.mark.parametrize("case", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_out_of_range_method_trainer_value_is_refused(
    small_root: Path, case: tuple[str, float, str], plugins
) -> None:
    field, value, rule = case
    with pytest.raises(ConfigError) as direct:
        TrainerDefaults(**{field: value})
    assert str(direct.value) == f"trainer.{field} {rule}"
    sweep = toy_sweep(small_root, methods=[{"name": "toy", "set": {f"trainer.{field}": value}}])
    with pytest.raises(ConfigError) as swept:
        plan(sweep)
    assert str(swept.value) == f"sweep 'reliability', method 'toy': trainer.{field} {rule}"


@pytest.mark.parametrize("values", EDGES)
def test_method_trainer_values_at_the_edges_are_accepted(values: dict) -> None:
    defaults = TrainerDefaults(**values)
    assert {key: getattr(defaults, key) for key in values} == values


def test_method_max_epochs_0_stops_the_run_before_any_cell(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], plugins
) -> None:
    sweep = toy_sweep(small_root, methods=[{"name": "toy", "set": {"trainer.max_epochs": 0}}])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "run", str(path), "--out", str(out), "--no-progress")
    assert code == 2 and err.strip().splitlines() == [
        "adbench: error: sweep 'reliability', method 'toy': trainer.max_epochs must be >= 1 "
        "(or null: no epoch limit), got 0"
    ]
    assert not out.exists()
