"""For the methods' learning tests: a loss on fixed inputs at both ends of training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch


class FixedBatchLoss(L.Callback):
    """``measure(method)`` (a loss on one fixed batch with fixed draws), without gradients, after
    the first optimiser step (a method's lazy initialisation has run by then) and at the end of
    training; ``values`` holds the two results."""

    def __init__(self, measure: Callable[[Any], Any]) -> None:
        self.measure = measure
        self.values: list[Any] = []

    def _record(self, method: L.LightningModule) -> None:
        with torch.no_grad():
            self.values.append(self.measure(method))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1 and not self.values:
            self._record(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._record(pl_module)
