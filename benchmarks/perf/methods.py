"""Cost of every registered method: train and inference images/s, peak memory, parameters, vs k.

Each (method, k) is measured in a fresh subprocess so the peak resident memory of one measurement
does not leak into the next. Training runs Lightning's fit loop on random images with k category
ids (class-aware methods size their memory for k classes); inference calls ``forward`` under
``torch.no_grad``. Prints a table and writes JSON + Markdown.

    python benchmarks/perf/methods.py --preset tiny --k 1 15 60 160
    python benchmarks/perf/methods.py --preset paper --device cuda --precision bf16-mixed --k 15
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from results_file import write_results

RESULTS = Path(__file__).resolve().parents[1] / "results"


def measure(
    name: str,
    preset: str,
    k: int,
    image_size: int,
    batch_size: int,
    train_steps: int,
    infer_batches: int,
    device: str,
    precision: str,
) -> dict:
    """Measure one method at one k (runs inside the subprocess)."""
    import resource

    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from adbench.batch import Batch
    from adbench.config import fill_num_classes
    from adbench.registry import get_method_spec, resolve_config

    torch.manual_seed(0)
    config = fill_num_classes(resolve_config(name, preset), k)
    method = get_method_spec(name).module(config)
    n = batch_size * (train_steps + 1)
    batches = [
        Batch(
            image=torch.rand(batch_size, 3, image_size, image_size),
            mask=torch.zeros(batch_size, 1, image_size, image_size),
            label=torch.zeros(batch_size, dtype=torch.int64),
            category=torch.arange(i * batch_size, (i + 1) * batch_size) % k,
            index=torch.arange(i * batch_size, (i + 1) * batch_size),
        )
        for i in range(n // batch_size)
    ]
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    trainer = L.Trainer(
        max_steps=train_steps + 1,
        accelerator=device,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    start = time.perf_counter()
    trainer.fit(method, train_dataloaders=loader)
    train_s = time.perf_counter() - start
    params = sum(p.numel() for p in method.parameters())
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)

    target = torch.device("cuda" if device == "cuda" else "cpu")
    method = method.to(target).eval()
    images = torch.rand(batch_size, 3, image_size, image_size, device=target)
    autocast = torch.autocast(target.type, dtype=torch.bfloat16, enabled="bf16" in precision)
    with torch.no_grad(), autocast:
        method(images)  # warm-up
        if target.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(infer_batches):
            method(images)
        if target.type == "cuda":
            torch.cuda.synchronize()
        infer_s = time.perf_counter() - start
    return {
        "method": name,
        "preset": preset,
        "k": k,
        "image_size": image_size,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "params_M": params / 1e6,
        "trainable_M": trainable / 1e6,
        # the first step (optimiser state creation, lazy init) is included: fit time / steps
        "train_img_s": (train_steps + 1) * batch_size / train_s,
        "infer_img_s": infer_batches * batch_size / infer_s,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_GB": torch.cuda.max_memory_allocated() / 2**30 if target.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="*",
                        help="default: every registered method that has the preset")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--k", nargs="+", type=int, default=[1, 15, 60, 160])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--infer-batches", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--out", type=Path, default=RESULTS / "methods")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: NAME:K, run in a subprocess
    args = parser.parse_args()
    options = (
        args.image_size,
        args.batch_size,
        args.train_steps,
        args.infer_batches,
        args.device,
        args.precision,
    )
    if args.one:
        name, k = args.one.rsplit(":", 1)
        print(json.dumps(measure(name, args.preset, int(k), *options)))
        return

    import adbench

    names = args.methods or [name for name in adbench.list_methods()
                             if args.preset in adbench.get_method_spec(name).presets]
    left_out = sorted(set(adbench.list_methods()) - set(names)) if not args.methods else []
    if left_out:
        print(f"left out (no preset '{args.preset}'): {', '.join(left_out)}")
    rows = []
    for name in names:
        for k in args.k:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                f"{name}:{k}",
                "--preset",
                args.preset,
                "--image-size",
                str(args.image_size),
                "--batch-size",
                str(args.batch_size),
                "--train-steps",
                str(args.train_steps),
                "--infer-batches",
                str(args.infer_batches),
                "--device",
                args.device,
                "--precision",
                args.precision,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                rows.append({"method": name, "k": k, "error": done.stderr.strip().splitlines()[-1]})
            else:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    write(rows, args.out)


def write(rows: list[dict], out: Path) -> None:
    """Print a Markdown table and save it with the raw rows (JSON) under ``out``."""
    import pandas as pd
    import torch

    frame = pd.DataFrame(rows)
    header = (
        f"Measured {date.today()} on {platform.processor() or platform.machine()} "
        f"({torch.get_num_threads()} threads), torch {torch.__version__}, "
        f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}."
    )
    table = frame.to_markdown(index=False, floatfmt=".3g")
    print(f"\n{header}\n\n{table}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, {"header": header, "rows": rows}, f"{header}\n\n{table}")


if __name__ == "__main__":
    main()
