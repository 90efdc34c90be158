"""One GPU check, inside a time budget: the method contract, a tiny sweep, every paper
architecture and a DDP cell, on CUDA.

Steps, in this order, each recorded as passed, failed or skipped (with the reason, e.g.
"skipped: budget") with its duration; a failing step records its error and the next one runs:

1. contract: ``tests/methods/test_contract.py`` in a pytest subprocess with
   ``ADBENCH_TEST_DEVICE=cuda``;
2. sweep: a 2-epoch sweep of the methods' ``tiny`` presets through the runner, on the built-in
   synthetic data;
3. paper: every method's paper architecture with random weights (mechanics mode) at the
   preset's resolution and batch size: a few training steps and one test batch, with train and
   test images/s and the peak GPU memory, per k for class-aware methods (``num_classes``);
   training img/s leaves out the first (warm-up) step, and for memory-bank baselines it is the
   feature collection (the bank is built after the timed steps);
4. ddp: one runner cell on every visible GPU (``strategy: ddp``), skipped with fewer than 2.

On CUDA the results go to ``benchmarks/results/gpu_check.{json,md}``. Without CUDA, or with
``--dry-run``, the same steps run briefly on the CPU (contract of the chosen methods, a 1-epoch
sweep, each paper architecture at a reduced resolution for 1 step, DDP skipped) and the results
go to ``runs/gpu_check_dry/``, never to ``benchmarks/results``. Exit code 1 if a step failed.

    python -m benchmarks.perf.gpu_check --budget-s 600                 # on a GPU machine
    python -m benchmarks.perf.gpu_check --dry-run --methods naive mddnet
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.perf import common
from benchmarks.perf.results_file import REPO, RESULTS, write_results

CONTRACT = "tests/methods/test_contract.py"
PASSED, FAILED = "passed", "failed"
SKIPPED_BUDGET = "skipped: budget"
METHOD_COLUMNS = ("method", "k", "image_size", "train_img_s", "test_img_s", "peak_gpu_MiB")

# the dry run's reduced paper architectures: the smallest inputs each allows (ViT-B/14 inputs
# and crops are multiples of 14; GLAD's VAE works at autoencoder.size, its ADS features at
# feature_size) and fewer DDIM steps for GLAD; every other method: data.image_size 64
REDUCED: dict[str, dict[str, Any]] = {
    "dpdiff_ad": {"data.image_size": 56, "backbone.timm_kwargs": {"img_size": 56}},
    "glad": {
        "data.image_size": 64,
        "autoencoder.size": 64,
        "scoring.feature_size": 64,
        "sampler.steps": 3,
    },
    "anomalib.dinomaly": {"data.image_size": 64, "crop_size": 56},
    "anomalib.inp_former": {"data.image_size": 56, "crop_size": 56},
}
REDUCED_DEFAULT = {"data.image_size": 64}


@dataclass(frozen=True)
class Mode:
    """What a run does: the GPU check, or its short dry run on the CPU."""

    dry: bool
    train_steps: int  # training steps per paper architecture (the first is not timed if > 1)
    batch_size: int | None  # None: each paper preset's data.batch_size
    ks: tuple[int, ...]  # k of the class-aware methods
    epochs: int  # of the tiny sweep
    estimates: dict[str, float] = field(default_factory=dict)  # seconds a step needs at least

    @property
    def device(self) -> str:
        """The torch device (and Lightning accelerator) name."""
        return "cpu" if self.dry else "cuda"

    def estimate(self, step: str) -> float:
        """Seconds ``step`` (a step name or ``paper:<method>``) is expected to need at least."""
        return self.estimates.get(step, self.estimates.get(step.split(":")[0], 0.0))


# rough lower bounds; a step starts only if this much of the budget is left
GPU_ESTIMATES = {"contract": 90.0, "sweep": 60.0, "paper": 20.0, "paper:glad": 60.0, "ddp": 60.0}
DRY_ESTIMATES = {"contract": 20.0, "sweep": 15.0, "paper": 5.0, "paper:glad": 20.0, "ddp": 30.0}


class Budget:
    """The wall-clock budget of the whole check."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the check started."""
        return time.perf_counter() - self.started

    def left(self) -> float:
        """Seconds left (negative once overrun)."""
        return self.seconds - self.elapsed()


# -- running a step --------------------------------------------------------------------------
def run_step(
    name: str, budget: Budget, estimate: float, body: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``body`` if ``estimate`` seconds are left, recording its status and duration.

    ``body`` returns details for the record; it may set ``status`` itself (a skip with its
    reason). An exception fails the step with its message; the check goes on.
    """
    record: dict[str, Any] = {"step": name}
    if budget.left() < estimate:
        return {
            **record,
            "status": SKIPPED_BUDGET,
            "seconds": 0.0,
            "reason": f"{budget.left():.0f} s left, needs about {estimate:.0f} s",
        }
    started = time.perf_counter()
    try:
        record.update({"status": PASSED, **body()})
    except Exception as error:  # a failing step is recorded and the check goes on
        record.update(
            status=FAILED,
            error=relative(f"{type(error).__name__}: {error}"),
            traceback=relative(traceback.format_exc(limit=-4)),
        )
    record["seconds"] = round(time.perf_counter() - started, 2)
    print(
        f"[{budget.elapsed():6.0f} s] {name}: {record['status']}"
        + (f" - {record['error']}" if "error" in record else ""),
        flush=True,
    )
    return record


def relative(text: str) -> str:
    """``text`` with the repository's paths relative to it (no machine paths in results)."""
    return text.replace(f"{REPO}{os.sep}", "")


# -- step 1: the contract ----------------------------------------------------------------------
def contract_targets(methods: list[str] | None) -> list[str]:
    """The whole contract file, or the contract tests of ``methods``."""
    if methods is None:
        return [CONTRACT]
    return [
        f"{CONTRACT}::{test}[{name}]"
        for name in methods
        for test in ("test_method_contract", "test_unknown_override_is_an_error")
    ]


def contract(mode: Mode, methods: list[str] | None, work: Path, timeout: float) -> dict[str, Any]:
    """The contract tests in a pytest subprocess on ``mode.device``."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--basetemp",
        str(work / "pytest"),
        *contract_targets(methods),
    ]
    env = {**os.environ, "ADBENCH_TEST_DEVICE": mode.device}
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(timeout, 1.0),
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise TimeoutError(f"stopped after {timeout:.0f} s, the budget left") from error
    lines = done.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else ""
    if done.returncode != 0:
        raise RuntimeError(
            f"pytest exit code {done.returncode}: {summary}\n"
            + "\n".join(lines[-25:])
            + done.stderr[-2000:]
        )
    return {"device": mode.device, "tests": " ".join(contract_targets(methods)), "summary": summary}


# -- steps 2 and 4: runner sweeps ------------------------------------------------------------
def run_cells(sweep: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run ``sweep`` from scratch into ``out``; any failed cell fails the step."""
    from adbench.runner import run_sweep

    shutil.rmtree(out, ignore_errors=True)  # a re-run must run the cells, not find them done
    report = run_sweep(sweep, out, progress=False, report=False)
    summary = report.summary().replace(str(out), out.name)  # no machine paths in the results
    if report.failed or len(report.statuses) < len(report.cells):
        raise RuntimeError(summary)
    return {
        "trainer": sweep["trainer"],
        "summary": summary,
        "cells": [
            {"method": c.label, "k": c.k, "status": report.statuses[c.id]} for c in report.cells
        ],
    }


def sweep_step(mode: Mode, methods: list[str], work: Path) -> dict[str, Any]:
    """Step 2: the tiny presets of ``methods`` (naive if none has one), through the runner."""
    tiny = common.with_preset("tiny", methods) or ["naive"]
    trainer = {"accelerator": "cpu" if mode.dry else "gpu", "devices": 1, "max_epochs": mode.epochs}
    sweep = common.tiny_sweep("gpu_check", tiny, work / "data", [2], trainer)
    return run_cells(sweep, work / "sweep")


def visible_gpus(mode: Mode) -> int:
    """GPUs the check may use (none in a dry run)."""
    return 0 if mode.dry else torch.cuda.device_count()


def ddp_step(mode: Mode, method: str, work: Path) -> dict[str, Any]:
    """Step 4: one cell of ``method``'s tiny preset on every visible GPU (skipped below 2)."""
    gpus = visible_gpus(mode)
    if gpus < 2:
        reason = "dry run on the CPU" if mode.dry else f"{gpus} GPU visible"
        return {"status": "skipped", "reason": f"{reason}: DDP needs at least 2 GPUs", "gpus": gpus}
    trainer = {"accelerator": "gpu", "devices": gpus, "strategy": "ddp", "max_epochs": mode.epochs}
    sweep = common.tiny_sweep("gpu_check", [method], work / "data", [2], trainer)
    return {"gpus": gpus, **run_cells(sweep, work / "ddp")}


# -- step 3: the paper architectures -----------------------------------------------------------
def class_aware(name: str) -> bool:
    """Whether the paper architecture of ``name`` is sized by the number of categories."""
    from adbench.config import num_classes_fields
    from adbench.registry import resolve_config

    return bool(num_classes_fields(resolve_config(name, "paper")))


def paper_overrides(mode: Mode, name: str) -> dict[str, Any]:
    """Overrides of ``name``'s paper preset: the dry run's reduced size, the batch size."""
    overrides = dict(REDUCED.get(name, REDUCED_DEFAULT)) if mode.dry else {}
    if mode.batch_size is not None:
        overrides["data.batch_size"] = mode.batch_size
    return overrides


def measure_paper(mode: Mode, name: str, k: int | None) -> dict[str, Any]:
    """Build ``name``'s paper architecture with random weights, train ``mode.train_steps``
    steps and score one test batch (after one warm-up batch on the GPU) through Lightning."""
    import adbench

    cuda = mode.device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random_weights=True.*")
        method = adbench.create(
            name, "paper", random_weights=True, seed=0, num_classes=k, **paper_overrides(mode, name)
        )
    size, batch = method.config.data.image_size, method.config.data.batch_size
    data = common.random_datamodule(k or 1, size, batch, mode.train_steps, 1 + cuda)
    options = {"precision": "32-true"} if mode.dry else {}  # on the GPU: the preset's
    timed = common.timed_fit(method, data, mode.train_steps, mode.device, predict=True, **options)
    train = timed.train[1:] if len(timed.train) > 1 else timed.train  # the first step warms up
    test = timed.test[1:] if cuda else timed.test
    row = {
        "image_size": size,
        "batch_size": batch,
        "train_steps": len(timed.train),
        "precision": str(timed.trainer.precision),
        "params_M": round(common.parameters_M(method), 2),
        "train_img_s": round(batch * len(train) / sum(train), 2),
        "test_img_s": round(batch * len(test) / sum(test), 2),
        "peak_gpu_MiB": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
    }
    del method, timed
    gc.collect()
    return row


def paper_step(mode: Mode, methods: list[str], budget: Budget) -> dict[str, Any]:
    """Step 3: every (method, k) measured in turn; one failing does not stop the others."""
    rows = []
    for name in methods:
        try:
            ks: list[int | None] = list(mode.ks) if class_aware(name) else [None]
        except Exception:  # an unknown method: measure_paper records the error
            ks = [None]
        for k in ks:
            label = name if k is None else f"{name} (k={k})"
            record = run_step(
                f"paper: {label}",
                budget,
                mode.estimate(f"paper:{name}"),
                lambda name=name, k=k: measure_paper(mode, name, k),
            )
            rows.append({"method": name, "k": k, **record})
    failed = [row["step"].removeprefix("paper: ") for row in rows if row["status"] == FAILED]
    if failed:
        return {"rows": rows, "status": FAILED, "error": f"failed: {', '.join(failed)}"}
    counts = Counter(row["status"] for row in rows)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    if set(counts) == {SKIPPED_BUDGET}:
        return {"rows": rows, "status": SKIPPED_BUDGET, "reason": summary}
    return {"rows": rows, "summary": summary}


# -- the report ----------------------------------------------------------------------------------
def environment(mode: Mode) -> dict[str, Any]:
    """Device name, torch and CUDA versions."""
    from adbench.provenance import environment as captured

    env = captured()
    return {
        "mode": "dry run (CPU)" if mode.dry else "GPU check",
        "device": "cpu" if mode.dry else env["gpus"][0],
        "gpus": len(env["gpus"]),
        "torch": torch.__version__,
        "cuda": env["cuda"],
        "cpu_threads": torch.get_num_threads(),
    }


def markdown(data: dict[str, Any]) -> str:
    """The steps table and the paper-architecture table."""
    env = data["environment"]
    lines = [
        f"GPU check, {env['mode']}: {env['device']}, torch {env['torch']}, CUDA "
        f"{env['cuda']}; budget {data['budget_s']:.0f} s, took {data['elapsed_s']:.0f} s.",
        "",
        "| step | status | seconds | detail |",
        "|---|---|---:|---|",
    ]
    for step in data["steps"]:
        detail = step.get("error") or step.get("reason") or step.get("summary") or ""
        detail = detail.splitlines()[0] if detail else ""
        lines.append(
            f"| {step['step']} | {step['status']} | {step['seconds']:.1f} | "
            f"{detail.replace('|', '/')} |"
        )
    lines += [
        "",
        "| method | k | resolution | train img/s | test img/s | peak memory MiB | status |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in data["methods"]:
        cells = ["-" if row.get(key) is None else str(row[key]) for key in METHOD_COLUMNS]
        status = row["status"] + (f": {row['error'].splitlines()[0]}" if "error" in row else "")
        lines.append("| " + " | ".join([*cells, status.replace("|", "/")]) + " |")
    return "\n".join(lines) + "\n"


# -- the command ---------------------------------------------------------------------------------
def check(
    mode: Mode, methods: list[str] | None, budget: Budget, work: Path, ddp_method: str
) -> dict[str, Any]:
    """Run the four steps in order and return the results."""
    import adbench

    names = methods or adbench.list_methods()
    steps = [
        run_step(
            "contract",
            budget,
            mode.estimate("contract"),
            lambda: contract(mode, methods, work, budget.left()),
        )
    ]
    steps.append(
        run_step("sweep", budget, mode.estimate("sweep"), lambda: sweep_step(mode, names, work))
    )
    # each paper measurement checks the budget itself; a DDP step with under 2 GPUs runs nothing
    paper = run_step("paper", budget, -math.inf, lambda: paper_step(mode, names, budget))
    rows = paper.pop("rows", [])
    steps.append(paper)
    ddp = mode.estimate("ddp") if visible_gpus(mode) >= 2 else -math.inf
    steps.append(run_step("ddp", budget, ddp, lambda: ddp_step(mode, ddp_method, work)))
    return {
        "environment": environment(mode),
        "budget_s": budget.seconds,
        "elapsed_s": round(budget.elapsed(), 1),
        "steps": steps,
        "methods": rows,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--budget-s",
        type=float,
        default=600.0,
        help="wall-clock budget; a step that would not fit is skipped (default: 600)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="the short CPU run of every step (the default without CUDA)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        help="restrict the contract, the sweep and the paper step to these "
        "methods (default: every registered method)",
    )
    parser.add_argument(
        "--k",
        nargs="+",
        type=int,
        default=[1, 15, 160],
        help="category counts for class-aware paper architectures (default: 1 15 160)",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        help="training steps per paper architecture (default: 3; dry run 1)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="paper-architecture batch size (default: the preset's; dry run 2)",
    )
    parser.add_argument(
        "--ddp-method",
        default="dpdiff_ad",
        help="method whose tiny preset the DDP cell runs (default: dpdiff_ad)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder of gpu_check.json and .md (default: benchmarks/results; "
        "dry run: runs/gpu_check_dry)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="scratch folder for data and run directories (default: "
        "runs/gpu_check, dry run: runs/gpu_check_dry/work)",
    )
    return parser.parse_args(argv)


def make_mode(args: argparse.Namespace, cuda: bool) -> Mode:
    """The GPU check, or the dry run (asked for, or no CUDA)."""
    if args.dry_run or not cuda:
        return Mode(
            True, args.train_steps or 1, args.batch_size or 2, tuple(args.k), 1, DRY_ESTIMATES
        )
    return Mode(False, args.train_steps or 3, args.batch_size, tuple(args.k), 2, GPU_ESTIMATES)


def main(argv: list[str] | None = None) -> int:
    """Run the check, print and write the results; 1 if a step failed."""
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    mode = make_mode(args, torch.cuda.is_available())
    runs = REPO / "runs"
    out = (args.out or (runs / "gpu_check_dry" if mode.dry else RESULTS)).resolve()
    if mode.dry and out.is_relative_to(RESULTS.resolve()):
        sys.exit(f"a dry run does not write to {RESULTS}: choose another --out")
    if mode.dry and not args.dry_run:
        print("no CUDA device: dry run on the CPU", flush=True)
    common.quiet()
    work = (args.work or (out / "work" if mode.dry else runs / "gpu_check")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = check(mode, args.methods, budget, work, args.ddp_method)
    text = markdown(data)
    print("\n" + text)
    write_results(out / "gpu_check", data, text)
    print(f"wrote {out / 'gpu_check'}.json and .md")
    return int(any(step["status"] == FAILED for step in data["steps"]))


if __name__ == "__main__":
    sys.exit(main())
