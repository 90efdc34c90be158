"""Runner overhead per cell and the cost of the quick-start sweep.

Overhead is the wall time a cell spends outside ``fit`` and the predict pass: claiming the lock,
writing its config, loading the sample index, capturing the environment, building the method,
writing its results. It is measured with a method whose fit and predict do almost nothing, in
this process and with one worker process per cell (the multi-GPU path). The quick-start part runs
``benchmarks/quickstart.yaml`` and reports each method's time and memory per cell.

    python -m benchmarks.perf.runner                      # overhead only
    python -m benchmarks.perf.runner --quickstart         # + the quick-start sweep (minutes)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.perf.common import tiny_sweep
from benchmarks.perf.results_file import REPO, RESULTS, machine, write_results

QUICKSTART = REPO / "benchmarks" / "quickstart.yaml"
NULL_METHOD = Path(__file__).resolve().with_name("null_method.py")  # registers ``perf_null``


def _sweep(root: Path, isolate: bool, ks: list[int], seeds: list[int]) -> dict:
    return tiny_sweep(
        "perf",
        ["perf_null"],
        root,
        ks,
        {"accelerator": "cpu", "devices": 1},
        seeds=seeds,
        checkpoints=True,
        plugins=[str(NULL_METHOD)],
        launcher={"name": "local", "isolate": isolate},
    )


def measure_overhead(work: Path, isolate: bool, ks: list[int], seeds: list[int]) -> dict:
    """Per-cell wall time outside fit/predict for the null method."""
    from adbench.runner import ResultStore, load_cells, plan, run_sweep

    sweep = _sweep(work / "data", isolate, ks, seeds)
    plan(sweep)  # warm: generates the data, imports the plugin, caches the index
    started = time.perf_counter()
    _, cells = plan(sweep)
    plan_s = time.perf_counter() - started
    started = time.perf_counter()
    run_sweep(sweep, work / f"run-{isolate}", progress=False, report=False)
    run_s = time.perf_counter() - started
    started = time.perf_counter()
    ResultStore(work / f"run-{isolate}").write()
    store_s = time.perf_counter() - started
    table = load_cells(work / f"run-{isolate}")
    inside = float((table["train_s"] + table["inference_s"]).sum())
    # run_sweep plans once and writes the store once: take both out of the per-cell figure
    per_cell = (run_s - plan_s - store_s - inside) / len(cells)
    return {
        "mode": "worker process per cell" if isolate else "in process",
        "cells": len(cells),
        "plan_s": plan_s,
        "store_write_s": store_s,
        "fit_predict_s_per_cell": inside / len(cells),
        "overhead_s_per_cell": per_cell,
        "setup_s_median": float(statistics.median(table["setup_s"])),
    }


def measure_quickstart(work: Path) -> dict:
    """Run the quick-start sweep from scratch (data generation included)."""
    from adbench.runner import load_cells, run_sweep

    cwd = os.getcwd()
    os.chdir(work)  # the sweep's data root is relative: generate it inside the scratch folder
    try:
        started = time.perf_counter()
        report = run_sweep(QUICKSTART, work / "quickstart", progress=False)
        total = time.perf_counter() - started
    finally:
        os.chdir(cwd)
    cells = load_cells(work / "quickstart")
    per_method = (
        cells.groupby("method")[["train_s", "inference_s", "total_s", "peak_rss_mb"]]
        .mean()
        .round(2)
        .reset_index()
        .to_dict(orient="records")
    )
    return {
        "total_s": total,
        "cells": len(report.cells),
        "failed": [c.label for c in report.failed],
        "per_method": per_method,
    }


def _markdown(result: dict) -> str:
    lines = [
        f"Runner overhead ({result['machine']})",
        "",
        "| mode | cells | fit+predict s/cell | overhead s/cell | plan s | store write s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["overhead"]:
        lines.append(
            f"| {row['mode']} | {row['cells']} | {row['fit_predict_s_per_cell']:.3f} | "
            f"{row['overhead_s_per_cell']:.3f} | {row['plan_s']:.2f} | "
            f"{row['store_write_s']:.2f} |"
        )
    quick = result.get("quickstart")
    if quick:
        lines += [
            "",
            f"Quick start: {quick['cells']} cells in {quick['total_s']:.0f} s "
            f"(failed: {', '.join(quick['failed']) or 'none'})",
            "",
            "| method | train s | inference s | total s | peak RSS MiB |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in quick["per_method"]:
            lines.append(
                f"| {row['method']} | {row['train_s']:.1f} | {row['inference_s']:.1f} | "
                f"{row['total_s']:.1f} | {row['peak_rss_mb']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Measure, print a Markdown table, write JSON (and the table next to it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "runner.json", help="JSON result file"
    )
    parser.add_argument("--cells", type=int, default=12, help="in-process cells (k x seeds)")
    parser.add_argument("--worker-cells", type=int, default=2, help="worker-process cells")
    parser.add_argument("--quickstart", action="store_true", help="also run the quick start")
    args = parser.parse_args()
    seeds = list(range(max(1, args.cells // 4)))
    result = {
        "machine": f"{machine()}, load average {os.getloadavg()[0]:.1f} at start",
        "overhead": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        result["overhead"].append(measure_overhead(work, False, [1, 2, 3, 4], seeds))
        if args.worker_cells:
            result["overhead"].append(
                measure_overhead(work, True, list(range(1, args.worker_cells + 1)), [0])
            )
        if args.quickstart:
            result["quickstart"] = measure_quickstart(work)
    text = _markdown(result)
    print(text)
    write_results(args.out.with_suffix(""), result, text)


if __name__ == "__main__":
    main()
