"""ResultStore, leaderboards and scaling plots: round trips against the cells' own files."""

from __future__ import annotations

import io
import json
import statistics

import pandas as pd
import pytest
from runner_helpers import make_sweep

from adbench.errors import ConfigError, UnknownNameError
from adbench.runner import leaderboard, load_cells, load_results, plot_scaling, run_sweep
from adbench.runner.costs import cost_results
from adbench.runner.leaderboard import summarize
from adbench.runner.rundir import cells_dir
from adbench.runner.stats import degradation_slopes

METRICS = ["I-AUROC", "I-AP", "I-F1max", "P-AUROC", "P-AP", "P-F1max", "AUPRO", "mAD"]
COSTS = ["train h", "img/s", "peak GB", "params M"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_root, toy):
    """Two methods x k in {2, 4} x seeds {0, 1}."""
    out = tmp_path_factory.mktemp("store")
    sweep = make_sweep(
        tiny_root,
        seeds=[0, 1],
        methods=[
            {"name": "toy", "preset": "tiny"},
            {"name": "toy", "preset": "tiny", "set": {"channels": 2}, "label": "toy-c2"},
        ],
    )
    report = run_sweep(sweep, out, progress=False)
    return out, report


def _results_json(out):
    return [json.loads(p.read_text()) for p in sorted(cells_dir(out).glob("*/result.json"))]


def test_results_table_holds_every_recorded_value(run):
    out, _ = run
    frame = load_results(out)
    assert list(frame.columns[:10]) == [
        "cell_id",
        "method",
        "name",
        "preset",
        "dataset",
        "k",
        "seed",
        "category",
        "metric",
        "value",
    ]
    expected = {
        (r["cell_id"], category, metric): value
        for r in _results_json(out)
        for category, metrics in r["metrics"].items()
        for metric, value in metrics.items()
    }
    got = {(row.cell_id, row.category, row.metric): row.value for row in frame.itertuples()}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, nan_ok=True)
    assert len(frame) == 4 * (2 + 1) * 8 + 4 * (4 + 1) * 8  # 4 cells each at k = 2 and 4


def test_exported_files_round_trip(run):
    out, _ = run
    frame = load_results(out)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), frame)
    from_csv = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(
        from_csv[["cell_id", "metric", "value"]].astype({"cell_id": str}),
        frame[["cell_id", "metric", "value"]].astype({"cell_id": str}),
    )
    cells = load_cells(out)
    assert len(cells) == 8 and set(cells["status"]) == {"finished"}
    pd.testing.assert_frame_equal(pd.read_parquet(out / "cells.parquet"), cells)
    by_id = cells.set_index("cell_id")
    for result in _results_json(out):
        assert by_id.at[result["cell_id"], "world_size"] == result["trainer"]["world_size"] == 1
        assert by_id.at[result["cell_id"], "device_type"] == "cpu"


def test_leaderboard_means_spreads_and_bold(run):
    out, _ = run
    text = leaderboard(out, fmt="md", per_category=["I-AUROC"])
    results = _results_json(out)
    rows = {}
    for label in ("toy", "toy-c2"):
        cells = [r for r in results if r["label"] == label and r["k"] == 4]
        assert len(cells) == 2
        rows[label] = {m: [100 * r["metrics"]["mean"][m] for r in cells] for m in METRICS}
    assert "synthetic: k = 4 categories; values in %, mean ± std over 2 seeds" in text
    assert "| method | " + " | ".join(METRICS + COSTS) + " |" in text
    assert "peak GB of CPU memory" in text
    assert "train h" not in leaderboard(out, fmt="md", cost=False)
    assert "train h" not in leaderboard(out, fmt="latex")  # costs are opt-in outside Markdown
    lines = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| toy")
    }
    for label, values in rows.items():
        cells = [c.strip() for c in lines[label].split("|")[2:-1]]
        cells, costs = cells[: len(METRICS)], cells[len(METRICS) :]
        raw = [r for r in results if r["label"] == label and r["k"] == 4]
        expected = [
            statistics.mean(r["timings"]["train_s"] for r in raw) / 3600,
            statistics.mean(r["timings"]["images_per_s"] for r in raw),
            statistics.mean(r["memory"]["peak_rss_mb"] for r in raw) / 1024,
            statistics.mean(r["params"]["total"] for r in raw) / 1e6,
        ]
        assert [float(c) for c in costs] == pytest.approx(expected, rel=5e-3)  # 3 figures
        for metric, cell in zip(METRICS, cells, strict=True):
            mean, std = statistics.mean(values[metric]), statistics.stdev(values[metric])
            plain = f"{mean:.1f} ± {std:.1f}"
            other = rows["toy-c2" if label == "toy" else "toy"][metric]
            best = round(mean, 1) >= round(statistics.mean(other), 1)
            assert cell == (f"**{plain}**" if best else plain)
    assert "**synthetic: I-AUROC per category (%)**" in text
    assert "P-AUROC per category" not in text


def _frame(values):
    """A results table from {(method, seed, category): {metric: value}} at k = 3."""
    rows = [
        {
            "cell_id": f"{m}{s}",
            "method": m,
            "name": m,
            "preset": "tiny",
            "dataset": "d",
            "k": 3,
            "seed": s,
            "category": c,
            "metric": metric,
            "value": v,
        }
        for (m, s, c), metrics in values.items()
        for metric, v in metrics.items()
    ]
    return pd.DataFrame(rows)


def test_leaderboard_formats_on_a_known_table():
    frame = _frame(
        {
            ("a", 0, "mean"): {"I-AUROC": 0.90, "P-AUROC": 0.5},
            ("a", 1, "mean"): {"I-AUROC": 0.94, "P-AUROC": 0.5},
            ("b", 0, "mean"): {"I-AUROC": 0.80, "P-AUROC": 0.7},
            ("b", 1, "mean"): {"I-AUROC": 0.80, "P-AUROC": 0.7},
            ("a", 0, "x_cat"): {"I-AUROC": 0.9},
            ("a", 1, "x_cat"): {"I-AUROC": 0.9},
            ("b", 0, "x_cat"): {"I-AUROC": 0.9},
            ("b", 1, "x_cat"): {"I-AUROC": 0.9},
        }
    )
    text = leaderboard(frame, per_category=["I-AUROC"])
    assert "| a | **92.0 ± 2.8** | 50.0 ± 0.0 |" in text
    assert "| b | 80.0 ± 0.0 | **70.0 ± 0.0** |" in text
    assert "| x_cat | **90.0** | **90.0** |" in text  # a tie: both bold
    latex = leaderboard(frame, fmt="latex", per_category=[])
    assert r"a & \textbf{92.0 $\pm$ 2.8} & 50.0 $\pm$ 0.0 \\" in latex
    assert r"\begin{tabular}{lrr}" in latex
    csv = pd.read_csv(io.StringIO(leaderboard(frame, fmt="csv")))
    expected = frame.groupby(["method", "category", "metric"])["value"].agg(["mean", "std"])
    for row in csv.itertuples():
        assert row.mean == pytest.approx(
            expected.loc[(row.method, row.category, row.metric), "mean"]
        )
        assert row.std == pytest.approx(expected.loc[(row.method, row.category, row.metric), "std"])
        assert row.n_seeds == 2


def test_leaderboard_k_choice_and_errors():
    small = _frame({("a", 0, "mean"): {"I-AUROC": 0.5}})
    big = _frame({("a", 0, "mean"): {"I-AUROC": 0.9}}).assign(k=6)
    both = pd.concat([small, big])
    assert set(summarize(both)["k"]) == {6}
    assert summarize(both, k=3)["mean"].tolist() == [0.5]
    assert "1 seed" in leaderboard(both, k=3, per_category=[])
    with pytest.raises(ConfigError, match="no results for k=4; available: 3, 6"):
        summarize(both, k=4)
    with pytest.raises(UnknownNameError, match="did you mean 'latex'"):
        leaderboard(both, fmt="latx")
    with pytest.raises(UnknownNameError, match="did you mean 'I-AUROC'"):
        leaderboard(both, per_category=["I-AUROX"])


def _cells(rows):
    """A cells table from {(method, seed): (train_s, images/s, peak GPU MiB, params, world size,
    device type)} at k = 3, as `load_cells` returns it."""
    return pd.DataFrame(
        [
            {
                "cell_id": f"{m}{s}",
                "method": m,
                "name": m,
                "preset": "tiny",
                "dataset": "d",
                "k": 3,
                "seed": s,
                "status": "finished",
                "train_s": train,
                "images_per_s": speed,
                "peak_rss_mb": 3000.0,
                "peak_gpu_mb": gpu,
                "params": params,
                "world_size": size,
                "device_type": device,
            }
            for (m, s), (train, speed, gpu, params, size, device) in rows.items()
        ]
    )


KNOWN = {
    ("a", 0, "mean"): {"I-AUROC": 0.90, "mAD": 0.6, "S-AUROC": 0.95},
    ("a", 1, "mean"): {"I-AUROC": 0.94, "mAD": 0.6, "S-AUROC": 0.95},
    ("b", 0, "mean"): {"I-AUROC": 0.80, "mAD": 0.7, "S-AUROC": 0.85},
    ("b", 1, "mean"): {"I-AUROC": 0.80, "mAD": 0.7, "S-AUROC": 0.85},
}
KNOWN_CELLS = {
    ("a", 0): (3600.0, 100.0, 2048.0, 12_500_000, 1, "cuda"),
    ("a", 1): (5400.0, 110.0, 4096.0, 12_500_000, 1, "cuda"),
    ("b", 0): (1800.0, 50.0, 1024.0, 3_000_000, 2, "cuda"),
    ("b", 1): (1800.0, 50.0, 1024.0, 3_000_000, 2, "cuda"),
}


def test_cost_columns_on_a_known_table():
    frame, cells = _frame(KNOWN), _cells(KNOWN_CELLS)
    text = leaderboard(frame, cells=cells, per_category=[])
    assert "| method | I-AUROC | mAD | S-AUROC | train h | img/s | peak GB | params M |" in text
    # train h = mean(train_s) / 3600, peak GB = mean(peak_gpu_mb) / 1024, params M = params / 1e6
    assert "| b | 80.0 ± 0.0 | **70.0 ± 0.0** | 85.0 ± 0.0 | 0.500 | 50.0 | 1.00 | 3.00 |" in text
    assert "| a | **92.0 ± 2.8** | 60.0 ± 0.0 | **95.0 ± 0.0** | 1.25 | 105 | 3.00 | 12.5 |" in text
    assert "costs: mean over seeds, peak GB of GPU memory" in text
    assert "train h" not in leaderboard(frame, cells=cells, cost=False)
    latex = leaderboard(frame, cells=cells, fmt="latex", cost=True, per_category=[])
    assert (
        r"a & \textbf{92.0 $\pm$ 2.8} & 60.0 $\pm$ 0.0 & \textbf{95.0 $\pm$ 0.0} & "
        r"1.25 & 105 & 3.00 & 12.5 \\"
    ) in latex
    csv = pd.read_csv(io.StringIO(leaderboard(frame, cells=cells, fmt="csv", cost=True)))
    hours = csv[(csv["method"] == "a") & (csv["metric"] == "train h")]
    assert hours["mean"].item() == pytest.approx(statistics.mean([1.0, 1.5]))
    assert hours["std"].item() == pytest.approx(statistics.stdev([1.0, 1.5]))
    assert "train h" not in set(pd.read_csv(io.StringIO(leaderboard(frame, fmt="csv")))["metric"])


@pytest.mark.parametrize("metric", ["I-AUROC", "S-AUROC"])
def test_per_gpu_hour_ranking_on_a_known_table(metric):
    frame, cells = _frame(KNOWN), _cells(KNOWN_CELLS)
    expected = {}
    for method in ("a", "b"):
        value = 100 * statistics.mean(v[metric] for (m, _, _), v in KNOWN.items() if m == method)
        hours = statistics.mean(
            train * size / 3600
            for (m, _), (train, _, _, _, size, _) in KNOWN_CELLS.items()
            if m == method
        )
        expected[method] = value / hours
    csv = pd.read_csv(io.StringIO(leaderboard(frame, cells=cells, fmt="csv", per_gpu_hour=metric)))
    assert list(csv["method"]) == sorted(expected, key=expected.get, reverse=True)
    assert csv.set_index("method")["per_device_hour"].to_dict() == pytest.approx(expected)
    assert set(csv["unit"]) == {"GPU"}
    text = leaderboard(frame, cells=cells, per_gpu_hour=metric)
    assert f"| method | {metric} (%) | train GPU-h | {metric} per GPU-h |" in text
    best = max(expected, key=expected.get)
    assert f"| **{expected[best]:.1f}** |" in text  # 80.0 and 85.0: three figures, bold
    cpu = cells.assign(device_type=["cuda", "cuda", "cpu", "cpu"])
    assert "train device-h" in leaderboard(frame, cells=cpu, per_gpu_hour=metric)


def test_costs_and_per_gpu_hour_of_a_run_match_its_result_files(run):
    out, _ = run
    results = _results_json(out)
    costs = cost_results(load_cells(out)).set_index(["cell_id", "metric"])["value"]
    for r in results:
        hours = r["timings"]["train_s"] / 3600
        expected = {
            "train h": hours,
            "img/s": r["timings"]["images_per_s"],
            "peak GB": r["memory"]["peak_rss_mb"] / 1024,  # a CPU run
            "params M": r["params"]["total"] / 1e6,
            "device h": hours * r["trainer"]["world_size"],
        }
        for name, value in expected.items():
            assert costs[(r["cell_id"], name)] == pytest.approx(value)
    ranking = pd.read_csv(io.StringIO(leaderboard(out, fmt="csv", per_gpu_hour="AUPRO")))
    for row in ranking.itertuples():
        cells = [r for r in results if r["label"] == row.method and r["k"] == 4]
        value = statistics.mean(100 * r["metrics"]["mean"]["AUPRO"] for r in cells)
        hours = statistics.mean(r["timings"]["train_s"] / 3600 for r in cells)
        assert row.per_device_hour == pytest.approx(value / hours)
        assert (row.unit, row.n_seeds, row.k) == ("device", 2, 4)


def test_cost_options_need_the_cells_and_known_names():
    frame = _frame(KNOWN)
    with pytest.raises(ConfigError, match="need the cells table"):
        leaderboard(frame, cost=True)
    with pytest.raises(ConfigError, match="need the cells table"):
        leaderboard(frame, per_gpu_hour="I-AUROC")
    with pytest.raises(UnknownNameError, match="unknown metric 'S-AUROX'; did you mean 'S-AUROC'"):
        leaderboard(frame, cells=_cells(KNOWN_CELLS), per_gpu_hour="S-AUROX")


def test_scaling_plots_are_written(run, tmp_path):
    out, report = run
    written = {p.name for p in report.files}
    assert {
        "leaderboard.md",
        "scaling_synthetic_I-AUROC.png",
        "scaling_synthetic_I-AUROC.svg",
    } <= written
    paths = plot_scaling(out, metric="P-AUROC", save_dir=tmp_path)
    assert [p.name for p in paths] == [
        "scaling_synthetic_P-AUROC.png",
        "scaling_synthetic_P-AUROC.svg",
    ]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = paths[1].read_text()
    assert "<svg" in svg and "P-AUROC" in svg and "toy-c2" in svg
    slopes = degradation_slopes(load_results(out), "P-AUROC")  # in the legend, in points
    assert slopes["slope"].notna().any()
    for _, row in slopes.dropna(subset=["slope"]).iterrows():
        assert f"{row['method']} ({100 * row['slope']:+.1f}" in svg
    with pytest.raises(UnknownNameError, match="did you mean 'P-AUROC'"):
        plot_scaling(out, metric="P-AUROX", save_dir=tmp_path)
    paths = plot_scaling(out, metric="img/s", save_dir=tmp_path, formats=["svg"])
    assert [p.name for p in paths] == ["scaling_synthetic_img_s.svg"]
    assert "img/s" in paths[0].read_text()
    with pytest.raises(
        UnknownNameError, match="unknown metric or cost column 'img/sec'; did you mean 'img/s'"
    ):
        plot_scaling(out, metric="img/sec", save_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="unknown dataset 'nope'"):
        plot_scaling(out, dataset="nope", save_dir=tmp_path)
