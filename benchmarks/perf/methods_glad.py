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

    python -m benchmarks.perf.methods_glad --k 1 15 60 160
    python -m benchmarks.perf.methods_glad --presets paper --device cuda --precision bf16 --k 15
"""

from __future__ import annotations

import json
from typing import Any

import torch

from benchmarks.perf import common

# Stable Diffusion v1.4 architectures (the diffusers configs of the published weights)
SD_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "cross_attention_dim": 768,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": 8,
}
SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "sample_size": 512,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}


def random_paper_components() -> None:
    """Make the paper preset build SD-architecture networks with random weights (timing only)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from adbench.methods.glad import networks

    def fake_load(
        model_class: type, source: str, subfolder: str | None = None, **kwargs: Any
    ) -> Any:
        return {
            "unet": lambda: UNet2DConditionModel(**SD_UNET),
            "vae": lambda: AutoencoderKL(**SD_VAE),
        }[subfolder]()

    networks.load_diffusers_component = fake_load
    networks.encode_prompts = lambda weights, prompts: [torch.randn(1, 77, 768) for _ in prompts]


def build(k: int, preset: str = "tiny", **overrides: Any) -> Any:
    """GLAD of ``preset`` that sees ``k`` categories, every other one measured as stationary
    (as a Trainer's datamodule would name them)."""
    import adbench

    method = adbench.create("glad", preset, **overrides)
    names = [f"category_{i:03d}" for i in range(k)]
    method.datamodule_categories = lambda: names
    method.stationarity = {name: float(i % 2) for i, name in enumerate(names)}
    return method


def measure(
    preset: str,
    k: int,
    batch_size: int | None,
    steps: int,
    device: str,
    precision: str,
    weights: str,
) -> dict[str, Any]:
    """One (preset, k) measurement; run in a fresh process so peak memory is its own."""
    batch_size = batch_size or (16 if preset == "tiny" else 1 if device == "cpu" else 8)
    overrides: dict[str, Any] = {}
    if preset == "paper" and weights == "none":
        random_paper_components()
        overrides["features.weights"] = "none"
    torch.manual_seed(0)
    method = build(k, preset, **overrides).to(device)
    model = method.model
    size = method.config.data.image_size
    optim = method.config.optim
    optimizer = torch.optim.AdamW(
        [p for p in method.parameters() if p.requires_grad],
        lr=optim.lr,
        betas=optim.betas,
        weight_decay=optim.weight_decay,
    )
    batch = common.random_batch(batch_size, size, k).to(device)
    train_step = common.training_step(method, batch, optimizer, device, precision)
    cast = common.autocast(device, precision)
    z0 = model.codec.encode(batch.image)
    t = torch.full((batch_size,), method.config.sampler.t_max, device=device)

    def unet_pass() -> None:
        with torch.no_grad(), cast:
            model.denoiser(z0, t, guided=True)

    def ads_check() -> None:
        with torch.no_grad(), cast:
            model.ads_discrepancy(z0, z0)

    names = method.datamodule_categories()
    infer = common.inference_step(
        method, batch.image, device, precision, [names[i] for i in batch.category.tolist()]
    )

    method.reset_stop_steps()  # only inference counts them
    speed = common.train_and_infer_speed(method, train_step, infer, steps, device, batch_size)
    unet_s = common.seconds_per_call(unet_pass, steps, device)
    ads_s = common.seconds_per_call(ads_check, steps, device)
    histogram = method.stop_step_histogram()
    counts = sum(histogram.values())
    return {
        "preset": preset,
        "k": k,
        "image_size": size,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "params_M": common.parameters_M(method),
        "trainable_M": common.parameters_M(method, trainable=True),
        **speed,
        "unet_pass_ms": 1e3 * unet_s,
        "ads_check_ms": 1e3 * ads_s,
        "mean_stop_step": sum(t * c for t, c in histogram.items()) / max(counts, 1),
        "stop_steps": json.dumps(histogram),
        "stats_MB": sum(b.numel() * b.element_size() for b in method.stationarity_stats.buffers())
        / 2**20,
        **common.peak_memory(device),
    }


def main() -> None:
    parser = common.cost_parser(
        __doc__.split("\n")[0],
        "methods_glad",
        ["tiny"],
        "default: 16 for tiny, 1 for paper on CPU, 8 on GPU",
    )
    parser.add_argument(
        "--paper-weights",
        default="pretrained",
        choices=("pretrained", "none"),
        help="'none' times the paper architecture with random weights",
    )
    args = parser.parse_args()
    common.measure_cost(measure, args, "GLAD cost vs k", weights=args.paper_weights)


if __name__ == "__main__":
    main()
