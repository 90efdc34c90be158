"""Run the data, metric, method and runner benchmarks and summarise them in one Markdown table.

Each benchmark script runs in its own process and writes its JSON file; this script then reads
every ``*.json`` of the results folder and writes ``docs/performance.md``: one table (area,
measurement, setting, result) under the hardware and package versions of this machine and the
date. When a GPU is visible, the method benchmark also runs on it (``methods_gpu.json``).

    python -m benchmarks.perf.run_all                  # quick settings (minutes) -> results/quick
    python -m benchmarks.perf.run_all --full           # the documented settings (hours on a CPU)
    python -m benchmarks.perf.run_all --collect-only   # only rebuild the page from results/
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.perf.results_file import REPO, RESULTS, describe

PAGE = REPO / "docs" / "performance.md"

# script -> (quick arguments, full arguments); "--out" is added by `run`
SETTINGS: dict[str, tuple[list[str], list[str]]] = {
    "data": (
        [
            "--size",
            "64",
            "--workers",
            "0",
            "--synthetic-categories",
            "1",
            "--large-count",
            "4",
            "--large-side",
            "512",
            "--epochs",
            "1",
        ],
        [],
    ),
    "metrics": (["--maps", "40", "--size", "64", "--categories", "2", "--tools", "adbench"], []),
    "methods": (
        [
            "--k",
            "1",
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--train-steps",
            "1",
            "--infer-batches",
            "1",
        ],
        [],
    ),
    "runner": (["--cells", "4", "--worker-cells", "0"], []),
}
COLUMNS = ("area", "measurement", "setting", "result")
Row = dict[str, str]


def run(results: Path, full: bool, gpu: bool) -> None:
    """Run every benchmark script; a failing one is reported and the others still run."""
    # runner.py takes the JSON file itself, the others a path without suffix
    jobs = [
        (
            name,
            [
                *SETTINGS[name][int(full)],
                "--out",
                str(results / (f"{name}.json" if name == "runner" else name)),
            ],
        )
        for name in SETTINGS
    ]
    if gpu:
        jobs.append(
            (
                "methods",
                [
                    *SETTINGS["methods"][int(full)],
                    "--device",
                    "cuda",
                    "--out",
                    str(results / "methods_gpu"),
                ],
            )
        )
    for name, arguments in jobs:
        print(f"== {name} {' '.join(arguments)}", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", f"benchmarks.perf.{name}", *arguments], cwd=REPO, check=False
        )
        if done.returncode != 0:
            print(f"!! {name} failed with exit code {done.returncode}", flush=True)


# -- one function per result file kind: JSON content -> table rows ---------------------------------
def _data_rows(data: dict[str, Any], stem: str) -> list[Row]:
    rows = []
    for row in data["rows"]:
        seconds = f", {row['seconds']:.1f} s" if row.get("seconds") is not None else ""
        rows.append(
            _row(
                "data",
                f"{row['task']}: {row['data']}",
                f"workers: {row['workers']}",
                f"{row['images_per_s']:.1f} img/s{seconds}",
            )
        )
    return rows


def _metrics_rows(data: dict[str, Any], stem: str) -> list[Row]:
    size, rows = data["info"]["maps_size"], []
    for row in data["rows"]:
        deviation = row["max_abs_deviation"]
        exact = "reference" if row["tool"] == "adbench exact" else f"max dev. {deviation:.1e}"
        rows.append(
            _row(
                "metrics",
                row["tool"],
                f"{row['maps']} maps of {size} px",
                f"{row['seconds']:.2f} s, {row['peak_extra_mb']:.0f} MB, {exact}",
            )
        )
    return rows


def _memory_bank_rows(data: dict[str, Any]) -> list[Row]:
    rows = [
        _row(
            "methods",
            row["method"],
            f"k={row['k']}, {row['train_images']} train images, {row['image_size']} px",
            f"bank {row['bank_MB']:.2f} MB, build "
            f"{row['build_s']:.2f} s, infer {row['infer_img_s']:.0f} img/s, peak RSS "
            f"{row['peak_rss_GB']:.2f} GB",
        )
        for row in data["memory_bank_vs_k"]
    ]
    rows += [
        _row(
            "methods",
            f"coreset, {row['impl']}",
            f"{row['selected']} of {row['patches']} x {row['dims']}, malloc mmap "
            f"threshold {row['malloc_mmap_threshold']}",
            f"{row['seconds']:.2f} s, peak RSS {row['peak_rss_GB']:.2f} GB",
        )
        for row in data["coreset"]
    ]
    return rows


def _methods_rows(data: dict[str, Any], stem: str) -> list[Row]:
    if "memory_bank_vs_k" in data:
        return _memory_bank_rows(data)
    default = stem.removeprefix("methods_").removesuffix("_gpu") or "?"
    rows = []
    for row in data["rows"]:
        name = row.get("method", default)
        if "error" in row:
            rows.append(_row("methods", name, f"k={row['k']}", f"error: {row['error']}"))
            continue
        setting = (
            f"{row['preset']}, k={row['k']}, {row['image_size']} px, batch "
            f"{row['batch_size']}, {row['device']} {row['precision']}"
        )
        memory = f"peak RSS {row['peak_rss_GB']:.2f} GB"
        if row.get("peak_gpu_GB") is not None:
            memory += f", peak GPU {row['peak_gpu_GB']:.2f} GB"
        speed = f"train {row['train_img_s']:.1f} img/s, infer {row['infer_img_s']:.1f} img/s"
        rows.append(_row("methods", name, setting, f"{speed}, {memory}"))
    return rows


def _runner_rows(data: dict[str, Any], stem: str) -> list[Row]:
    rows = [
        _row(
            "runner",
            f"overhead per cell, {row['mode']}",
            f"{row['cells']} cells",
            f"{row['overhead_s_per_cell']:.2f} s (fit + predict "
            f"{row['fit_predict_s_per_cell']:.2f} s)",
        )
        for row in data["overhead"]
    ]
    quick = data.get("quickstart")
    if quick:
        rows.append(
            _row(
                "runner",
                "quick-start sweep",
                f"{quick['cells']} cells",
                f"{quick['total_s']:.0f} s",
            )
        )
    return rows


READERS: dict[str, Callable[[dict[str, Any], str], list[Row]]] = {
    "data": _data_rows,
    "metrics": _metrics_rows,
    "methods": _methods_rows,
    "runner": _runner_rows,
}


def _row(area: str, measurement: str, setting: str, result: str) -> Row:
    return dict(zip(COLUMNS, (area, measurement, setting, result), strict=True))


def collect(results: Path) -> tuple[list[Row], list[str]]:
    """Table rows of every benchmark JSON in ``results`` (``<kind>.json`` or ``<kind>_*.json``,
    kinds in `READERS` order), and each file's own record of its machine."""
    rows, sources = [], []
    for kind, read in READERS.items():
        paths = sorted(results.glob(f"{kind}*.json"))
        for path in [p for p in paths if p.stem == kind or p.stem.startswith(f"{kind}_")]:
            data = json.loads(path.read_text())
            rows += read(data, path.stem)
            header = data.get("header") or data.get("machine") or data["info"]["machine"]
            stamp = data.get("provenance")
            measured = describe(stamp) if stamp else "commit not recorded (measured before stamps)"
            sources.append(f"`{path.name}`: {measured}; {header}")
    return rows, sources


def hardware() -> dict[str, str]:
    """CPU, cores, memory, GPU and package versions of this machine, and today's date (UTC)."""
    from adbench.provenance import environment

    env = environment()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    packages = env["packages"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "cpu": f"{env['cpu']}, {env['cpu_count']} cores, {memory:.0f} GiB RAM",
        "gpu": ", ".join(env["gpus"]) or "none",
        "versions": f"python {env['python']}, torch {packages['torch']}, lightning "
        f"{packages['lightning']}, timm {packages['timm']}, adbench "
        f"{packages['adbench-uad']}",
    }


def render(rows: list[Row], sources: list[str], machine: dict[str, str], command: str) -> str:
    """The page: the ``command`` that made it and where, then one Markdown table."""
    escape = str.maketrans({"|": "\\|"})
    gpu_rows = [r for r in rows if "cuda" in r["setting"]]
    gpu_note = (
        "GPU figures are the rows on `cuda`; the record of their file below names the "
        "GPU and the date."
        if gpu_rows
        else "No GPU figures yet: run this script on a "
        "machine with a GPU to add the method benchmark on `cuda`."
    )
    gpu_note += (
        " On a GPU machine, `python -m benchmarks.perf.gpu_check --budget-s 600` also "
        "runs the method contract on CUDA, a tiny sweep, every paper architecture with "
        "random weights (img/s and peak GPU memory) and a DDP cell, into "
        "`benchmarks/results/gpu_check.md`."
    )
    lines = [
        "# Performance",
        "",
        f"Generated by `{command}` on {machine['date']}.",
        "",
        "Machine that generated this page:",
        "",
        f"- CPU: {machine['cpu']}",
        f"- GPU: {machine['gpu']}",
        f"- versions: {machine['versions']}",
        "",
        gpu_note,
        "",
        "| area | measurement | setting | result |",
        "|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row[k].translate(escape) for k in COLUMNS) + " |" for row in rows]
    if not rows:
        lines.append("| - | no benchmark results found | - | - |")
    lines += ["", "Each benchmark's own record of its machine:", ""]
    lines += [f"- {source}" for source in sources]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the documented (slow) settings")
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="run nothing; summarise the JSON files already in --results",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="results folder (default: results/, or results/quick for quick runs)",
    )
    parser.add_argument("--page", type=Path, default=PAGE, help="Markdown page to write")
    args = parser.parse_args()
    quick = not (args.full or args.collect_only)
    results = (args.results or (RESULTS / "quick" if quick else RESULTS)).resolve()
    if not args.collect_only:
        import torch

        results.mkdir(parents=True, exist_ok=True)
        run(results, args.full, torch.cuda.is_available())
    flag = " --collect-only" if args.collect_only else " --full" if args.full else ""
    rows, sources = collect(results)
    command = f"python -m benchmarks.perf.run_all{flag}"
    args.page.write_text(render(rows, sources, hardware(), command))
    print(f"wrote {args.page} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
