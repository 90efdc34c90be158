"""The naive floor and the CPU-variant labels: a preset's ``variant`` declaration
(`adbench.registry.MethodSpec.variant`), the labels of `adbench.runner.variants` and the floor
marks of `adbench.runner.floor` in the leaderboard's Markdown, LaTeX and CSV and in the figures,
against means computed here by hand."""

from __future__ import annotations

import io
import logging
import statistics
from pathlib import Path

import pandas as pd
import pytest
from toy_method import ToyAutoencoder, ToyConfig

import adbench.runner.plots as plots
from adbench import registry
from adbench.config import load_yaml
from adbench.errors import ConfigError
from adbench.registry import CPU_VARIANT, PAPER_DESIGN, VARIANTS, MethodSpec
from adbench.runner import leaderboard

ROOT = Path(__file__).resolve().parents[2]
FLOOR_NOTE = "† = mean {} below the naive detector's at the same k"


class CpuToy(ToyAutoencoder):
    """The toy method under its own class, so that registering it renames no shared class."""


def cpu_toy_spec(presets: dict | None = None) -> MethodSpec:
    """A method whose ``tiny`` preset is a CPU variant (``tiny-long`` extends it)."""
    return MethodSpec(
        "cpu_toy",
        CpuToy,
        ToyConfig,
        presets
        or {
            "tiny": {"width": 4, "variant": CPU_VARIANT},
            "tiny-long": {"extends": "tiny", "trainer": {"max_epochs": 3}},
            "paper": {},
        },
    )


@pytest.fixture
def cpu_toy(monkeypatch):
    """`cpu_toy_spec` registered in this process for one test."""
    monkeypatch.setattr(registry, "_REGISTERED", {})
    return registry.register_method(cpu_toy_spec())


def tidy(values: dict[tuple[str, str, str, int, int], dict[str, float]]) -> pd.DataFrame:
    """A `load_results` table from {(label, name, preset, k, seed): {metric: mean value}}.

    Each cell also gets one category ``x`` with the same values (the per-category rows).
    """
    rows = [
        {
            "cell_id": f"{label}-{k}-{seed}",
            "method": label,
            "name": name,
            "preset": preset,
            "dataset": "d",
            "k": k,
            "seed": seed,
            "category": category,
            "metric": metric,
            "value": value,
        }
        for (label, name, preset, k, seed), metrics in values.items()
        for category in ("mean", "x")
        for metric, value in metrics.items()
    ]
    return pd.DataFrame(rows)


def cells_of(results: pd.DataFrame) -> pd.DataFrame:
    """A `load_cells` table of the cells of ``results`` (CPU runs, every cost 1)."""
    identity = ["cell_id", "method", "name", "preset", "dataset", "k", "seed"]
    cells = results[identity].drop_duplicates().reset_index(drop=True)
    return cells.assign(
        status="finished",
        train_s=1.0,
        images_per_s=1.0,
        peak_rss_mb=1.0,
        peak_gpu_mb=float("nan"),
        params=1,
        world_size=1,
        device_type="cpu",
    )


# "bad" is below naive on mAD (the ranked metric) but above it on I-AUROC; "good" is above both
BOARD = {
    ("naive", "naive", "tiny", 4, 0): {"I-AUROC": 0.60, "mAD": 0.50},
    ("naive", "naive", "tiny", 4, 1): {"I-AUROC": 0.60, "mAD": 0.50},
    ("good", "good", "tiny", 4, 0): {"I-AUROC": 0.90, "mAD": 0.70},
    ("good", "good", "tiny", 4, 1): {"I-AUROC": 0.80, "mAD": 0.60},
    ("bad", "bad", "tiny", 4, 0): {"I-AUROC": 0.70, "mAD": 0.45},
    ("bad", "bad", "tiny", 4, 1): {"I-AUROC": 0.66, "mAD": 0.52},
}


def seed_mean(values: dict, label: str, metric: str, k: int = 4) -> float:
    """The mean over seeds of ``label``'s ``metric`` at ``k``, from the dict itself."""
    return statistics.mean(
        v[metric] for (m, _, _, kk, _), v in values.items() if (m, kk) == (label, k)
    )


def test_a_preset_declares_its_variant_outside_its_overlay(tmp_path):
    spec = cpu_toy_spec()
    assert spec.variant("tiny") == CPU_VARIANT
    assert spec.variant("tiny-long") == CPU_VARIANT  # inherited through extends
    assert spec.variant("paper") == PAPER_DESIGN  # no declaration: the paper's design
    assert spec.preset("tiny") == {"width": 4}
    assert spec.preset("tiny-long") == {"width": 4, "trainer": {"max_epochs": 3}}
    typo = tmp_path / "cpu.yaml"
    typo.write_text("variant: cpu-varaint\nwidth: 4\n")
    broken = cpu_toy_spec({"cpu": typo})
    with pytest.raises(ConfigError, match=r"cpu\.yaml: .*variant 'cpu-varaint'.*'cpu-variant'"):
        broken.variant("cpu")
    with pytest.raises(ConfigError, match="variant 'cpu-varaint'"):
        registry.register_method(broken)  # a plugin's presets are checked when it registers


def test_the_cpu_variants_shipped_are_the_redesigned_tiny_presets():
    files = [
        *ROOT.glob("methods/*/presets/*.yaml"),
        *ROOT.glob("adbench/baselines/presets/*/*.yaml"),
    ]
    declared = {
        (
            path.parent.parent.name if path.parent.name == "presets" else path.parent.name,
            path.stem,
        ): load_yaml(path).get("variant", PAPER_DESIGN)
        for path in files
    }
    assert len(declared) == len(files) > 10
    assert set(declared.values()) <= set(VARIANTS)
    cpu = {key for key, value in declared.items() if value == CPU_VARIANT}
    assert cpu == {("glad", "tiny"), ("reverse_distillation", "tiny")}


def test_rows_below_the_naive_mean_of_the_ranked_metric_are_marked(caplog):
    frame = tidy(BOARD)
    assert seed_mean(BOARD, "bad", "mAD") < seed_mean(BOARD, "naive", "mAD")
    assert seed_mean(BOARD, "bad", "I-AUROC") > seed_mean(BOARD, "naive", "I-AUROC")
    with caplog.at_level(logging.WARNING, logger="adbench.runner.variants"):
        text = leaderboard(frame, per_category=["I-AUROC"])
    assert "no variant label for method 'good', preset 'tiny'" in caplog.text  # not registered
    lines = text.splitlines()
    assert FLOOR_NOTE.format("mAD") in lines[0]
    table = [line.split(" | ")[0] for line in lines if line.startswith("| ")]
    assert table[1:4] == ["| good", "| naive", "| bad †"]  # best mAD first; only "bad" marked
    assert "| x | " in text and "bad †" not in text.split("per category")[1]  # breakdown unmarked
    latex = leaderboard(frame, fmt="latex", per_category=[])
    assert r"\dagger$ = mean mAD below" in latex.splitlines()[0]
    assert [line.split(" & ")[0] for line in latex.splitlines() if " & " in line][1:] == [
        "good",
        "naive",
        r"bad $^\dagger$",
    ]
    csv = pd.read_csv(io.StringIO(leaderboard(frame, fmt="csv")))
    means = csv[csv["category"] == "mean"].set_index(["method", "metric"])["below_naive"]
    for (label, metric), below in means.items():
        assert below == (seed_mean(BOARD, label, metric) < seed_mean(BOARD, "naive", metric))
    assert csv.loc[csv["category"] == "x", "below_naive"].isna().all()


def test_without_a_naive_row_the_floor_is_not_checked():
    frame = tidy({key: value for key, value in BOARD.items() if key[0] != "naive"})
    text = leaderboard(frame, per_category=[])
    assert "; no naive row at k = 4: floor not checked**" in text.splitlines()[0]
    assert "†" not in text
    csv = pd.read_csv(io.StringIO(leaderboard(frame, fmt="csv")))
    assert csv["below_naive"].isna().all()


def scaling() -> dict:
    """k = 2, 4, 8, two seeds: "bad" falls below naive from k = 4, naive is missing at k = 2."""
    values = {}
    for k, bad in ((2, 0.80), (4, 0.55), (8, 0.50)):
        for seed in (0, 1):
            values[("good", "good", "tiny", k, seed)] = {"I-AUROC": 0.90 - 0.01 * seed}
            values[("bad", "bad", "tiny", k, seed)] = {"I-AUROC": bad + 0.01 * seed}
            if k > 2:
                values[("naive", "naive", "tiny", k, seed)] = {"I-AUROC": 0.60}
    return values


def test_the_slope_table_lists_the_k_below_naive():
    text = leaderboard(tidy(scaling()), per_category=[], stats=True)
    title = next(line for line in text.splitlines() if "degradation slope" in line)
    assert "below naive at k lists the k with mean I-AUROC below the naive detector's" in title
    assert "no naive row at k = 2: floor not checked" in title
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if " | 2-8 | " in line}
    assert rows["bad"].endswith("| 4, 8 |") and rows["good"].endswith("| - |")


def test_variant_labels_reach_the_tables_and_the_csv(cpu_toy):
    values = {
        ("cpu_toy", "cpu_toy", "tiny", 4, 0): {"I-AUROC": 0.8},
        ("cpu_toy:paper", "cpu_toy", "paper", 4, 0): {"I-AUROC": 0.9},
        ("cpu_toy:tiny-long", "cpu_toy", "tiny-long", 4, 0): {"I-AUROC": 0.7},
    }
    frame = tidy(values)
    labels = ["cpu_toy:paper", "cpu_toy (tiny: CPU variant)", "cpu_toy:tiny-long (CPU variant)"]
    text = leaderboard(frame, per_category=[])
    assert [line.split(" | ")[0][2:] for line in text.splitlines()[4:]] == labels
    latex = leaderboard(frame, fmt="latex", per_category=[])
    assert r"cpu\_toy (tiny: CPU variant) & 80.0 \\" in latex
    csv = pd.read_csv(io.StringIO(leaderboard(frame, cells=cells_of(frame), fmt="csv", cost=True)))
    assert set(csv["method"]) == set(labels)  # the cost rows too
    assert set(frame["method"]) == {"cpu_toy", "cpu_toy:paper", "cpu_toy:tiny-long"}  # untouched


def test_the_scaling_figure_labels_variants_and_draws_points_below_naive_hollow(
    cpu_toy, monkeypatch, tmp_path
):
    values = scaling()
    values.update(
        {
            ("cpu_toy", "cpu_toy", "tiny", k, seed): {"I-AUROC": 0.7}
            for k in (2, 4, 8)
            for seed in (0, 1)
        }
    )
    frame = tidy(values)
    monkeypatch.setattr(plots, "load_results", lambda out: frame)
    monkeypatch.setattr(plots, "load_cells", lambda out: cells_of(frame))
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda f, *a: figures.append(f) or save(f, *a))
    plots.plot_scaling(tmp_path, save_dir=tmp_path, formats=["svg"])
    svg = (tmp_path / "scaling_d_I-AUROC.svg").read_text()
    assert "hollow marker = mean I-AUROC below the naive detector's at the same k; " in svg
    assert "no naive row at k = 2: floor not checked" in svg
    legend = [text.get_text() for text in figures[0].legends[0].get_texts()]
    assert any(label.startswith("cpu_toy (tiny: CPU variant) (") for label in legend)
    lines = figures[0].axes[0].get_lines()
    filled = {line.get_color(): line.get_label() for line in lines if line.get_label() in legend}
    hollow = {
        filled[line.get_color()].split(" (")[0]: list(line.get_xdata())
        for line in lines
        if line.get_markerfacecolor() == "white"
    }
    assert hollow == {"bad": [4, 8]}  # cpu_toy (0.70) and good stay above naive's 0.60
    plots.plot_ranks(tmp_path, save_dir=tmp_path, formats=["svg"])
    assert "cpu_toy (tiny: CPU variant) (" in (tmp_path / "ranks_I-AUROC.svg").read_text()
