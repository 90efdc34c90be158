"""One progress display per sweep: the running cell's epoch and step inside the bar of cells.

Lightning's own progress bar is off in sweeps; `CellProgress` writes the cell's training epoch and
step, then its scoring batches, into a tqdm bar's postfix, e.g.
``cells: 25%|██▌  | 1/4 [00:05<00:15, glad | synthetic | k=2 | seed=0 | epoch 1/2, step 3/6]``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from tqdm import tqdm

from adbench.runner.schema import Cell

REFRESH_S = 0.5  # at most two redraws a second, whatever the step rate


def describe_cell(cell: Cell) -> str:
    """The cell as the progress bar names it: ``label | dataset | k=2 | seed=0``."""
    return f"{cell.label} | {cell.dataset} | k={cell.k} | seed={cell.seed}"


class CellProgress(Callback):
    """Shows the cell's progress after ``prefix`` in ``bar``'s postfix (on global rank 0 only).

    Args:
        bar: the tqdm bar to write into (the sweep's bar of cells, or a worker's own).
        prefix: what the postfix starts with (`describe_cell`, plus a failure count).
    """

    def __init__(self, bar: tqdm, prefix: str) -> None:
        self.bar, self.prefix = bar, prefix
        self._epochs = self._steps = ""
        self._shown = -math.inf

    def _show(self, trainer: Trainer, text: str, now: bool = False) -> None:
        if not trainer.is_global_zero or not (now or time.monotonic() - self._shown >= REFRESH_S):
            return
        self._shown = time.monotonic()
        self.bar.set_postfix_str(f"{self.prefix} | {text}")

    def _training(self, trainer: Trainer) -> str:
        return (
            f"epoch {trainer.current_epoch + 1}{self._epochs}, "
            f"step {trainer.global_step}{self._steps}"
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Read the training budget (the totals shown after the epoch and step)."""
        steps = trainer.estimated_stepping_batches
        self._steps = f"/{int(steps)}" if math.isfinite(steps) else ""
        epochs = trainer.max_epochs
        self._epochs = f"/{epochs}" if epochs is not None and epochs > 0 else ""
        self._show(trainer, self._training(trainer), now=True)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Show the epoch and the optimizer step."""
        self._show(trainer, self._training(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Show the finished epoch's last step."""
        self._show(trainer, self._training(trainer), now=True)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Show the scoring (test) batches done."""
        total = trainer.num_predict_batches[dataloader_idx]
        self._show(
            trainer,
            f"scoring batch {batch_idx + 1}/{int(total)}"
            if math.isfinite(total)
            else f"scoring batch {batch_idx + 1}",
            now=batch_idx + 1 == total,
        )
