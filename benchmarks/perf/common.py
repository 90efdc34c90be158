"""What the performance benchmarks share: random batches, timed training and inference, one
fresh process per measurement, tiny sweeps and the command line of the cost-vs-k scripts (the
results files: `benchmarks.perf.results_file`)."""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from adbench.batch import Batch
from adbench.errors import ConfigError
from benchmarks.perf.results_file import REPO, RESULTS, write_tables

# what a measurement's fresh process runs: ``python -c CHILD module function kwargs-json``
CHILD = "from benchmarks.perf.common import child_main; child_main()"


# -- random data ----------------------------------------------------------------------------------
def normal_batch(images: Tensor, category: Tensor | None = None, start: int = 0) -> Batch:
    """A batch of normal images: label 0, empty masks, ``index`` counting from ``start``.

    Args:
        images: (B, 3, H, W) in [0, 1].
        category: (B,) int64 category ids (default: all 0).
        start: index of the first image.
    """
    n, _, height, width = images.shape
    device = images.device
    zeros = torch.zeros(n, dtype=torch.int64, device=device)
    return Batch(
        images,
        torch.zeros(n, 1, height, width, device=device),
        zeros,
        zeros if category is None else category,
        torch.arange(start, start + n, device=device),
    )


def random_batch(
    batch_size: int,
    image_size: int,
    k: int,
    *,
    start: int = 0,
    generator: torch.Generator | None = None,
) -> Batch:
    """Random normal images in [0, 1] on the CPU whose categories cycle over ``k``.

    Returns:
        a `Batch`: image (B, 3, S, S) from ``generator`` (default: the global generator),
        category ``(start + i) % k`` and index ``start + i`` of image i.
    """
    images = torch.rand(batch_size, 3, image_size, image_size, generator=generator)
    return normal_batch(images, torch.arange(start, start + batch_size) % k, start)


def random_batches(
    count: int,
    batch_size: int,
    image_size: int,
    k: int,
    *,
    start: int = 0,
    generator: torch.Generator | None = None,
) -> list[Batch]:
    """``count`` consecutive `random_batch` es (their indices follow on from ``start``)."""
    return [
        random_batch(batch_size, image_size, k, start=start + i * batch_size, generator=generator)
        for i in range(count)
    ]


def random_datamodule(
    k: int, image_size: int, batch_size: int, train_batches: int, test_batches: int
) -> Any:
    """A datamodule of random images with k named categories: ``train_batches`` training and
    ``test_batches`` predict batches, each seeded by its position (the same on every call)."""
    import lightning as L
    from torch.utils.data import DataLoader

    def loader(count: int, offset: int) -> DataLoader:
        generator = torch.Generator().manual_seed(offset)
        batches = random_batches(
            count, batch_size, image_size, k, start=offset * batch_size, generator=generator
        )
        return DataLoader(batches, batch_size=None)

    class RandomImages(L.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.categories = [f"category{i}" for i in range(k)]

        def train_dataloader(self) -> DataLoader:
            return loader(train_batches, 0)

        def predict_dataloader(self) -> DataLoader:
            return loader(test_batches, train_batches)

    return RandomImages()


# -- methods, sweeps and Lightning's messages ----------------------------------------------------
def tiny_sweep(
    name: str,
    methods: Iterable[str],
    root: Path,
    categories: list[int],
    trainer: dict[str, Any],
    **options: Any,
) -> dict[str, Any]:
    """A sweep of ``methods``' tiny presets with one local launcher on the built-in synthetic
    data (32 px, 8 training and 8 test images per category, generated in ``root``); ``options``
    add or replace sweep keys (``seeds``, ``launcher``, ``plugins``, ...)."""
    return {
        "name": name,
        "methods": [{"name": method, "preset": "tiny"} for method in methods],
        "datasets": [
            {
                "format": "synthetic",
                "root": str(root),
                "synthetic": {
                    "n_categories": max(categories),
                    "image_size": 32,
                    "n_train": 8,
                    "n_test": 8,
                    "seed": 0,
                },
            }
        ],
        "categories": categories,
        "seeds": [0],
        "image_size": 32,
        "trainer": trainer,
        "launcher": {"name": "local"},
        **options,
    }


def with_preset(preset: str, names: Iterable[str] | None = None) -> list[str]:
    """The registered methods among ``names`` (default: all) that have ``preset``."""
    from adbench.registry import get_method_spec, list_methods

    registered = list_methods()
    return [
        name
        for name in (registered if names is None else names)
        if name in registered and preset in get_method_spec(name).presets
    ]


def quiet() -> None:
    """Keep Lightning's per-fit messages (accelerator lines, budget reached, the by-design
    warnings of methods without an optimiser or a validation split) out of the output."""
    import logging
    import warnings

    from adbench.quiet import quiet_third_party

    quiet_third_party()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        r"The `srun` command",
        r"You defined a `validation_step`",
        r"`LightningModule.configure_optimizers` returned `None`",
        r"`training_step` returned `None`",
    ):
        warnings.filterwarnings("ignore", message=message)


# -- timing ---------------------------------------------------------------------------------------
def synchronize(device: str | torch.device) -> None:
    """Wait for the GPU's queued work (nothing on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn: Callable[[], Any], repeats: int, device: str | torch.device) -> float:
    """Seconds per call of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def autocast(device: str | torch.device, precision: str) -> torch.autocast:
    """Autocast for ``precision``: bf16 or fp16 (also as Lightning's ``bf16-mixed`` /
    ``16-mixed``); anything else runs in float32."""
    dtype = (
        torch.bfloat16
        if "bf16" in precision
        else torch.float16
        if precision in ("fp16", "16", "16-mixed")
        else None
    )
    return torch.autocast(
        torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None
    )


def training_step(
    method: Any,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    device: str,
    precision: str,
    after: Callable[[int], None] | None = None,
) -> Callable[[], None]:
    """One optimiser step of ``method`` on ``batch`` without a Trainer, as a function to time.

    Autocast follows ``precision`` (`autocast`), fp16 scales the loss, the method's ``log``
    calls are dropped, and ``after(n)`` runs after the n-th step (e.g. an EMA update).
    """
    cast = autocast(device, precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    method.log = method.log_dict = lambda *args, **kwargs: None  # no Trainer to log to
    done = itertools.count(1)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with cast:
            loss = method.training_step(batch, 0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if after is not None:
            after(next(done))

    return step


def inference_step(
    method: Any, images: Tensor, device: str, precision: str, *args: Any
) -> Callable[[], None]:
    """One forward pass of ``method`` on ``images`` (B, 3, H, W) (and ``args``) without
    gradients, autocast as `autocast`, as a function to time."""
    cast = autocast(device, precision)

    def infer() -> None:
        with torch.no_grad(), cast:
            method(images, *args)

    return infer


def train_and_infer_speed(
    method: Any,
    train_step: Callable[[], None],
    infer: Callable[[], None],
    steps: int,
    device: str,
    batch_size: int,
) -> dict[str, float]:
    """``train_img_s`` and ``infer_img_s`` of ``batch_size`` images a call: ``steps`` training
    steps in train mode, then ``steps`` inference calls in eval mode, each after a warm-up call
    (`seconds_per_call`); the peak GPU memory is reset first."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    method.train()
    train_s = seconds_per_call(train_step, steps, device)
    method.eval()
    infer_s = seconds_per_call(infer, steps, device)
    return {"train_img_s": batch_size / train_s, "infer_img_s": batch_size / infer_s}


def step_timer() -> Any:
    """A Lightning callback keeping the seconds of every training and predict batch (lists
    ``train`` and ``test``), synchronised with the GPU."""
    import lightning as L

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.train: list[float] = []
            self.test: list[float] = []
            self.started = 0.0

        def start(self, trainer: L.Trainer) -> None:
            synchronize(trainer.strategy.root_device)
            self.started = time.perf_counter()

        def stop(self, trainer: L.Trainer, into: list[float]) -> None:
            synchronize(trainer.strategy.root_device)
            into.append(time.perf_counter() - self.started)

        def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            self.start(trainer)

        def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
            self.stop(trainer, self.train)

        def on_predict_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            self.start(trainer)

        def on_predict_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
            self.stop(trainer, self.test)

    return StepTimer()


@dataclass
class Timings:
    """What `timed_fit` measured: the Trainer, the whole fit's seconds and each batch's."""

    trainer: Any
    fit_s: float
    train: list[float]
    test: list[float]


def timed_fit(
    method: Any,
    datamodule: Any,
    steps: int,
    device: str,
    *,
    predict: bool = False,
    seed: int = 0,
    **trainer_options: Any,
) -> Timings:
    """Train ``method`` for ``steps`` steps (one epoch at most) through `adbench.fit` on one
    ``device``, then, if ``predict``, score the datamodule's predict batches with the same
    Trainer. ``trainer_options`` go to the Trainer (e.g. ``precision``)."""
    import adbench

    timer = step_timer()
    start = time.perf_counter()
    trainer = adbench.fit(
        method,
        datamodule,
        seed=seed,
        max_steps=steps,
        max_epochs=1,
        accelerator=device,
        devices=1,
        enable_progress_bar=False,
        callbacks=[timer],
        limit_val_batches=0,
        **trainer_options,
    )
    fit_s = time.perf_counter() - start
    if predict:
        trainer.predict(method, datamodule=datamodule, return_predictions=False)
    return Timings(trainer, fit_s, timer.train, timer.test)


def parameters_M(module: torch.nn.Module, trainable: bool = False) -> float:
    """Millions of parameters of ``module`` (only those that train if ``trainable``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable) / 1e6


def peak_memory(device: str | torch.device) -> dict[str, float | None]:
    """``peak_rss_GB`` of this process and, on CUDA, ``peak_gpu_GB`` allocated by torch."""
    cuda = torch.device(device).type == "cuda"
    return {
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_GB": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


# -- one fresh process per measurement ------------------------------------------------------------
def grid(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest:
    ``grid(preset=["tiny"], k=[1, 15])`` -> ``[{"preset": "tiny", "k": 1}, {..., "k": 15}]``."""
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def run_isolated(
    function: Callable[..., dict[str, Any]], env: dict[str, str] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """``function(**kwargs)`` in a fresh Python process, so its peak memory is its own.

    ``function`` is a module-level function of an importable module returning a JSON-safe dict;
    ``kwargs`` must be JSON-safe too; ``env`` replaces the child's environment (the default is
    this process's).

    Returns:
        the function's dict, or ``{"error": <the last line the child wrote to stderr>}`` if
        it failed.
    """
    module = function.__module__
    if module == "__main__":  # the script itself: its importable name
        spec = sys.modules["__main__"].__spec__
        if spec is None:
            raise ConfigError(
                f"{sys.argv[0]} runs measurements in fresh processes: run it as "
                "a module from the repository root, python -m benchmarks.perf.NAME"
            )
        module = spec.name
    done = subprocess.run(
        [sys.executable, "-c", CHILD, module, function.__name__, json.dumps(kwargs)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        return {"error": lines[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main() -> None:
    """The fresh process of `run_isolated`: call the function named on the command line and
    print its result as the last line of JSON."""
    module, name, kwargs = sys.argv[1:]
    row = getattr(importlib.import_module(module), name)(**json.loads(kwargs))
    print(json.dumps(row))


def measure_each(
    function: Callable[..., dict[str, Any]],
    cases: Iterable[dict[str, Any]],
    env: dict[str, str] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """`run_isolated` ``function(**case, **options)`` for each case, printing each row.

    A failed case gives ``{**case, "error": ...}`` and the others still run.
    """
    rows = []
    for case in cases:
        row = run_isolated(function, env, **case, **options)
        rows.append({**case, **row} if "error" in row else row)
        print(rows[-1], flush=True)
    return rows


# -- the command line of the cost-vs-k scripts ----------------------------------------------------
def cost_parser(
    description: str, out: str, presets: list[str], batch_help: str
) -> argparse.ArgumentParser:
    """``--presets --k --batch-size --steps --device --precision --out`` of a method's cost-vs-k
    script (``out``: its results' name in ``benchmarks/results``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--presets", nargs="+", default=presets)
    parser.add_argument("--k", nargs="+", type=int, default=[1, 15, 60, 160])
    parser.add_argument("--batch-size", type=int, default=None, help=batch_help)
    parser.add_argument("--steps", type=int, default=3, help="timed repeats after one warm-up")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--out", type=Path, default=RESULTS / out)
    return parser


def measure_cost(
    measure: Callable[..., dict[str, Any]], args: argparse.Namespace, title: str, **options: Any
) -> None:
    """Measure each (preset, k) of ``args`` (`cost_parser`) in a fresh process, then print and
    write the table. ``measure`` takes preset, k, batch_size, steps, device, precision and
    ``options``."""
    rows = measure_each(
        measure,
        grid(preset=args.presets, k=args.k),
        batch_size=args.batch_size,
        steps=args.steps,
        device=args.device,
        precision=args.precision,
        **options,
    )
    write_tables(args.out, title, {"rows": rows})
