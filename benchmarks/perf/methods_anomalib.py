"""Cost of the anomalib memory-bank baselines against the number of categories k.

PatchCore's bank and PaDiM's statistics are built from every training image of every category,
so their build time, bank size and peak memory grow with k (``--per-category`` images each);
RD and STFPM do not depend on k (``benchmarks/perf/methods.py`` times them with every other
method). A second table compares PatchCore's coreset selection (``greedy_coreset``) with
anomalib's ``KCenterGreedy`` on the same features, with and without
``MALLOC_MMAP_THRESHOLD_=131072``, which decides whether glibc returns the per-step temporaries
of ``KCenterGreedy`` to the system. Each row runs in a fresh process (its own peak memory).

    python -m benchmarks.perf.methods_anomalib --k 1 15 60 160
    python -m benchmarks.perf.methods_anomalib --tables coreset --patches 100000
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.perf import common
from benchmarks.perf.results_file import RESULTS, write_tables

MEMORY_METHODS = ("anomalib.patchcore", "anomalib.padim")


def collect(method: Any, k: int, per_category: int, batch_size: int) -> None:
    """Training steps over ``k * per_category`` random images (one epoch, no bank built yet)."""
    size = method.config.data.image_size
    generator = torch.Generator().manual_seed(0)
    method.train()
    method.on_train_epoch_start()
    total = k * per_category
    for start in range(0, total, batch_size):
        batch = common.random_batch(
            min(batch_size, total - start), size, k, start=start, generator=generator
        )
        method.training_step(batch, 0)


def measure_method(
    method: str, k: int, per_category: int, batch_size: int, infer_batches: int
) -> dict[str, Any]:
    """Collection, bank build and inference cost of one memory-bank method at one k."""
    import adbench

    torch.manual_seed(0)
    model = adbench.create(method, "tiny")
    start = time.perf_counter()
    collect(model, k, per_category, batch_size)
    collect_s = time.perf_counter() - start
    start = time.perf_counter()
    model.build_if_pending()
    build_s = time.perf_counter() - start
    model.eval()
    state = {
        key: value for key, value in model.state_dict().items() if "feature_extractor" not in key
    }  # what the fit added: bank / statistics
    size = model.config.data.image_size
    infer = common.inference_step(model, torch.rand(batch_size, 3, size, size), "cpu", "fp32")
    infer_s = common.seconds_per_call(infer, infer_batches, "cpu")
    return {
        "method": method,
        "k": k,
        "train_images": k * per_category,
        "image_size": size,
        "bank_MB": sum(v.numel() * v.element_size() for v in state.values()) / 2**20,
        "bank_rows": int(model.model.memory_bank.shape[0])
        if hasattr(model.model, "embedding_store")
        else None,
        "params_M": common.parameters_M(model),
        "collect_img_s": k * per_category / collect_s,
        "build_s": build_s,
        "infer_img_s": batch_size / infer_s,
        "peak_rss_GB": common.peak_memory("cpu")["peak_rss_GB"],
    }


def measure_coreset(impl: str, patches: int, dims: int, ratio: float) -> dict[str, Any]:
    """Time and peak memory of one coreset selection on random (patches, dims) features."""
    import numpy as np

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
        "impl": impl,
        "patches": patches,
        "dims": dims,
        "selected": len(chosen),
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_", "glibc default"),
        "seconds": seconds,
        "rss_before_GB": before,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "first_indices": chosen[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", nargs="+", type=int, default=[1, 15, 60, 160])
    parser.add_argument(
        "--per-category",
        type=int,
        default=20,
        help="training images per category (the synthetic set's default)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--infer-batches", type=int, default=3)
    parser.add_argument("--patches", type=int, default=40000, help="coreset benchmark size")
    parser.add_argument("--dims", type=int, default=64, help="coreset feature dimensions")
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument(
        "--tables",
        nargs="+",
        choices=("memory", "coreset"),
        default=["memory", "coreset"],
        help="which measurements to run",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "methods_anomalib")
    args = parser.parse_args()
    methods = []
    if "memory" in args.tables:
        methods = common.measure_each(
            measure_method,
            common.grid(method=MEMORY_METHODS, k=args.k),
            per_category=args.per_category,
            batch_size=args.batch_size,
            infer_batches=args.infer_batches,
        )
    coreset = []
    without = {key: value for key, value in os.environ.items() if key != "MALLOC_MMAP_THRESHOLD_"}
    for impl in ("adbench", "anomalib") if "coreset" in args.tables else ():
        for env in (without, {**without, "MALLOC_MMAP_THRESHOLD_": "131072"}):
            coreset += common.measure_each(
                measure_coreset,
                [{"impl": impl}],
                env,
                patches=args.patches,
                dims=args.dims,
                ratio=args.ratio,
            )
    write_tables(args.out, "anomalib baselines", {"memory_bank_vs_k": methods, "coreset": coreset})


if __name__ == "__main__":
    main()
