"""Cost of the anomalib memory-bank baselines against the number of categories k.

PatchCore's bank and PaDiM's statistics are built from every training image of every category,
so their build time, bank size and peak memory grow with k (``--per-category`` images each);
RD and STFPM do not depend on k (``benchmarks/perf/methods.py`` times them with every other
method). A second table compares PatchCore's coreset selection (``greedy_coreset``) with
anomalib's ``KCenterGreedy`` on the same features, with and without
``MALLOC_MMAP_THRESHOLD_=131072``, which decides whether glibc returns the per-step temporaries
of ``KCenterGreedy`` to the system. Each row runs in a fresh process (its own peak memory).

    python benchmarks/perf/methods_anomalib.py --k 1 15 60 160
    python benchmarks/perf/methods_anomalib.py --tables coreset --patches 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from results_file import write_results

RESULTS = Path(__file__).resolve().parents[1] / "results"
MEMORY_METHODS = ("anomalib.patchcore", "anomalib.padim")


def build(name: str, k: int, preset: str = "tiny", per_category: int = 20,
          batch_size: int = 32) -> Any:
    """``name`` of ``preset`` fitted on ``k * per_category`` random images (its bank for k)."""
    from adbench.registry import create

    method = create(name, preset=preset)
    collect(method, k, per_category, batch_size)
    method.build_if_pending()
    return method


def collect(method: Any, k: int, per_category: int, batch_size: int) -> None:
    """Training steps over ``k * per_category`` random images (one epoch, no bank built yet)."""
    import torch

    from adbench.batch import Batch

    size = method.config.data.image_size
    generator = torch.Generator().manual_seed(0)
    method.train()
    method.on_train_epoch_start()
    total = k * per_category
    for start in range(0, total, batch_size):
        n = min(batch_size, total - start)
        images = torch.rand(n, 3, size, size, generator=generator)
        method.training_step(Batch(images, torch.zeros(n, 1, size, size),
                                   torch.zeros(n, dtype=torch.int64),
                                   torch.arange(start, start + n) % k,
                                   torch.arange(start, start + n)), 0)


def measure_method(name: str, k: int, per_category: int, batch_size: int,
                   infer_batches: int) -> dict[str, Any]:
    """Collection, bank build and inference cost of one memory-bank method at one k."""
    import resource

    import torch

    from adbench.registry import create

    torch.manual_seed(0)
    method = create(name, preset="tiny")
    start = time.perf_counter()
    collect(method, k, per_category, batch_size)
    collect_s = time.perf_counter() - start
    start = time.perf_counter()
    method.build_if_pending()
    build_s = time.perf_counter() - start
    method.eval()
    state = {key: value for key, value in method.state_dict().items()
             if "feature_extractor" not in key}  # what the fit added: bank / statistics
    size = method.config.data.image_size
    images = torch.rand(batch_size, 3, size, size)
    with torch.no_grad():
        method(images)
        start = time.perf_counter()
        for _ in range(infer_batches):
            method(images)
        infer_s = time.perf_counter() - start
    return {
        "method": name, "k": k, "train_images": k * per_category, "image_size": size,
        "bank_MB": sum(v.numel() * v.element_size() for v in state.values()) / 2**20,
        "bank_rows": int(method.model.memory_bank.shape[0]) if hasattr(
            method.model, "embedding_store") else None,
        "params_M": sum(p.numel() for p in method.parameters()) / 1e6,
        "collect_img_s": k * per_category / collect_s,
        "build_s": build_s,
        "infer_img_s": infer_batches * batch_size / infer_s,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def measure_coreset(impl: str, patches: int, dims: int, ratio: float) -> dict[str, Any]:
    """Time and peak memory of one coreset selection on random (patches, dims) features."""
    import resource

    import numpy as np
    import torch

    from adbench.baselines.patchcore import greedy_coreset

    generator = torch.Generator().manual_seed(0)
    embedding = torch.randn(patches, dims, generator=generator)
    torch.manual_seed(0)
    np.random.seed(0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    if impl == "adbench":
        chosen = greedy_coreset(embedding, int(patches * ratio)).tolist()
    else:
        from anomalib.models.components import KCenterGreedy

        chosen = KCenterGreedy(embedding, sampling_ratio=ratio).select_coreset_idxs()
    seconds = time.perf_counter() - start
    return {
        "impl": impl, "patches": patches, "dims": dims, "selected": len(chosen),
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default"),
        "seconds": seconds,
        "rss_before_GB": before,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "first_indices": chosen[:5],
    }


def _run(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        return {"args": " ".join(args), "error": lines[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", nargs="+", type=int, default=[1, 15, 60, 160])
    parser.add_argument("--per-category", type=int, default=20,
                        help="training images per category (the synthetic set's default)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--infer-batches", type=int, default=3)
    parser.add_argument("--patches", type=int, default=40000, help="coreset benchmark size")
    parser.add_argument("--dims", type=int, default=64, help="coreset feature dimensions")
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--tables", nargs="+", choices=("memory", "coreset"),
                        default=["memory", "coreset"], help="which measurements to run")
    parser.add_argument("--out", type=Path, default=RESULTS / "methods_anomalib")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: METHOD:K or coreset:IMPL
    args = parser.parse_args()
    if args.one:
        kind, value = args.one.rsplit(":", 1)
        if kind == "coreset":
            row = measure_coreset(value, args.patches, args.dims, args.ratio)
        else:
            row = measure_method(kind, int(value), args.per_category, args.batch_size,
                                 args.infer_batches)
        print(json.dumps(row))
        return

    common = ["--per-category", str(args.per_category), "--batch-size", str(args.batch_size),
              "--infer-batches", str(args.infer_batches), "--patches", str(args.patches),
              "--dims", str(args.dims), "--ratio", str(args.ratio)]
    methods = []
    if "memory" in args.tables:
        for name in MEMORY_METHODS:
            for k in args.k:
                methods.append(_run(["--one", f"{name}:{k}", *common]))
                print(methods[-1], flush=True)
    coreset = []
    without = {key: value for key, value in os.environ.items() if key != "MALLOC_MMAP_THRESHOLD_"}
    for impl in ("adbench", "anomalib") if "coreset" in args.tables else ():
        for env in (without, {**without, "MALLOC_MMAP_THRESHOLD_": "131072"}):
            coreset.append(_run(["--one", f"coreset:{impl}", *common], env=env))
            print(coreset[-1], flush=True)
    write({"memory_bank_vs_k": methods, "coreset": coreset}, args.out)


def write(tables: dict[str, list[dict[str, Any]]], out: Path) -> None:
    """Print Markdown tables and save them with the raw rows (JSON) under ``out``."""
    import pandas as pd
    import torch

    header = (f"anomalib baselines, measured {date.today()} on "
              f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores, "
              f"{torch.get_num_threads()} threads), torch {torch.__version__}.")
    parts = [header]
    for title, rows in tables.items():
        if rows:
            parts.append(f"### {title}\n\n" + pd.DataFrame(rows).to_markdown(index=False,
                                                                             floatfmt=".3g"))
    text = "\n\n".join(parts)
    print(f"\n{text}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, {"header": header, **tables}, text)


if __name__ == "__main__":
    main()
