"""MDD-Net cost against the number of categories k: parameters per part, the class-aware memory's
read cost, and whole-model train / inference images/s with peak memory.

The memory holds k x M slots of D channels, so its parameters and its attention cost grow
linearly with k while the rest of the network does not. This script shows by how much, for the
tiny preset and for the paper architecture (WideResNet-50-2 at 256 px; by default in mechanics
mode, ``random_weights=True``, since the cost does not depend on the weights). The
generic ``benchmarks/perf/methods.py`` gives the same whole-model figures for every method.

    python -m benchmarks.perf.methods_mddnet --k 1 15 60 160
    python -m benchmarks.perf.methods_mddnet --presets paper --device cuda --precision bf16 --k 15
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.perf import common

PARTS = ("teacher", "bottleneck", "memory", "restoration", "identity")


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
    import adbench

    batch_size = batch_size or (4 if preset == "paper" and device == "cpu" else 16)
    torch.manual_seed(0)
    overrides = {"random_weights": True} if preset == "paper" and weights == "random" else {}
    method = adbench.create("mddnet", preset, **{"memory.num_classes": k, **overrides})
    method = method.to(device)
    model = method.model
    size = method.config.data.image_size
    batch = common.random_batch(batch_size, size, k).to(device)
    optimizer = torch.optim.Adam(
        [p for p in method.parameters() if p.requires_grad],
        lr=method.config.optim.lr,
        betas=method.config.optim.betas,
    )
    train_step = common.training_step(method, batch, optimizer, device, precision)
    infer = common.inference_step(method, batch.image, device, precision)
    cast = common.autocast(device, precision)

    # the memory read alone on the bottleneck embedding, forward + backward
    side = size // model.bottleneck.out_stride
    z = torch.randn(
        batch_size, model.memory.slots.shape[-1], side, side, device=device, requires_grad=True
    )

    def memory_read() -> None:
        with cast:
            read = model.memory(z)
        (read.readout.float().sum() + read.log_weights.float().mean()).backward()

    speed = common.train_and_infer_speed(method, train_step, infer, steps, device, batch_size)
    memory_s = common.seconds_per_call(memory_read, steps, device)
    return {
        "preset": preset,
        "k": k,
        "image_size": size,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        **{f"{part}_M": common.parameters_M(getattr(model, part)) for part in PARTS},
        "trainable_M": common.parameters_M(method, trainable=True),
        "slots": k * method.config.memory.slots,
        **speed,
        "memory_read_ms": 1e3 * memory_s,
        **common.peak_memory(device),
    }


def main() -> None:
    parser = common.cost_parser(
        __doc__.split("\n")[0],
        "methods_mddnet",
        ["tiny", "paper"],
        "default: 16 for tiny, 4 for paper on CPU, 16 on GPU",
    )
    parser.add_argument(
        "--paper-weights",
        default="random",
        choices=("random", "pretrained"),
        help="paper preset: 'random' times the architecture in mechanics mode "
        "(random_weights=True); 'pretrained' needs the weights in the hub "
        "cache",
    )
    args = parser.parse_args()
    common.measure_cost(measure, args, "MDD-Net cost vs k", weights=args.paper_weights)


if __name__ == "__main__":
    main()
