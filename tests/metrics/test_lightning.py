"""The Evaluator as a child module of a LightningModule, fed by Lightning's predict loop."""

from __future__ import annotations

import lightning as L
import pandas as pd
import torch
from metric_cases import structured_maps
from torch.utils.data import DataLoader

from adbench.batch import AnomalyOutput, Batch, Sample
from adbench.metrics import Evaluator, evaluate


class _Replay(L.LightningModule):
    """Returns precomputed maps for the indices of each batch."""

    def __init__(self, maps: torch.Tensor, scores: torch.Tensor, categories: list[str]) -> None:
        super().__init__()
        self.maps, self.scores = maps, scores
        self.evaluator = Evaluator(categories, calibration_pixels=1024)

    def predict_step(self, batch: Batch, batch_idx: int) -> None:
        index = batch.index.cpu()
        output = AnomalyOutput(self.maps[index][:, None], self.scores[index])
        self.evaluator.update(output.to(self.device), batch)


def test_predict_loop_feeds_the_evaluator() -> None:
    data = structured_maps(seed=1, per_category=6, size=24, categories=("a", "b"))
    names = ["a", "b"]
    samples = [
        Sample(
            image=torch.zeros(3, 24, 24),
            mask=torch.from_numpy(data.masks[i])[None],
            label=int(data.labels[i]),
            category=names.index(data.categories[i]),
            index=i,
        )
        for i in range(len(data.scores))
    ]
    loader = DataLoader(samples, batch_size=5, collate_fn=Batch.collate)
    module = _Replay(torch.from_numpy(data.maps), torch.from_numpy(data.scores).float(), names)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.predict(module, loader, return_predictions=False)
    expected = evaluate(
        data.scores, data.labels, data.maps, data.masks, data.categories, calibration_pixels=1024,
        batch_size=5,
    )  # fmt: skip
    pd.testing.assert_frame_equal(module.evaluator.compute().to_frame(), expected)
    assert "evaluator" not in "".join(module.state_dict())
