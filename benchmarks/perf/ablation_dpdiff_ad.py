"""DPDiff-AD ablations: what each part adds, on the built-in synthetic data at k = 8 and k = 32.

Each trained variant is the `tiny` preset with one part removed (its own seed, training and
data order), and the two scoring variants re-score the trained full model:

- ``full``: the tiny preset.
- ``no_global``: the cross-attention sees only the local prototypes, and there is no L_OT.
- ``no_local``: the cross-attention sees only the global prototypes; no L_loc, and scores are
  the reconstruction's alone (nothing else has a local bank to measure against).
- ``no_ot``: no L_OT term (the global prototypes keep their k-means start).
- ``reconstruction_only``: the full model scored by 1 - cos(F, F_hat) alone.
- ``prototype_only``: the full model scored by the nearest-local-prototype distance alone.
- ``naive``: the mean-image detector on the same data (`adbench.baselines.naive`), for scale.

The table gives mean +- std over seeds of the macro-mean image and pixel AUROC.

    python -m benchmarks.perf.ablation_dpdiff_ad                     # k = 8, 32; seeds 0-2
    python -m benchmarks.perf.ablation_dpdiff_ad --k 4 --seeds 0 --steps 20 --out runs/ablation
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.perf.common import quiet
from benchmarks.perf.results_file import RESULTS, write_results

NO_OT = {"loss.ot": 0.0}
TRAINED: dict[str, dict[str, Any]] = {
    "full": {},
    "no_global": {"denoiser.conditions": ["local"], **NO_OT},
    "no_local": {
        "denoiser.conditions": ["global"],
        "loss.local": 0.0,
        "inference.prototype_weight": 0.0,
    },
    "no_ot": NO_OT,
}
RESCORED: dict[str, dict[str, Any]] = {
    "reconstruction_only": {"inference.prototype_weight": 0.0},
    "prototype_only": {"inference.prototype_weight": 1.0},
}
VARIANTS = (*TRAINED, *RESCORED, "naive")
METRICS = ("I-AUROC", "P-AUROC")
CPU = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}


def _means(table: Any) -> dict[str, float]:
    frame = table.to_frame()
    return {metric: float(frame.loc["mean", metric]) for metric in METRICS}


def run_seed(root: Path, k: int, seed: int, steps: int | None) -> list[dict[str, Any]]:
    """Every variant on the k-category data in ``root`` with one seed: rows of macro means."""
    import adbench
    from adbench.baselines.naive import mean_image_auroc

    datamodule = adbench.UnifiedDataModule(
        adbench.load_index("synthetic", root), image_size=64, batch_size=8, seed=seed
    )
    budget = {} if steps is None else {"max_steps": steps}
    rows = [
        {
            "variant": "naive",
            "k": k,
            "seed": seed,
            "I-AUROC": mean_image_auroc(datamodule)[1],
            "P-AUROC": None,
            "train_s": 0.0,
        }
    ]
    full = None
    for name, overrides in TRAINED.items():
        method = adbench.create("dpdiff_ad", preset="tiny", seed=seed, **overrides)
        started = time.perf_counter()
        adbench.fit(
            method, datamodule, seed=seed, enable_checkpointing=False, logger=False, **budget, **CPU
        )
        seconds = time.perf_counter() - started
        rows.append(
            {
                "variant": name,
                "k": k,
                "seed": seed,
                "train_s": seconds,
                **_means(adbench.evaluate(method, datamodule, **CPU)),
            }
        )
        print(f"k={k} seed={seed} {name}: {rows[-1]}", flush=True)
        full = method if name == "full" else full
    for name, overrides in RESCORED.items():
        method = adbench.create("dpdiff_ad", preset="tiny", **overrides)
        method.load_state_dict(full.state_dict())
        rows.append(
            {
                "variant": name,
                "k": k,
                "seed": seed,
                "train_s": None,
                **_means(adbench.evaluate(method, datamodule, **CPU)),
            }
        )
        print(f"k={k} seed={seed} {name}: {rows[-1]}", flush=True)
    return rows


def summarise(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Mean and std over seeds per (k, variant), and the Markdown table."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    stats = frame.groupby(["k", "variant"], sort=False)[list(METRICS)].agg(["mean", "std"])
    summary, ks = [], sorted(frame["k"].unique())
    lines = [
        "| variant | " + " | ".join(f"I-AUROC k={k} | P-AUROC k={k}" for k in ks) + " |",
        "|---|" + "---|" * (2 * len(ks)),
    ]
    for variant in VARIANTS:
        cells = []
        for k in ks:
            for metric in METRICS:
                mean, std = (
                    stats.loc[(k, variant), (metric, "mean")],
                    stats.loc[(k, variant), (metric, "std")],
                )
                spread = "" if pd.isna(std) else f" +- {100 * std:.1f}"  # one seed: no std
                cells.append("-" if pd.isna(mean) else f"{100 * mean:.1f}{spread}")
                summary.append(
                    {
                        "k": int(k),
                        "variant": variant,
                        "metric": metric,
                        "mean": None if pd.isna(mean) else float(mean),
                        "std": None if pd.isna(std) else float(std),
                    }
                )
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return summary, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--per-category",
        type=int,
        nargs=2,
        default=[16, 16],
        metavar=("TRAIN", "TEST"),
        help="synthetic images per category",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the tiny preset's budget)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "ablation_dpdiff_ad")
    args = parser.parse_args()

    import adbench

    quiet()
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.k:
            root = adbench.make_synthetic(
                Path(tmp) / f"k{k}",
                n_categories=k,
                seed=0,
                image_size=64,
                n_train=args.per_category[0],
                n_test=args.per_category[1],
            )
            for seed in args.seeds:
                rows += run_seed(root, k, seed, args.steps)
    summary, table = summarise(rows)
    settings = {
        "k": args.k,
        "seeds": args.seeds,
        "per_category": args.per_category,
        "steps": args.steps or "tiny preset",
        "image_size": 64,
        "batch_size": 8,
        "total_s": round(time.perf_counter() - started, 1),
    }
    write_results(
        args.out,
        {"settings": settings, "rows": rows, "summary": summary},
        f"DPDiff-AD ablations, tiny preset, synthetic data ({settings}); mean +- std "
        f"over seeds of the macro-mean AUROC (%).\n\n{table}",
    )
    print(table)


if __name__ == "__main__":
    main()
