"""Speed, memory and accuracy of the metric layer against anomalib (and adeval, when installed).

The same synthetic anomaly maps (smooth noise with raised, blurred defect regions; several
categories with their own score scales) go through:

* adbench streaming: ``adbench.metrics.evaluate(..., mode="streaming")`` (all seven metrics);
* adbench exact: the same with ``mode="exact"``, the reference for every deviation below;
* anomalib: ``anomalib.metrics.AUROC`` (pixel) and ``AUPRO``, one pair per category;
* adeval: ``adeval.auroc_aupr_aupro`` per category (pixel AUROC and AUPRO; its AUPR is a trapezoid
  area, not the step-wise AP, and is left out).

Each tool runs in a forked child process, so its peak extra memory (the rise of the peak resident
set size over the child's start) is its own. Prints a table and writes JSON and Markdown.

    python -m benchmarks.perf.metrics --maps 200 2000 --out benchmarks/results/metrics
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from adbench.metrics import evaluate
from benchmarks.perf.results_file import RESULTS, write_results

PIXEL_METRICS = ("P-AUROC", "P-AP", "P-F1max", "AUPRO")


def make_maps(count: int, size: int, categories: int, seed: int = 0) -> dict[str, object]:
    """``count`` maps (size x size) over ``categories`` categories, half of them anomalous."""
    generator = torch.Generator().manual_seed(seed)
    names = [f"category_{i % categories:02d}" for i in range(count)]
    labels = (torch.arange(count) // categories) % 2
    coarse = torch.randn(count, 1, size // 16, size // 16, generator=generator)
    maps = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    maps += 0.1 * torch.randn(count, size, size, generator=generator)
    masks = torch.zeros(count, size, size, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in labels.nonzero().flatten().tolist():
        for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
            cy, cx = torch.randint(0, size, (2,), generator=generator).tolist()
            radius = int(torch.randint(size // 32, size // 8, (1,), generator=generator))
            masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = 1
    lift = F.avg_pool2d(masks[:, None].float(), 9, stride=1, padding=4)[:, 0]
    strength = 0.5 + 2.0 * torch.rand(count, 1, 1, generator=generator)
    scale = 1.0 + torch.tensor([int(n[-2:]) for n in names]).float()[:, None, None]
    maps = ((maps + strength * lift) * scale).float()
    return {
        "scores": maps.flatten(1).amax(1).numpy(),
        "labels": labels.numpy(),
        "maps": maps.numpy(),
        "masks": masks.numpy(),
        "categories": names,
    }


def run_adbench(data: dict, mode: str) -> dict[str, dict[str, float]]:
    frame = evaluate(
        data["scores"], data["labels"], data["maps"], data["masks"], data["categories"], mode
    )
    return frame.drop(index="mean")[list(PIXEL_METRICS)].to_dict("index")


def by_category(data: dict) -> Iterator[tuple[str, np.ndarray]]:
    """Each category's name and the positions of its maps, in order of first appearance."""
    names = np.array(data["categories"])
    for name in dict.fromkeys(data["categories"]):
        yield name, np.flatnonzero(names == name)


def run_anomalib(data: dict, batch_size: int = 32) -> dict[str, dict[str, float]]:
    from anomalib.metrics import AUPRO, AUROC

    results = {}
    for name, chosen in by_category(data):
        auroc = AUROC(fields=["anomaly_map", "gt_mask"])
        aupro = AUPRO(fields=["anomaly_map", "gt_mask"])
        for start in range(0, chosen.size, batch_size):
            part = chosen[start : start + batch_size]
            batch = SimpleNamespace(
                anomaly_map=torch.from_numpy(data["maps"][part]),
                gt_mask=torch.from_numpy(data["masks"][part]).int(),
            )
            auroc.update(batch)
            aupro.update(batch)
        results[name] = {"P-AUROC": float(auroc.compute()), "AUPRO": float(aupro.compute())}
    return results


def run_adeval(data: dict) -> dict[str, dict[str, float]]:
    if not hasattr(np, "trapz"):  # adeval 1.1 calls np.trapz, removed in NumPy 2.4
        np.trapz = np.trapezoid
    import adeval

    results = {}
    for name, chosen in by_category(data):
        maps = [data["maps"][i] for i in chosen]
        masks = [data["masks"][i] for i in chosen]
        auroc, _, aupro = adeval.auroc_aupr_aupro(maps, masks)
        results[name] = {"P-AUROC": auroc, "AUPRO": aupro}
    return results


def _memory_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _child(task: Callable[[], dict], pipe: mp.connection.Connection) -> None:
    torch.set_num_threads(1)  # forked children must not reuse the parent's thread pool
    start = _memory_mb("VmRSS")
    began = time.perf_counter()
    result = task()
    seconds = time.perf_counter() - began
    pipe.send((seconds, _memory_mb("VmHWM") - start, result))


def measure(task: Callable[[], dict]) -> tuple[float, float, dict]:
    """Run ``task`` in a forked child: (seconds, peak extra MB, its result)."""
    context = mp.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(task, send))
    process.start()
    outcome = receive.recv()
    process.join()
    return outcome


def deviation(result: dict, exact: dict) -> float:
    """Largest absolute difference to the exact numbers over the metrics ``result`` has."""
    return max(
        abs(value - exact[name][metric])
        for name, values in result.items()
        for metric, value in values.items()
    )


def _runs(data: dict) -> dict[str, Callable[[], dict]]:
    return {
        "adbench streaming": lambda: run_adbench(data, "streaming"),
        "adbench exact": lambda: run_adbench(data, "exact"),
        "anomalib AUROC + AUPRO": lambda: run_anomalib(data),
        "adeval": lambda: run_adeval(data),
    }


def benchmark(counts: list[int], size: int, categories: int, tools: list[str]) -> list[dict]:
    """Time the chosen tools on ``counts`` maps each; adbench exact runs first as the reference."""
    chosen = [t for t in _runs({}) if any(t.startswith(name) for name in tools)]
    warm_up = _runs(make_maps(2 * categories, 32, categories))
    for tool in chosen:  # imports and one-time set-up stay out of the measurements
        warm_up[tool]()
    rows = []
    for count in counts:
        runs = _runs(make_maps(count, size, categories))
        exact = None
        for tool in ["adbench exact", *[t for t in chosen if t != "adbench exact"]]:
            seconds, memory, result = measure(runs[tool])
            exact = result if tool == "adbench exact" else exact
            row = {
                "maps": count,
                "tool": tool,
                "seconds": round(seconds, 2),
                "peak_extra_mb": round(memory, 1),
                "max_abs_deviation": None if exact is None else deviation(result, exact),
            }
            rows.append(row)
            print(
                f"{count:6d}  {tool:24s} {seconds:9.2f} s {memory:9.1f} MB  "
                f"deviation {row['max_abs_deviation']}",
                flush=True,
            )
    return rows


def to_markdown(rows: list[dict], info: dict) -> str:
    lines = [
        f"{info['maps_size']} x {info['maps_size']} maps, {info['categories']} categories; "
        f"{info['machine']}; torch {info['torch']}, {info['threads']} thread(s) per tool.",
        "",
        "| maps | tool | time (s) | peak extra memory (MB) | max abs. deviation from exact |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        dev = row["max_abs_deviation"]
        dev = "reference" if row["tool"] == "adbench exact" else f"{dev:.1e}"
        lines.append(
            f"| {row['maps']} | {row['tool']} | {row['seconds']:.2f} | "
            f"{row['peak_extra_mb']:.0f} | {dev} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--categories", type=int, default=5)
    parser.add_argument(
        "--tools", nargs="+", default=["adbench", "anomalib", "adeval"],
        help="which of adbench, anomalib, adeval to run",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "metrics")
    args = parser.parse_args()
    if "adeval" in args.tools:
        try:
            import adeval  # noqa: F401
        except ImportError:
            print("adeval is not installed: skipped")
            args.tools.remove("adeval")
    rows = benchmark(args.maps, args.size, args.categories, args.tools)
    info = {
        "maps_size": args.size,
        "categories": args.categories,
        "machine": f"{platform.machine()} CPU, {mp.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": 1,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, {"info": info, "rows": rows}, to_markdown(rows, info))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
