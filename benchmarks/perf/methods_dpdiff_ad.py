"""DPDiff-AD cost against the number of categories k: parameters per part, prototype-bank memory,
train / inference images/s, peak memory, and how the k categories share the prototypes.

DPDiff-AD's banks have a fixed size (K_L local, K_G global prototypes) whatever k is, so its
parameters, memory and time per image must stay flat as k grows; this script measures that on
images of k real categories of the built-in synthetic dataset (the banks are initialised by
k-means on them; the table shows how many prototypes are in use and how many categories each
serves, i.e. how a fixed bank is shared as k grows). The generic
``benchmarks/perf/methods.py`` gives the whole-model figures of every method on random images.

    python benchmarks/perf/methods_dpdiff_ad.py --k 1 15 60 160
    python benchmarks/perf/methods_dpdiff_ad.py --presets paper --device cuda --precision bf16 \\
        --paper-weights pretrained --k 1 15 60 160
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from results_file import write_results

RESULTS = Path(__file__).resolve().parents[1] / "results"
PARTS = ("extractor", "local", "glob", "denoiser", "ema_denoiser")


def build(k: int, preset: str = "tiny", **overrides: Any) -> Any:
    """DPDiff-AD of ``preset`` for a k-category dataset.

    Nothing in DPDiff-AD depends on k (the banks do not grow per class), so ``k`` changes only
    the data the benchmark feeds it; it is an argument for the shared benchmark interface.
    """
    from adbench.registry import create

    del k
    return create("dpdiff_ad", preset=preset, **overrides)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Any, repeats: int, device: str) -> float:
    """Seconds per call of ``fn`` after one warm-up call."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def _category_images(k: int, size: int, per_category: int, root: Path) -> Any:
    """``per_category`` normal training images of each of k synthetic categories.

    Returns:
        images (k n, 3, S, S) and their category ids (k n,).
    """
    import torch

    from adbench.data import AnomalyDataset, load_index, make_synthetic

    make_synthetic(root, n_categories=k, seed=0, image_size=size, n_train=per_category, n_test=2)
    index = load_index("synthetic", root)
    frame = index.frame[index.frame["split"] == "train"]
    data = AnomalyDataset(frame, index.categories, size)
    samples = [data[i] for i in range(len(data))]
    return (torch.stack([sample.image for sample in samples]),
            torch.tensor([sample.category for sample in samples]))


def _sharing(nearest: Any, category: Any) -> tuple[int, float]:
    """Prototypes that are nearest to something, and the mean number of categories each serves."""
    pairs = (nearest.flatten() * (int(category.max()) + 1) + category.flatten()).unique()
    used = (pairs // (int(category.max()) + 1)).unique().numel()
    return used, pairs.numel() / used


def measure(preset: str, k: int, batch_size: int, steps: int, device: str, precision: str,
            weights: str, root: Path, settings: list[str]) -> dict[str, Any]:
    """One (preset, k) measurement; run in a fresh process so peak memory is its own."""
    import resource

    import torch

    from adbench.batch import Batch
    from adbench.config import parse_set

    torch.manual_seed(0)
    overrides = {"backbone.weights": weights} if preset == "paper" else {}
    method = build(k, preset, **overrides, **parse_set(settings)).to(device)
    model = method.model
    size = method.config.data.image_size
    per_category = max(1, math.ceil(2 * batch_size / k))
    pool, category = _category_images(k, size, per_category, root / f"synthetic_{size}_{k}")
    pool, category = pool.to(device), category.to(device)

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)
    with torch.no_grad():  # k-means initialisation on the k categories' tokens
        samples = [model.initialization_sample(chunk, method.config.init.max_tokens)
                   for chunk in pool.split(batch_size)]
        model.initialize(torch.cat([s[0] for s in samples]), torch.cat([s[1] for s in samples]),
                         torch.Generator().manual_seed(0))
        tokens = torch.cat([model.extractor(chunk)[0] for chunk in pool.split(batch_size)])
        nearest_local = model.local(tokens).index[..., 0]  # (images, N)
        nearest_global = model.glob.similarity(model.glob.descriptor(tokens)).argmax(1)
    sharing = {"local": _sharing(nearest_local, category[:, None].expand_as(nearest_local)),
               "global": _sharing(nearest_global, category)}

    images = pool[torch.randperm(len(pool))[:batch_size]]  # a batch mixing the categories
    batch = Batch(images, torch.zeros(batch_size, 1, size, size, device=device),
                  torch.zeros(batch_size, dtype=torch.int64, device=device),
                  torch.zeros(batch_size, dtype=torch.int64, device=device),
                  torch.arange(batch_size, dtype=torch.int64, device=device))
    groups = method.parameter_groups()
    optimizer = torch.optim.AdamW(groups, lr=method.config.optim.lr)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    method.log = lambda *args, **kwargs: None  # no trainer attached: skip logging
    step = {"n": 0}

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = method.training_step(batch, 0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step["n"] += 1
        model.update_ema(step["n"])

    def infer() -> None:
        with torch.no_grad(), autocast:
            method(batch.image)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    method.train()
    train_s = _timed(train_step, steps, device)
    method.eval()
    infer_s = _timed(infer, steps, device)
    bank_bytes = sum(t.numel() * t.element_size() for t in (
        *model.local.parameters(), *model.local.buffers(), *model.glob.parameters()))
    return {
        "preset": preset, "k": k, "image_size": size, "batch_size": batch_size,
        "device": device, "precision": precision,
        **{f"{part}_M": sum(p.numel() for p in getattr(model, part).parameters()) / 1e6
           for part in PARTS},
        "trainable_M": sum(p.numel() for p in method.parameters() if p.requires_grad) / 1e6,
        "bank_MB": bank_bytes / 2**20,
        "local_in_use": f"{sharing['local'][0]}/{model.local.config.num}",
        "classes_per_local": sharing["local"][1],
        "global_in_use": f"{sharing['global'][0]}/{model.glob.weight.shape[0]}",
        "classes_per_global": sharing["global"][1],
        "train_img_s": batch_size / train_s,
        "infer_img_s": batch_size / infer_s,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_GB": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--k", nargs="+", type=int, default=[1, 15, 60, 160])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 8 for tiny, 2 for paper on CPU, 16 on GPU")
    parser.add_argument("--steps", type=int, default=3, help="timed repeats after one warm-up")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--paper-weights", default="none",
                        help="backbone.weights for the paper preset ('pretrained' needs the hub "
                             "cache; 'none' times the architecture)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. init.kmeans_iters=3 for a quick CPU run")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder for the generated synthetic images (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=RESULTS / "methods_dpdiff_ad")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: PRESET:K in a subprocess
    args = parser.parse_args()
    if args.one:
        preset, k = args.one.rsplit(":", 1)
        batch = args.batch_size or (8 if preset == "tiny" else 16 if args.device == "cuda" else 2)
        row = measure(preset, int(k), batch, args.steps, args.device, args.precision,
                      args.paper_weights, args.data, args.set)
        print(json.dumps(row))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        rows = []
        for preset in args.presets:
            for k in args.k:
                cmd = [sys.executable, __file__, "--one", f"{preset}:{k}", "--steps",
                       str(args.steps), "--device", args.device, "--precision", args.precision,
                       "--paper-weights", args.paper_weights, "--data", str(data)]
                cmd += [f"--set={item}" for item in args.set]
                if args.batch_size:
                    cmd += ["--batch-size", str(args.batch_size)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    lines = done.stderr.strip().splitlines() or ["(no output)"]
                    rows.append({"preset": preset, "k": k, "error": lines[-1]})
                else:
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    write(rows, args.out)


def write(rows: list[dict[str, Any]], out: Path) -> None:
    """Print a Markdown table and save it with the raw rows (JSON) under ``out``."""
    import pandas as pd
    import torch

    frame = pd.DataFrame(rows)
    header = (f"DPDiff-AD cost vs k, measured {date.today()} on "
              f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads), "
              f"torch {torch.__version__}, "
              f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}.")
    table = frame.to_markdown(index=False, floatfmt=".3g")
    print(f"\n{header}\n\n{table}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, {"header": header, "rows": rows}, f"{header}\n\n{table}")


if __name__ == "__main__":
    main()
