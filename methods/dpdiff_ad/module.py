"""DPDiff-AD as an adbench method (the Lightning system around `DPDiffModel`)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod

from .config import DPDiffADConfig
from .model import DPDiffModel


def stratified_indices(
    categories: Sequence[int], total: int, generator: torch.Generator | None = None
) -> list[int]:
    """A sample of dataset positions with every category in it (``init.sampling="stratified"``).

    Each category gets one image, and the other ``total - C`` places are shared in proportion to
    the categories' remaining sizes (largest remainder), drawn without replacement.

    Args:
        categories: the category of each dataset position.
        total: sample size; raised to the number of categories C, capped at the dataset size.
        generator: random source of the draws.

    Returns:
        the chosen positions, in random order.
    """
    groups: dict[int, list[int]] = {}
    for position, category in enumerate(categories):
        groups.setdefault(int(category), []).append(position)
    names = sorted(groups)
    total = min(max(total, len(names)), len(categories))
    rest = total - len(names)
    spare = [len(groups[name]) - 1 for name in names]
    shares = [rest * n / max(sum(spare), 1) for n in spare]
    quota = [1 + int(share) for share in shares]
    order = sorted(range(len(names)), key=lambda i: int(shares[i]) - shares[i])
    for i in order[: total - sum(quota)]:  # largest remainders first
        quota[i] += 1
    chosen = []
    for name, count in zip(names, quota, strict=True):
        members = torch.tensor(groups[name])
        chosen += members[torch.randperm(len(members), generator=generator)[:count]].tolist()
    return [chosen[i] for i in torch.randperm(len(chosen), generator=generator).tolist()]


def _load(dataset: Any, positions: list[int]) -> Tensor:
    """The images (B, 3, H, W) of dataset positions."""
    return Batch.collate([dataset[i] for i in positions]).image


class DPDiffAD(AnomalyMethod):
    """Dual prototype-conditioned feature diffusion (Feng et al., arXiv 2605.24402).

    Training never reads ``batch.category``: the banks and the denoiser see only images.
    """

    config: DPDiffADConfig

    def __init__(self, config: DPDiffADConfig) -> None:
        super().__init__(config)
        self.model = DPDiffModel(self.config)
        self.freeze(self.model.ema_denoiser)  # updated by EMA only, always in eval mode
        self._pending: tuple[Tensor, Tensor] | None = None
        self._ema_step = -1

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Score images (B, 3, H, W) in [0, 1].

        Each image's noise is seeded by the image and ``inference.seed``, so scores do not
        depend on batching.
        """
        raw = self.model.anomaly_map(images, self.config.inference.seed)
        return self.postprocess(raw, (images.shape[-2], images.shape[-1]))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """L = L_diff + w_loc L_loc + w_ot L_OT on a batch of normal images."""
        losses = self.model.training_losses(batch.image)
        self._pending = (losses.tokens, losses.nearest_index, losses.descriptors)
        size = len(batch)
        self.log("train/loss", losses.total, prog_bar=True, batch_size=size)
        self.log("train/diffusion", losses.diffusion, batch_size=size)
        self.log("train/local", losses.local, batch_size=size)
        self.log("train/ot", losses.ot, batch_size=size)
        return losses.total

    def on_train_start(self) -> None:
        """K-means initialisation of both banks (and feature statistics) on training tokens.

        Runs here rather than in ``on_fit_start`` because Lightning sets up the train dataloader
        between the two; a resumed run (banks already initialised) skips it.
        """
        if bool(self.model.initialized):
            return
        generator = torch.Generator().manual_seed(0)
        chunks = self._initialization_images(generator)
        per_batch = max(1, self.config.init.max_tokens // len(chunks))
        tokens, summaries = [], []
        for load in chunks:
            sample = self.model.initialization_sample(load().to(self.device), per_batch, generator)
            tokens.append(sample[0])
            summaries.append(sample[1])
        self.model.initialize(torch.cat(tokens), torch.cat(summaries), generator)

    def _initialization_images(self, generator: torch.Generator) -> list[Callable[[], Tensor]]:
        """The start-up sample as batches of images, each loaded when called.

        ``init.sampling`` picks them: stratified per category, or the loader's first batches.
        """
        init = self.config.init
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        categories = getattr(dataset, "category_ids", None)
        if init.sampling == "stratified" and categories is not None:
            size = getattr(loader, "batch_size", None) or self.config.data.batch_size
            chosen = stratified_indices(categories, init.batches * size, generator)
            return [
                functools.partial(_load, dataset, chosen[start : start + size])
                for start in range(0, len(chosen), size)
            ]
        batches = [batch.image for batch in itertools.islice(loader, init.batches)]
        return [functools.partial(lambda image: image, image) for image in batches]

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        """Bank updates (usage, EMA k-means, dead-prototype re-seeding) and the denoiser EMA."""
        if self._pending is None:
            return
        tokens, nearest, descriptors = self._pending
        self._pending = None
        self.model.glob.enqueue(descriptors)
        bank = self.model.local
        bank.track_usage(nearest)
        if self.config.local_prototypes.update == "ema":
            bank.ema_update(tokens, nearest)
        step = self.global_step
        if step == self._ema_step:  # once per optimiser step under gradient accumulation
            return
        self._ema_step = step
        self.model.update_ema(step)
        if step % self.config.local_prototypes.reseed_every == 0:
            reseeded = bank.reseed(tokens)
            self.log("train/reseeded", float(reseeded), batch_size=len(batch))

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups.

        The denoiser (and the feature adapter, if any) at ``optim.lr``; both prototype banks at
        ``prototype_lr``, no decay.
        """
        prototypes = [
            p for p in (self.model.local.weight, self.model.glob.weight) if p.requires_grad
        ]
        groups = [{"params": list(self.model.denoiser.parameters())}]
        if prototypes:  # none in the ablation without L_loc and L_OT
            groups.append(
                {"params": prototypes, "lr": self.config.prototype_lr, "weight_decay": 0.0}
            )
        if self.model.adapter is not None:
            groups.append({"params": list(self.model.adapter.parameters())})
        return groups
