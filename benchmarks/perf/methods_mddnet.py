"""MDD-Net cost against the number of categories k: parameters per part, the class-aware memory's
read cost, and whole-model train / inference images/s with peak memory.

The memory holds k x M slots of D channels, so its parameters and its attention cost grow
linearly with k while the rest of the network does not. This script shows by how much, for the
tiny preset and for the paper architecture (WideResNet-50-2 at 256 px; by default in mechanics
mode, ``random_weights=True``, since the cost does not depend on the weights). The
generic ``benchmarks/perf/methods.py`` gives the same whole-model figures for every method.

    python benchmarks/perf/methods_mddnet.py --k 1 15 60 160
    python benchmarks/perf/methods_mddnet.py --presets paper --device cuda --precision bf16 --k 15
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
from typing import Any

from results_file import write_results

RESULTS = Path(__file__).resolve().parents[1] / "results"
PARTS = ("teacher", "bottleneck", "memory", "restoration", "identity")


def build(k: int, preset: str = "tiny", **overrides: Any) -> Any:
    """MDD-Net of ``preset`` with its class-aware memory sized for ``k`` categories."""
    from adbench.registry import create

    return create("mddnet", preset=preset, **{"memory.num_classes": k, **overrides})


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


def measure(preset: str, k: int, batch_size: int, steps: int, device: str, precision: str,
            weights: str) -> dict[str, Any]:
    """One (preset, k) measurement; run in a fresh process so peak memory is its own."""
    import resource

    import torch

    from adbench.batch import Batch

    torch.manual_seed(0)
    overrides = {"random_weights": True} if preset == "paper" and weights == "random" else {}
    method = build(k, preset, **overrides).to(device)
    model = method.model
    size = method.config.data.image_size
    params = {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in PARTS}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad],
                                 lr=method.config.optim.lr, betas=method.config.optim.betas)
    method.log_dict = lambda *args, **kwargs: None  # no trainer attached: skip logging
    method.log = lambda *args, **kwargs: None
    batch = Batch(torch.rand(batch_size, 3, size, size), torch.zeros(batch_size, 1, size, size),
                  torch.zeros(batch_size, dtype=torch.int64),
                  torch.arange(batch_size, dtype=torch.int64) % k,
                  torch.arange(batch_size, dtype=torch.int64)).to(device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = method.training_step(batch, 0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def infer() -> None:
        with torch.no_grad(), autocast:
            method(batch.image)

    # the memory read alone on the bottleneck embedding, forward + backward
    z = torch.randn(batch_size, model.memory.slots.shape[-1], *_z_size(method, size), device=device,
                    requires_grad=True)

    def memory_read() -> None:
        with autocast:
            read = model.memory(z)
        (read.readout.float().sum() + read.log_weights.float().mean()).backward()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    method.train()
    train_s = _timed(train_step, steps, device)
    method.eval()
    infer_s = _timed(infer, steps, device)
    memory_s = _timed(memory_read, steps, device)
    return {
        "preset": preset, "k": k, "image_size": size, "batch_size": batch_size,
        "device": device, "precision": precision,
        **{f"{part}_M": count / 1e6 for part, count in params.items()},
        "trainable_M": sum(p.numel() for p in method.parameters() if p.requires_grad) / 1e6,
        "slots": k * method.config.memory.slots,
        "train_img_s": batch_size / train_s,
        "infer_img_s": batch_size / infer_s,
        "memory_read_ms": 1e3 * memory_s,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_GB": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }


def _z_size(method: Any, size: int) -> tuple[int, int]:
    side = size // method.model.bottleneck.out_stride
    return side, side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--k", nargs="+", type=int, default=[1, 15, 60, 160])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 16 for tiny, 4 for paper on CPU, 16 on GPU")
    parser.add_argument("--steps", type=int, default=3, help="timed repeats after one warm-up")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--paper-weights", default="random", choices=("random", "pretrained"),
                        help="paper preset: 'random' times the architecture in mechanics mode "
                             "(random_weights=True); 'pretrained' needs the weights in the hub "
                             "cache")
    parser.add_argument("--out", type=Path, default=RESULTS / "methods_mddnet")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: PRESET:K in a subprocess
    args = parser.parse_args()
    if args.one:
        preset, k = args.one.rsplit(":", 1)
        batch = args.batch_size or (4 if preset == "paper" and args.device == "cpu" else 16)
        row = measure(preset, int(k), batch, args.steps, args.device, args.precision,
                      args.paper_weights)
        print(json.dumps(row))
        return
    rows = []
    for preset in args.presets:
        for k in args.k:
            cmd = [sys.executable, __file__, "--one", f"{preset}:{k}", "--steps", str(args.steps),
                   "--device", args.device, "--precision", args.precision,
                   "--paper-weights", args.paper_weights]
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
    header = (f"MDD-Net cost vs k, measured {date.today()} on "
              f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads), "
              f"torch {torch.__version__}, "
              f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}.")
    table = frame.to_markdown(index=False, floatfmt=".3g")
    print(f"\n{header}\n\n{table}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, {"header": header, "rows": rows}, f"{header}\n\n{table}")


if __name__ == "__main__":
    main()
