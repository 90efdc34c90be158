"""DPDiff-AD cost against the number of categories k: parameters per part, prototype-bank memory,
train / inference images/s, peak memory, and how the k categories share the prototypes.

DPDiff-AD's banks have a fixed size (K_L local, K_G global prototypes) whatever k is, so its
parameters, memory and time per image must stay flat as k grows; this script measures that on
images of k real categories of the built-in synthetic dataset (the banks are initialised by
k-means on them; the table shows how many prototypes are in use and how many categories each
serves, i.e. how a fixed bank is shared as k grows). The generic
``benchmarks/perf/methods.py`` gives the whole-model figures of every method on random images.

    python -m benchmarks.perf.methods_dpdiff_ad --k 1 15 60 160
    python -m benchmarks.perf.methods_dpdiff_ad --presets paper --device cuda --precision bf16 \\
        --paper-weights pretrained --k 1 15 60 160
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.perf import common

PARTS = ("extractor", "local", "glob", "denoiser", "ema_denoiser")


def _category_images(k: int, size: int, per_category: int, root: Path) -> Any:
    """``per_category`` normal training images of each of k synthetic categories.

    Returns:
        images (k n, 3, S, S) and their category ids (k n,).
    """
    from adbench.data import AnomalyDataset, load_index, make_synthetic

    make_synthetic(root, n_categories=k, seed=0, image_size=size, n_train=per_category, n_test=2)
    index = load_index("synthetic", root)
    frame = index.frame[index.frame["split"] == "train"]
    data = AnomalyDataset(frame, index.categories, size)
    samples = [data[i] for i in range(len(data))]
    return (
        torch.stack([sample.image for sample in samples]),
        torch.tensor([sample.category for sample in samples]),
    )


def _sharing(nearest: Any, category: Any) -> tuple[int, float]:
    """Prototypes that are nearest to something, and the mean number of categories each serves."""
    pairs = (nearest.flatten() * (int(category.max()) + 1) + category.flatten()).unique()
    used = (pairs // (int(category.max()) + 1)).unique().numel()
    return used, pairs.numel() / used


def measure(
    preset: str,
    k: int,
    batch_size: int | None,
    steps: int,
    device: str,
    precision: str,
    weights: str,
    root: str,
    settings: list[str],
) -> dict[str, Any]:
    """One (preset, k) measurement; run in a fresh process so peak memory is its own.

    Nothing in DPDiff-AD depends on k (the banks do not grow per class), so ``k`` changes only
    the data the method is initialised and measured on.
    """
    import adbench
    from adbench.config import parse_set

    batch_size = batch_size or (8 if preset == "tiny" else 16 if device == "cuda" else 2)
    torch.manual_seed(0)
    overrides = {"backbone.weights": weights} if preset == "paper" else {}
    method = adbench.create("dpdiff_ad", preset, **overrides, **parse_set(settings)).to(device)
    model = method.model
    size = method.config.data.image_size
    per_category = max(1, math.ceil(2 * batch_size / k))
    pool, category = _category_images(k, size, per_category, Path(root) / f"synthetic_{size}_{k}")
    pool, category = pool.to(device), category.to(device)

    with torch.no_grad():  # k-means initialisation on the k categories' tokens
        samples = [
            model.initialization_sample(chunk, method.config.init.max_tokens)
            for chunk in pool.split(batch_size)
        ]
        model.initialize(
            torch.cat([s[0] for s in samples]),
            torch.cat([s[1] for s in samples]),
            torch.Generator().manual_seed(0),
        )
        tokens = torch.cat([model.extractor(chunk)[0] for chunk in pool.split(batch_size)])
        nearest_local = model.local(tokens).index[..., 0]  # (images, N)
        nearest_global = model.glob.similarity(model.glob.descriptor(tokens)).argmax(1)
    sharing = {
        "local": _sharing(nearest_local, category[:, None].expand_as(nearest_local)),
        "global": _sharing(nearest_global, category),
    }

    images = pool[torch.randperm(len(pool))[:batch_size]]  # a batch mixing the categories
    optimizer = torch.optim.AdamW(method.parameter_groups(), lr=method.config.optim.lr)
    train_step = common.training_step(
        method, common.normal_batch(images), optimizer, device, precision, after=model.update_ema
    )
    infer = common.inference_step(method, images, device, precision)

    speed = common.train_and_infer_speed(method, train_step, infer, steps, device, batch_size)
    bank_bytes = sum(
        t.numel() * t.element_size()
        for t in (*model.local.parameters(), *model.local.buffers(), *model.glob.parameters())
    )
    return {
        "preset": preset,
        "k": k,
        "image_size": size,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        **{f"{part}_M": common.parameters_M(getattr(model, part)) for part in PARTS},
        "trainable_M": common.parameters_M(method, trainable=True),
        "bank_MB": bank_bytes / 2**20,
        "local_in_use": f"{sharing['local'][0]}/{model.local.config.num}",
        "classes_per_local": sharing["local"][1],
        "global_in_use": f"{sharing['global'][0]}/{model.glob.weight.shape[0]}",
        "classes_per_global": sharing["global"][1],
        **speed,
        **common.peak_memory(device),
    }


def main() -> None:
    parser = common.cost_parser(
        __doc__.split("\n")[0],
        "methods_dpdiff_ad",
        ["tiny"],
        "default: 8 for tiny, 2 for paper on CPU, 16 on GPU",
    )
    parser.add_argument(
        "--paper-weights",
        default="none",
        help="backbone.weights for the paper preset ('pretrained' needs the hub "
        "cache; 'none' times the architecture)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. init.kmeans_iters=3 for a quick CPU run",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder for the generated synthetic images (default: a temp dir)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.data or Path(tmp)).resolve()
        common.measure_cost(
            measure,
            args,
            "DPDiff-AD cost vs k",
            weights=args.paper_weights,
            root=str(root),
            settings=args.set,
        )


if __name__ == "__main__":
    main()
