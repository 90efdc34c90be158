"""The shipped sweep files validate, and every method setting in them resolves."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from adbench.registry import get_method_spec, list_methods
from adbench.runner import load_sweep
from adbench.runner.sweep import resolve_methods

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
FILES = sorted(BENCHMARKS.glob("*.yaml"))
# sweeps of tiny presets on the built-in synthetic data (no paper presets)
CPU_SWEEPS = ("quickstart", "scaling_synthetic", "glad_tiny_families")


def test_every_benchmark_file_is_present():
    assert {p.stem for p in FILES} >= {
        "quickstart",
        "mvtec",
        "visa",
        "mpdd",
        "realiad",
        "variety160",
        "scaling",
    }


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_benchmark_file_resolves(path):
    sweep = load_sweep(path)
    methods = resolve_methods(sweep)
    assert methods
    if path.stem not in CPU_SWEEPS:
        presets = {entry.preset for _, entry, _, _ in methods}
        assert "paper" in presets and all(p.startswith("paper") for p in presets)
        assert {entry.name for _, entry, _, _ in methods} >= {"mddnet", "glad", "dpdiff_ad"}


def test_quickstart_runs_every_registered_method_with_tiny_presets():
    sweep = load_sweep(BENCHMARKS / "quickstart.yaml")
    methods = resolve_methods(sweep)
    names = sorted(entry.name for _, entry, _, _ in methods)
    assert names == [m for m in list_methods() if "tiny" in get_method_spec(m).presets]
    installed = {ep.name for ep in entry_points(group="adbench.methods")}
    assert installed >= {"mddnet", "glad", "dpdiff_ad", "anomalib.patchcore"}
    offline = {m for m in installed if "tiny" in get_method_spec(m).presets}
    assert offline <= set(names)
    # a method without an offline-capable (tiny) preset is left out automatically
    assert "anomalib.dinomaly" in installed and "anomalib.dinomaly" not in names
    assert "naive" in names
    for _, _, config, _ in methods:
        assert config.data.image_size == 64
        assert config.trainer.max_epochs == 2
    assert sweep.datasets[0].format == "synthetic" and sweep.categories == (2, 4)


def test_the_synthetic_scaling_study_covers_every_offline_method_with_its_own_budget():
    sweep = load_sweep(BENCHMARKS / "scaling_synthetic.yaml")
    methods = resolve_methods(sweep)
    names = sorted(entry.name for _, entry, _, _ in methods)
    installed = sorted(ep.name for ep in entry_points(group="adbench.methods"))  # not test toys
    assert names == [m for m in installed if "tiny" in get_method_spec(m).presets]
    assert sweep.categories == (4, 8, 16, 32, 64) and sweep.seeds == (0, 1, 2)
    assert sweep.checkpoints is False
    for label, entry, config, _ in methods:
        # no sweep budget: each method keeps its tiny preset's own (the preset that learns)
        preset = get_method_spec(entry.name).preset("tiny").get("trainer", {})
        default = get_method_spec(entry.name).config().trainer
        for key in ("max_epochs", "max_steps"):
            assert getattr(config.trainer, key) == preset.get(key, getattr(default, key)), label
