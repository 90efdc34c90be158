"""Method registry: entry points, decorator registration, plugins installed with pip, errors."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from toy_method import TOY_PRESETS, ToyAutoencoder, ToyConfig

import adbench
from adbench import registry
from adbench.errors import AdbenchError, ConfigError, MissingDependencyError, UnknownNameError

TESTS = Path(__file__).resolve().parents[1]
BUILTINS = {"mddnet", "glad", "dpdiff_ad"}


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", {})
    monkeypatch.setattr(registry, "_LOADED", {})


def add_entry_point(monkeypatch, name: str, value: str) -> None:
    existing = registry._entry_points()
    extra = importlib.metadata.EntryPoint(name=name, value=value, group=registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: [*existing, extra])


def test_builtins_are_listed_from_entry_points_without_importing_them():
    code = (
        "import sys, json, adbench; names = adbench.list_methods(); "
        "heavy = [m for m in ('diffusers', 'ot', 'lightning') if m in sys.modules]; "
        "print(json.dumps([names, heavy]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, imported = json.loads(out.stdout)
    assert BUILTINS <= set(names)
    assert imported == []


def test_decorator_registration_create_and_override(clean_registry):
    @adbench.method("toy_dec", config=ToyConfig, presets=TOY_PRESETS, paper="none")
    class Toy(ToyAutoencoder):
        config: ToyConfig

    assert "toy_dec" in adbench.list_methods()
    model = adbench.create("toy_dec", preset="tiny", **{"optim.lr": 0.5})
    assert isinstance(model, Toy)
    assert model.config.width == 4 and model.config.optim.lr == 0.5
    assert Toy.method_name == "toy_dec"
    with pytest.warns(UserWarning, match=re.escape("registered before; replacing it")):
        adbench.method("toy_dec", config=ToyConfig, presets=TOY_PRESETS)(Toy)


def test_unknown_names_presets_and_overrides_suggest_the_closest(clean_registry):
    adbench.method("toy_dec", config=ToyConfig, presets=TOY_PRESETS)(ToyAutoencoder)
    with pytest.raises(
        UnknownNameError, match=r"unknown method 'toy_de'; did you mean 'toy_dec'\?"
    ):
        adbench.create("toy_de")
    with pytest.raises(
        UnknownNameError,
        match=r"unknown preset of method 'toy_dec' 'tinny'; did you "
        r"mean 'tiny'\? known: paper, tiny",
    ):
        adbench.create("toy_dec", preset="tinny")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'; did you mean 'optim.lr'\?"):
        adbench.create("toy_dec", preset="tiny", **{"optim.lrr": 1.0})
    with pytest.raises(ConfigError, match=r"toy_dec: width must be int, got 'wide'"):
        adbench.create("toy_dec", preset="tiny", width="wide")


def test_dynamically_added_entry_point_is_loaded_and_validated(clean_registry, monkeypatch):
    add_entry_point(monkeypatch, "toy_ep", "toy_method_spec:SPEC")
    module = type(sys)("toy_method_spec")

    class EpToy(ToyAutoencoder):
        config: ToyConfig

    module.SPEC = registry.MethodSpec("toy_ep", EpToy, ToyConfig, TOY_PRESETS)
    monkeypatch.setitem(sys.modules, "toy_method_spec", module)
    assert "toy_ep" in adbench.list_methods()
    assert isinstance(adbench.create("toy_ep", preset="tiny"), EpToy)


def test_broken_plugins_fail_by_name(clean_registry, monkeypatch):
    module = type(sys)("broken_plugin")
    module.NOT_A_SPEC = object()
    module.WRONG_NAME = registry.MethodSpec("other", ToyAutoencoder, ToyConfig, TOY_PRESETS)
    module.BAD_PRESET = registry.MethodSpec(
        "bad_preset", ToyAutoencoder, ToyConfig, {"tiny": {"wdith": 3}}
    )
    module.NEEDS = registry.MethodSpec(
        "needs",
        ToyAutoencoder,
        ToyConfig,
        TOY_PRESETS,
        requires=("no_such_module_xyz",),
        extra="fancy",
    )
    monkeypatch.setitem(sys.modules, "broken_plugin", module)
    for name, attr in [
        ("not_spec", "NOT_A_SPEC"),
        ("wrong", "WRONG_NAME"),
        ("bad_preset", "BAD_PRESET"),
        ("needs", "NEEDS"),
        ("gone", "MISSING"),
    ]:
        add_entry_point(monkeypatch, name, f"broken_plugin:{attr}")
    with pytest.raises(AdbenchError, match=r"method 'not_spec'.*must point at a MethodSpec"):
        registry.get_method_spec("not_spec")
    with pytest.raises(AdbenchError, match=r"method 'wrong'.*holds a spec named 'other'"):
        registry.get_method_spec("wrong")
    with pytest.raises(ConfigError, match=r"bad_preset preset 'tiny': unknown key 'wdith'"):
        registry.get_method_spec("bad_preset")
    with pytest.raises(MissingDependencyError, match=r"pip install 'adbench-uad\[fancy\]'"):
        registry.get_method_spec("needs")
    with pytest.raises(AttributeError):
        registry.get_method_spec("gone")


def test_name_owned_by_an_installed_distribution_cannot_be_registered(clean_registry):
    with pytest.raises(
        AdbenchError, match=re.escape("'mddnet' is owned by the installed distribution adbench")
    ):
        adbench.method("mddnet", config=ToyConfig, presets=TOY_PRESETS)(ToyAutoencoder)


def test_pip_installed_third_party_plugin_is_discovered(tmp_path):
    target = tmp_path / "site"
    package = shutil.copytree(TESTS / "plugin_pkg", tmp_path / "plugin_pkg")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(package),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(TESTS)])}
    code = (
        "import adbench; assert 'toy_plugin' in adbench.list_methods(); "
        "m = adbench.create('toy_plugin', preset='tiny'); print(type(m).__name__, m.config.width)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["PluginAutoencoder", "4"]


def test_a_preset_extends_another_and_cycles_are_refused():
    spec = registry.MethodSpec(
        "toy_ext",
        ToyAutoencoder,
        ToyConfig,
        {
            "base": {"data": {"image_size": 48, "batch_size": 4}},
            "child": {"extends": "base", "data": {"batch_size": 2}},
            "loop_a": {"extends": "loop_b"},
            "loop_b": {"extends": "loop_a"},
        },
    )
    assert spec.preset("child") == {"data": {"image_size": 48, "batch_size": 2}}
    with pytest.raises(ConfigError, match="loop_a -> loop_b -> loop_a"):
        spec.preset("loop_a")
