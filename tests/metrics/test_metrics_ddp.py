"""Two gloo processes, each updating with half of the images, give the single-process table.

Every three consecutive images of a category are the views of one object, so the interleaved
halves split the views of each object across the processes.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from metric_cases import Maps, structured_maps

from adbench.metrics import OBJECT_METRICS, Evaluator

CATEGORIES = ["bottle", "cable", "grid", "wood"]


def _data() -> Maps:
    data = structured_maps(seed=7, per_category=12, size=48, categories=tuple(CATEGORIES[:3]))
    # "wood" (2 x 48 x 48 pixels) stays below calibration_pixels: kept exactly, never binned
    extra = structured_maps(
        seed=8, per_category=2, size=48, categories=("wood",), normal_first=False
    )
    return Maps(
        np.concatenate([data.scores, extra.scores]),
        np.concatenate([data.labels, extra.labels]),
        np.concatenate([data.maps, extra.maps]),
        np.concatenate([data.masks, extra.masks]),
        data.categories + extra.categories,
    )


def _objects(data: Maps) -> dict[int, str]:
    """Sample index -> object id: three consecutive images of a category form one object."""
    return {i: f"{c}/{i // 3}" for i, c in enumerate(data.categories)}


def _evaluate(data: Maps, mode: str) -> pd.DataFrame:
    evaluator = Evaluator(CATEGORIES, mode=mode, calibration_pixels=5000, objects=_objects(_data()))
    for output, batch in data.batches(CATEGORIES, size=5):
        evaluator.update(output, batch)
    return evaluator.compute().to_frame()


def _worker(rank: int, port: int, out: Path) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's thread pool
    dist.init_process_group("gloo", f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        data = _data()
        # interleaved halves: both processes see every category, in different amounts
        keep = np.arange(len(data.scores)) % 2 == rank
        for mode in ("exact", "streaming"):
            _evaluate(data.subset(keep), mode).to_pickle(out / f"{mode}-{rank}.pkl")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_two_processes_match_one(tmp_path: Path) -> None:
    # fork: the children start with everything imported (spawn re-imports torch, ~10 s each)
    mp.start_processes(_worker, (_free_port(), tmp_path), nprocs=2, start_method="fork")
    data = _data()
    for mode in ("exact", "streaming"):
        single = _evaluate(data, mode)
        ranks = [pd.read_pickle(tmp_path / f"{mode}-{rank}.pkl") for rank in (0, 1)]
        pd.testing.assert_frame_equal(ranks[0], ranks[1])  # every process gets the same table
        # streaming: each process fixes its own bins, merged by re-binning (see streaming.py)
        tolerance = 1e-12 if mode == "exact" else 1e-4
        np.testing.assert_allclose(ranks[0].to_numpy(), single.to_numpy(), atol=tolerance)
    np.testing.assert_allclose(ranks[0].to_numpy(), _evaluate(data, "exact").to_numpy(), atol=1e-3)
    # object scores are pooled after the gather: exact in both modes
    for mode in ("exact", "streaming"):
        objects = pd.read_pickle(tmp_path / f"{mode}-0.pkl")[list(OBJECT_METRICS)]
        pd.testing.assert_frame_equal(objects, _evaluate(data, mode)[list(OBJECT_METRICS)])
        assert objects.loc[CATEGORIES[:3]].notna().all().all()
