"""Strict config parsing, layering, --set parsing, YAML round trip and hashing."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from adbench.config import (
    config_hash,
    fill_num_classes,
    from_dict,
    load_yaml,
    merge,
    parse_set,
    to_dict,
    to_yaml,
    unflatten,
)
from adbench.errors import ConfigError


@dataclass(frozen=True)
class Sampler:
    steps: int = 25
    eta: float = 0.0
    kind: Literal["ddim", "ddpm"] = "ddim"


@dataclass(frozen=True)
class Demo:
    name: str = "demo"
    sampler: Sampler = field(default_factory=Sampler)
    layers: tuple[int, ...] = (1, 2, 3)
    betas: tuple[float, float] = (0.9, 0.999)
    root: Path | None = None
    threshold: float | None = 0.5
    flag: bool = True


def test_defaults_and_nested_values():
    cfg = from_dict(Demo, {"sampler": {"steps": 5}, "layers": [2, 3], "root": "data/x"})
    assert cfg.sampler == Sampler(steps=5)
    assert cfg.layers == (2, 3)
    assert cfg.root == Path("data/x")
    assert cfg.betas == (0.9, 0.999)


@dataclass(frozen=True)
class Outer:
    """A section whose field default differs from its class's defaults, two levels deep."""

    @dataclass(frozen=True)
    class Stage:
        sampler: Sampler = field(default_factory=Sampler)
        kwargs: dict = field(default_factory=dict)

    stage: Stage = field(
        default_factory=lambda: Outer.Stage(
            sampler=Sampler(steps=7, eta=0.5), kwargs={"img_size": 392}
        )
    )


def test_a_section_given_in_part_keeps_the_field_default_not_the_class_default():
    cfg = from_dict(Outer, {"stage": {"sampler": {"kind": "ddpm"}}})
    assert cfg.stage.sampler == Sampler(steps=7, eta=0.5, kind="ddpm")
    assert cfg.stage.kwargs == {"img_size": 392}
    # a mapping-valued field given replaces the default whole (it is a value, not a section)
    assert from_dict(Outer, {"stage": {"kwargs": {}}}).stage.kwargs == {}
    assert from_dict(Outer, {}).stage == Outer().stage


def test_a_trainer_setting_keeps_the_method_budget():
    from adbench.registry import resolve_config

    for name, preset, budget in (
        ("anomalib.patchcore", "tiny", ("max_epochs", 1)),
        ("mddnet", "paper", ("max_epochs", 200)),
        ("anomalib.dinomaly", "paper", ("max_steps", 10_000)),
    ):
        trainer = resolve_config(name, preset, {"trainer.precision": "32"}).trainer
        assert (trainer.precision, getattr(trainer, budget[0])) == ("32", budget[1]), name


def test_unknown_key_names_dotted_key_and_suggestion():
    with pytest.raises(ConfigError) as err:
        from_dict(Demo, {"sampler": {"stpes": 10}}, context="glad")
    message = str(err.value)
    assert "glad: unknown key 'sampler.stpes'" in message
    assert "did you mean 'sampler.steps'?" in message


def test_wrong_type_names_key_value_and_type():
    with pytest.raises(ConfigError, match=r"glad: sampler.steps must be int, got 'ten'"):
        from_dict(Demo, {"sampler": {"steps": "ten"}}, context="glad")
    with pytest.raises(ConfigError, match=r"flag must be bool, got 1"):
        from_dict(Demo, {"flag": 1})
    with pytest.raises(ConfigError, match=r"betas must have 2 entries"):
        from_dict(Demo, {"betas": [0.9]})
    with pytest.raises(
        ConfigError, match=r"sampler.kind must be one of 'ddim', 'ddpm', got 'ddmi'"
    ):
        from_dict(Demo, {"sampler": {"kind": "ddmi"}})
    with pytest.raises(ConfigError, match=r"sampler must be a mapping"):
        from_dict(Demo, {"sampler": 3})


def test_int_is_accepted_for_float_and_optional_accepts_none():
    cfg = from_dict(Demo, {"sampler": {"eta": 1}, "threshold": None})
    assert cfg.sampler.eta == 1.0 and isinstance(cfg.sampler.eta, float)
    assert cfg.threshold is None


def test_layering_defaults_preset_file_and_set(tmp_path):
    preset = {"sampler": {"steps": 10, "eta": 0.5}}
    user_file = tmp_path / "user.yaml"
    user_file.write_text("sampler:\n  steps: 20\nname: mine\n")
    data = merge(merge(preset, load_yaml(user_file)), parse_set(["sampler.eta=0.25"]))
    cfg = from_dict(Demo, data)
    assert (cfg.name, cfg.sampler.steps, cfg.sampler.eta) == ("mine", 20, 0.25)


def test_parse_set_reads_yaml_scalars_and_lists():
    parsed = parse_set(["a.b=2048", "a.c=[1, 2]", "d=true", "e=1e-4", "f=text"])
    assert parsed == {"a": {"b": 2048, "c": [1, 2]}, "d": True, "e": 1e-4, "f": "text"}
    with pytest.raises(ConfigError, match=re.escape("key.path=value")):
        parse_set(["novalue"])


def test_unflatten_merges_dotted_and_nested_keys():
    assert unflatten({"a.b": 1, "a.c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}


def test_yaml_round_trip(tmp_path):
    cfg = from_dict(Demo, {"sampler": {"steps": 7}, "root": "x/y", "layers": [4]})
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(cfg))
    assert from_dict(Demo, yaml.safe_load(path.read_text())) == cfg


def test_hash_is_stable_and_sensitive():
    a = from_dict(Demo, {"sampler": {"steps": 7}})
    assert config_hash(a) == config_hash(from_dict(Demo, {"sampler": {"steps": 7}}))
    assert config_hash(a) != config_hash(from_dict(Demo, {"sampler": {"steps": 8}}))
    # key order of a mapping does not matter, and the hash is fixed across processes/versions
    assert config_hash({"b": 1, "a": 2}) == config_hash({"a": 2, "b": 1})
    assert config_hash({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()[:12]
    assert to_dict(a)["layers"] == [1, 2, 3]


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("config file not found")):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=re.escape("expected a mapping")):
        load_yaml(bad)


@dataclass(frozen=True)
class Memory:
    num_classes: int = 0
    slots: int = 32


@dataclass(frozen=True)
class WithMemory:
    memory: Memory = field(default_factory=Memory)
    num_classes: int = 3


def test_fill_num_classes_fills_only_zero_fields_at_any_depth():
    filled = fill_num_classes(WithMemory(), 15)
    assert filled.memory.num_classes == 15 and filled.num_classes == 3
    assert filled.memory.slots == 32
    explicit = WithMemory(memory=Memory(num_classes=4))
    assert fill_num_classes(explicit, 15) is explicit
