"""Cost of every registered method: train and inference images/s, peak memory, parameters, vs k.

Each (method, k) is measured in a fresh process so the peak resident memory of one measurement
does not leak into the next. Training runs `adbench.fit` on random images with k category ids
(class-aware methods size their memory for k classes); inference calls ``forward`` under
``torch.no_grad``. Prints a table and writes JSON + Markdown.

    python -m benchmarks.perf.methods --preset tiny --k 1 15 60 160
    python -m benchmarks.perf.methods --preset paper --device cuda --precision bf16-mixed --k 15
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.perf import common
from benchmarks.perf.results_file import RESULTS, write_tables


def measure(
    method: str,
    preset: str,
    k: int,
    image_size: int,
    batch_size: int,
    train_steps: int,
    infer_batches: int,
    device: str,
    precision: str,
) -> dict[str, Any]:
    """Measure one method at one k (runs in a fresh process)."""
    import adbench

    model = adbench.create(method, preset, seed=0, num_classes=k)
    data = common.random_datamodule(k, image_size, batch_size, train_steps + 1, 0)
    fit = common.timed_fit(model, data, train_steps + 1, device, precision=precision)
    model = model.to(device).eval()
    images = common.random_batch(batch_size, image_size, k).image.to(device)
    infer = common.inference_step(model, images, device, precision)
    infer_s = common.seconds_per_call(infer, infer_batches, device)
    return {
        "method": method,
        "preset": preset,
        "k": k,
        "image_size": image_size,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "params_M": common.parameters_M(model),
        "trainable_M": common.parameters_M(model, trainable=True),
        # the first step (optimiser state creation, lazy init) is included: fit time / steps
        "train_img_s": (train_steps + 1) * batch_size / fit.fit_s,
        "infer_img_s": batch_size / infer_s,
        **common.peak_memory(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--methods", nargs="*", help="default: every registered method that has the preset"
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--k", nargs="+", type=int, default=[1, 15, 60, 160])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--infer-batches", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--out", type=Path, default=RESULTS / "methods")
    args = parser.parse_args()

    import adbench

    names = args.methods or common.with_preset(args.preset)
    left_out = [] if args.methods else sorted(set(adbench.list_methods()) - set(names))
    if left_out:
        print(f"left out (no preset '{args.preset}'): {', '.join(left_out)}")
    rows = common.measure_each(
        measure,
        common.grid(method=names, k=args.k),
        preset=args.preset,
        image_size=args.image_size,
        batch_size=args.batch_size,
        train_steps=args.train_steps,
        infer_batches=args.infer_batches,
        device=args.device,
        precision=args.precision,
    )
    write_tables(args.out, "Methods", {"rows": rows})


if __name__ == "__main__":
    main()
