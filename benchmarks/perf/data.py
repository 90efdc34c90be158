"""Data-layer throughput: images/s through the datamodule and ``adbench data prepare``.

1. ``loader``: a training epoch of `UnifiedDataModule` at 256 px with 0 and 2 workers, on the
   built-in synthetic set (written at 256 px) and on large photographs-like JPEGs
   (``--large-side``, decoded and resized per image, as with MVTec or Real-IAD).
2. ``prepare``: `prepare_cache` of the large JPEGs to 256 px with 1 and 2 worker processes
   (the resized cache that makes Real-IAD Variety's ~16 MP images usable).
3. ``synth``: `make_synthetic` time for 8 categories x (20 train + 20 test) at 64 px.

    python -m benchmarks.perf.data                       # writes benchmarks/results/data.{json,md}
    python -m benchmarks.perf.data --large-side 4096 --large-count 64
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.perf.results_file import RESULTS, write_tables


def write_large_images(root: Path, count: int, side: int) -> None:
    """``count`` JPEGs of side x (3/4 side) px with smooth structure and grain, folder layout."""
    rng = np.random.default_rng(0)
    height = side * 3 // 4
    for i in range(count):
        coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((side, height), Image.BICUBIC))
        grain = rng.integers(-12, 13, (height, side, 1), dtype=np.int16)
        pixels = np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)
        path = root / "large" / "good" / f"{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)


def loader_rate(index: Any, workers: int, size: int, batch_size: int, epochs: int) -> float:
    """Images/s of full training epochs (the first epoch also starts the workers)."""
    from adbench.data import UnifiedDataModule

    dm = UnifiedDataModule(
        index, image_size=size, batch_size=batch_size, num_workers=workers, cache_dir=()
    )
    loader = dm.train_dataloader()
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            seen += len(batch)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="datamodule / cache image side")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--synthetic-categories", type=int, default=4)
    parser.add_argument("--large-count", type=int, default=32)
    parser.add_argument("--large-side", type=int, default=2048, help="width of the large JPEGs")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "data")
    args = parser.parse_args()

    from adbench.data import load_index, make_synthetic, prepare_cache

    rows: list[dict[str, Any]] = []

    def record(task: str, data: str, workers: int, seconds: float | None, rate: float) -> None:
        rows.append(
            {
                "task": task,
                "data": data,
                "workers": workers,
                "seconds": seconds,
                "images_per_s": rate,
            }
        )
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        make_synthetic(tmp / "synth64", 8, image_size=64, n_train=20, n_test=20)
        elapsed = time.perf_counter() - start
        record("synth", "8 cat x 40 img @ 64 px", 0, elapsed, 320 / elapsed)
        synthetic = make_synthetic(
            tmp / "synth", args.synthetic_categories, image_size=args.size, n_train=32, n_test=4
        )
        write_large_images(tmp / "large", args.large_count, args.large_side)
        sources = {
            f"synthetic @ {args.size} px": load_index("synthetic", synthetic),
            f"JPEG {args.large_side}x{args.large_side * 3 // 4}": load_index(
                "folder", tmp / "large", test_fraction=0.05
            ),
        }
        for name, index in sources.items():
            for workers in args.workers:
                record(
                    "loader",
                    name,
                    workers,
                    None,
                    loader_rate(index, workers, args.size, 16, args.epochs),
                )
        for workers in sorted({max(w, 1) for w in args.workers}):  # 0 workers: in-process = 1
            out = tmp / f"cache{workers}"
            result = prepare_cache(
                tmp / "large", "folder", out=out, size=args.size, workers=workers, progress=False
            )
            record(
                "prepare",
                f"JPEG {args.large_side} px -> {args.size}",
                workers,
                result.seconds,
                result.total / result.seconds,
            )
            shutil.rmtree(out)
    write_tables(args.out, "adbench data benchmark", {"rows": rows}, floatfmt=".1f")


if __name__ == "__main__":
    main()
