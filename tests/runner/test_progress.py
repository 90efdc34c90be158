"""The sweep's one progress display: a cell's epoch, step and scoring batches in its bar."""

from __future__ import annotations

import io

from tqdm import tqdm

import adbench
from adbench.data import UnifiedDataModule, load_index
from adbench.runner.progress import CellProgress


def test_cell_progress_shows_the_epoch_step_and_scoring_batches(tiny_root, toy):
    index = load_index("synthetic", tiny_root).select(["grid_6x2_002", "texture_brick_000"])
    datamodule = UnifiedDataModule(index, image_size=32, batch_size=3)
    method = adbench.create("toy", preset="tiny", num_classes=2)
    with tqdm(total=1, file=io.StringIO()) as bar:
        progress = CellProgress(bar, "toy | synthetic | k=2 | seed=0")
        trainer = adbench.fit(
            method,
            datamodule,
            accelerator="cpu",
            max_epochs=2,
            max_steps=-1,
            callbacks=[progress],
            enable_progress_bar=False,
        )
        steps = 2 * len(datamodule.train_dataloader())
        assert trainer.global_step == steps > 2
        assert bar.postfix == f"toy | synthetic | k=2 | seed=0 | epoch 2/2, step {steps}/{steps}"
        adbench.evaluate(method, datamodule, trainer=trainer)
        batches = len(datamodule.predict_dataloader())
        assert batches == 4  # 2 x 5 test images in batches of 3
        assert bar.postfix == f"toy | synthetic | k=2 | seed=0 | scoring batch {batches}/{batches}"
