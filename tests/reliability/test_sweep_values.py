"""Sweep values out of range, of the wrong type or listed twice: refused when the sweep is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from reliability_helpers import TOY, run_cli, toy_sweep

from adbench.errors import ConfigError
from adbench.runner import load_sweep, plan

OUT_OF_RANGE = {
    "trainer.max_epochs": (
        {"trainer": {"max_epochs": 0}},
        "trainer.max_epochs must be >= 1 (or null: each method's own), got 0",
    ),
    "trainer.max_epochs -1": (
        {"trainer": {"max_epochs": -1}},
        "trainer.max_epochs must be >= 1 (or null: each method's own), got -1",
    ),
    "trainer.max_steps": (
        {"trainer": {"max_steps": 0}},
        "trainer.max_steps must be >= 1, or -1 for no step limit (or null: each method's own), "
        "got 0",
    ),
    "trainer.accumulate_grad_batches": (
        {"trainer": {"accumulate_grad_batches": 0}},
        "trainer.accumulate_grad_batches must be >= 1 (or null: each method's own), got 0",
    ),
    "trainer.gradient_clip_val": (
        {"trainer": {"gradient_clip_val": -1.0}},
        "trainer.gradient_clip_val must be >= 0 (or null: each method's own), got -1.0",
    ),
    "trainer.limit_train_batches 0": (
        {"trainer": {"limit_train_batches": 0}},
        "trainer.limit_train_batches must be a number of batches >= 1 or a fraction in (0, 1] "
        "(or null: all), got 0",
    ),
    "trainer.limit_train_batches 1.5": (
        {"trainer": {"limit_train_batches": 1.5}},
        "trainer.limit_train_batches must be a number of batches >= 1 or a fraction in (0, 1] "
        "(or null: all), got 1.5",
    ),
    "trainer.devices 0": (
        {"trainer": {"devices": 0}},
        "trainer.devices must be >= 1, -1 (all), a list of device indices >= 0 or a string "
        "such as 'auto', got 0",
    ),
    "trainer.devices []": (
        {"trainer": {"devices": []}},
        "trainer.devices must be >= 1, -1 (all), a list of device indices >= 0 or a string "
        "such as 'auto', got []",
    ),
    "trainer.devices [-1]": (
        {"trainer": {"devices": [-1]}},
        "trainer.devices must be >= 1, -1 (all), a list of device indices >= 0 or a string "
        "such as 'auto', got [-1]",
    ),
    "trainer.num_nodes": (
        {"trainer": {"num_nodes": 0}},
        "trainer.num_nodes must be >= 1, got 0",
    ),
    "seeds -1": ({"seeds": [0, -1]}, "seeds[1] must be in 0..4294967295, got -1"),
    "seeds 2**32": ({"seeds": [2**32]}, "seeds[0] must be in 0..4294967295, got 4294967296"),
    "subset_seed": ({"subset_seed": -1}, "subset_seed must be >= 0 (or null: each seed), got -1"),
    "image_size 0": (
        {"image_size": 0},
        "image_size must be >= 1 (or null: each method's own), got 0",
    ),
    "image_size -8": (
        {"image_size": -8},
        "image_size must be >= 1 (or null: each method's own), got -8",
    ),
    "num_workers": ({"num_workers": -1}, "num_workers must be >= 0, got -1"),
    "categories 0": ({"categories": [2, 0]}, "categories[1]: k must be >= 1 or 'all', got 0"),
}


@pytest.mark.parametrize("field", sorted(OUT_OF_RANGE))
def test_out_of_range_value_is_refused_with_its_field(field: str, small_root: Path) -> None:
    change, message = OUT_OF_RANGE[field]
    sweep = toy_sweep(small_root)
    for key, value in change.items():
        sweep[key] = {**sweep[key], **value} if key == "trainer" else value
    with pytest.raises(ConfigError) as info:
        load_sweep(sweep)
    assert str(info.value) == f"sweep: {message}"


def test_values_at_the_edges_of_their_range_are_accepted(small_root: Path) -> None:
    sweep = load_sweep(
        toy_sweep(
            small_root,
            seeds=[0, 2**32 - 1],
            subset_seed=0,
            image_size=1,
            num_workers=0,
            trainer={
                "max_epochs": 1,
                "max_steps": -1,
                "accumulate_grad_batches": 1,
                "gradient_clip_val": 0.0,
                "limit_train_batches": 1.0,
                "devices": [0],
                "num_nodes": 1,
            },
        )
    )
    assert sweep.seeds == (0, 2**32 - 1) and sweep.trainer.devices == (0,)
    assert load_sweep(toy_sweep(small_root, trainer={"devices": -1})).trainer.devices == -1


def test_max_epochs_0_stops_the_run_before_any_cell(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(toy_sweep(small_root)))
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "run",
        str(path),
        "--out",
        str(out),
        "--plugin",
        TOY,
        "--set",
        "trainer.max_epochs=0",
    )
    assert (code, err) == (
        2,
        "adbench: error: sweep.yaml: trainer.max_epochs must be >= 1 (or null: each "
        "method's own), got 0\n",
    )
    assert not out.exists()


def test_image_size_a_method_cannot_use_fails_before_any_cell(
    small_root: Path, plugins: None
) -> None:
    dino = {"name": "anomalib.dinomaly", "random_weights": True}
    sweep = toy_sweep(small_root, image_size=30, methods=[{**dino, "set": {"crop_size": 0}}])
    with pytest.raises(ConfigError) as info:
        plan(sweep)
    assert str(info.value) == (
        "sweep 'reliability', method 'anomalib.dinomaly': data.image_size must be a multiple "
        "of the ViT patch size 14, got 30"
    )
    sweep["methods"] = [{**dino, "set": {"crop_size": 20}}]
    with pytest.raises(ConfigError, match="crop_size must be a multiple of the ViT patch size 14"):
        plan(sweep)
    sweep["methods"] = [{**dino, "set": {"crop_size": 28}}, {"name": "toy", "preset": "tiny"}]
    _, cells = plan(sweep)  # a crop the patches tile is fine; the toy method takes any size
    assert {cell.config["data"]["image_size"] for cell in cells} == {30}


WRONG_TYPE = {
    "categories": (
        {"categories": ["four"]},
        "categories[0] must be an integer or 'all', got 'four'",
    ),
    "trainer.max_epochs": (
        {"trainer": {"max_epochs": "ten"}},
        "trainer.max_epochs must be an integer or null, got 'ten'",
    ),
    "trainer.devices": (
        {"trainer": {"devices": 1.5}},
        "trainer.devices must be an integer, a string or a list of integers, got 1.5",
    ),
}


@pytest.mark.parametrize("field", sorted(WRONG_TYPE))
def test_wrong_type_names_the_accepted_types(field: str, small_root: Path) -> None:
    change, message = WRONG_TYPE[field]
    sweep = {**toy_sweep(small_root), **change}
    with pytest.raises(ConfigError) as info:
        load_sweep(sweep)
    assert str(info.value) == f"sweep: {message}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "trainer: {gradient_clip_val: 1e9}",
            "trainer.gradient_clip_val must be a number or null, got '1e9' (a string: YAML 1.1 "
            "reads 1e9 as text; write 1.0e+9)",
        ),
        (
            "aupro_fpr_limit: 5E-2",
            "aupro_fpr_limit must be a number or null, got '5E-2' (a string: YAML 1.1 reads "
            "5E-2 as text; write 5.0e-2)",
        ),
        (
            "trainer: {max_steps: 1e3}",
            "trainer.max_steps must be an integer or null, got '1e3' (a string: YAML 1.1 reads "
            "1e3 as text; write 1000)",
        ),
        (
            "num_workers: '2'",
            "num_workers must be int, got '2' (a string: write it without quotes)",
        ),
    ],
    ids=["float or null", "float", "int or null", "quoted int"],
)
def test_number_yaml_reads_as_text_gets_a_hint(line: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"methods: [{{name: toy}}]\ndatasets: [{{format: synthetic, root: x}}]\n{line}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert str(info.value) == f"sweep.yaml: {message}"


DUPLICATES: dict[str, tuple[dict[str, Any], str]] = {
    "seeds": ({"seeds": [0, 1, 0]}, "sweep: seeds lists 0 more than once; list each value once"),
    "categories": (
        {"categories": [1, 2, 2]},
        "sweep: categories lists 2 more than once; list each value once",
    ),
    "categories all": (
        {"categories": ["all", 1, "all"]},
        "sweep: categories lists 'all' more than once; list each value once",
    ),
    "methods": (
        {"methods": [{"name": "toy", "preset": "tiny"}, {"name": "toy", "preset": "tiny"}]},
        "sweep 'reliability': two methods are labelled 'toy:tiny'; give each its own `label:`",
    ),
}


@pytest.mark.parametrize("field", sorted(DUPLICATES))
def test_duplicate_values_are_refused(field: str, small_root: Path, plugins: None) -> None:
    change, message = DUPLICATES[field]
    with pytest.raises(ConfigError) as info:
        plan(toy_sweep(small_root, **change))
    assert str(info.value) == message
