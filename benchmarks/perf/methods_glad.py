"""GLAD cost: train and inference images/s, peak memory, parameters, the cost of each inference
stage, and the chosen stopping steps, for several numbers of categories k.

GLAD's networks are the same for every k (one denoiser for every category, no memory bank). Its
one per-category part is the tiny preset's stationarity statistics (``scoring.
stationary_threshold``): training sums each category's latents (k x C x h x w in float64, the
``stats_MB`` column) and scoring searches all positions for the stationary categories' images;
the benchmark names k categories, marks every other one stationary and times both. The rows for
k = 1, 15, 60, 160 show what grows with k. Inference cost depends on how
long samples keep adapting: while a sample adapts, every DDIM step also decodes two x0-estimates
and runs the feature extractor on them; the table splits the time of one UNet pass, one ADS check
and the final scoring.

``--paper-weights none`` times the paper architecture (SD v1.4 VAE + UNet, DINO ViT-B/8) with
random weights where the pretrained ones are not available; the prompt embedding is then random.

    python benchmarks/perf/methods_glad.py --k 1 15 60 160
    python benchmarks/perf/methods_glad.py --presets paper --device cuda --precision bf16 --k 15
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

# Stable Diffusion v1.4 architectures (the diffusers configs of the published weights)
SD_UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "cross_attention_dim": 768,
           "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2,
           "attention_head_dim": 8}
SD_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 512,
          "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
          "down_block_types": ("DownEncoderBlock2D",) * 4,
          "up_block_types": ("UpDecoderBlock2D",) * 4}


def random_paper_components() -> None:
    """Make the paper preset build SD-architecture networks with random weights (timing only)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from adbench.methods.glad import networks

    def fake_load(model_class: type, source: str, subfolder: str | None = None,
                  **kwargs: Any) -> Any:
        return {"unet": lambda: UNet2DConditionModel(**SD_UNET),
                "vae": lambda: AutoencoderKL(**SD_VAE)}[subfolder]()

    networks.load_diffusers_component = fake_load
    networks.encode_prompts = lambda weights, prompts: [torch.randn(1, 77, 768) for _ in prompts]


def build(k: int, preset: str = "tiny", **overrides: Any) -> Any:
    """GLAD of ``preset`` that sees ``k`` categories, every other one measured as stationary
    (as a Trainer's datamodule would name them)."""
    from adbench.registry import create

    method = create("glad", preset=preset, **overrides)
    names = [f"category_{i:03d}" for i in range(k)]
    method.datamodule_categories = lambda: names
    method.stationarity = {name: float(i % 2) for i, name in enumerate(names)}
    return method


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

    overrides: dict[str, Any] = {}
    if preset == "paper" and weights == "none":
        random_paper_components()
        overrides["features.weights"] = "none"
    torch.manual_seed(0)
    method = build(k, preset, **overrides).to(device)
    model = method.model
    size = method.config.data.image_size
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    optim = method.config.optim
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad],
                                  lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
    method.log = lambda *args, **kwargs: None  # no trainer attached: skip logging
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

    z0 = model.codec.encode(batch.image)
    t = torch.full((batch_size,), method.config.sampler.t_max, device=device)

    def unet_pass() -> None:
        with torch.no_grad(), autocast:
            model.denoiser(z0, t, guided=True)

    def ads_check() -> None:
        with torch.no_grad(), autocast:
            model.ads_discrepancy(z0, z0)

    names = method.datamodule_categories()
    categories = [names[i] for i in batch.category.tolist()]

    def infer() -> None:
        with torch.no_grad(), autocast:
            method(batch.image, categories)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    method.train()
    train_s = _timed(train_step, steps, device)
    method.eval()
    unet_s = _timed(unet_pass, steps, device)
    ads_s = _timed(ads_check, steps, device)
    method.reset_stop_steps()
    infer_s = _timed(infer, steps, device)
    histogram = method.stop_step_histogram()
    counts = sum(histogram.values())
    return {
        "preset": preset, "k": k, "image_size": size, "batch_size": batch_size,
        "device": device, "precision": precision,
        "params_M": sum(p.numel() for p in method.parameters()) / 1e6,
        "trainable_M": sum(p.numel() for p in method.parameters() if p.requires_grad) / 1e6,
        "train_img_s": batch_size / train_s,
        "infer_img_s": batch_size / infer_s,
        "unet_pass_ms": 1e3 * unet_s,
        "ads_check_ms": 1e3 * ads_s,
        "mean_stop_step": sum(t * c for t, c in histogram.items()) / max(counts, 1),
        "stop_steps": json.dumps(histogram),
        "stats_MB": sum(b.numel() * b.element_size()
                        for b in method.stationarity_stats.buffers()) / 2**20,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_GB": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--k", nargs="+", type=int, default=[1, 15, 60, 160])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 16 for tiny, 1 for paper on CPU, 8 on GPU")
    parser.add_argument("--steps", type=int, default=3, help="timed repeats after one warm-up")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--paper-weights", default="pretrained", choices=("pretrained", "none"),
                        help="'none' times the paper architecture with random weights")
    parser.add_argument("--out", type=Path, default=RESULTS / "methods_glad")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: PRESET:K in a subprocess
    args = parser.parse_args()
    if args.one:
        preset, k = args.one.rsplit(":", 1)
        default = 16 if preset == "tiny" else (1 if args.device == "cpu" else 8)
        row = measure(preset, int(k), args.batch_size or default, args.steps, args.device,
                      args.precision, args.paper_weights)
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
    header = (f"GLAD cost vs k, measured {date.today()} on "
              f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads), "
              f"torch {torch.__version__}, "
              f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}.")
    table = frame.to_markdown(index=False, floatfmt=".3g")
    print(f"\n{header}\n\n{table}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(out, {"header": header, "rows": rows}, f"{header}\n\n{table}")


if __name__ == "__main__":
    main()
