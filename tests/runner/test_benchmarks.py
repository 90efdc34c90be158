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


def test_every_benchmark_file_is_present():
    assert {p.stem for p in FILES} >= {"quickstart", "mvtec", "visa", "mpdd", "realiad",
                                       "variety160", "scaling"}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_benchmark_file_resolves(path):
    sweep = load_sweep(path)
    methods = resolve_methods(sweep)
    assert methods
    if path.stem != "quickstart":
        assert {entry.preset for _, entry, _, _ in methods} == {"paper"}
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
