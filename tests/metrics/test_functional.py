"""``adbench.metrics.evaluate``: layouts of its inputs and of its table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from metric_cases import reference_table, structured_maps

from adbench.errors import InvalidInputError
from adbench.metrics import COLUMNS, Evaluator, evaluate


def test_table_layout_and_values() -> None:
    data = structured_maps(seed=1, per_category=6, size=24).quantised(64)
    frame = evaluate(data.scores, data.labels, data.maps, data.masks, data.categories)
    assert list(frame.columns) == list(COLUMNS)
    assert list(frame.index) == ["bottle", "cable", "grid", "mean"]
    assert ((frame >= 0) & (frame <= 1)).all().all()
    for name, values in reference_table(data).items():
        for metric, expected in values.items():
            assert frame.loc[name, metric] == pytest.approx(expected, abs=1e-6)


def test_input_layouts_agree() -> None:
    data = structured_maps(seed=2, per_category=4, size=16, categories=("b", "a"))
    expected = evaluate(data.scores, data.labels, data.maps, data.masks, data.categories, "exact")
    assert list(expected.index) == ["b", "a", "mean"]  # order of first appearance
    variants = [
        (data.maps[:, None], data.masks[:, None]),
        (torch.from_numpy(data.maps), torch.from_numpy(data.masks)),
        (data.maps, (data.masks * 255).astype(np.uint8)),
    ]
    for maps, masks in variants:
        frame = evaluate(
            torch.from_numpy(data.scores), data.labels.tolist(), maps, masks, data.categories,
            mode="exact",
        )  # fmt: skip
        pd.testing.assert_frame_equal(frame, expected)


def test_same_as_the_evaluator() -> None:
    data = structured_maps(seed=3, per_category=6, size=24)
    names = list(dict.fromkeys(data.categories))
    evaluator = Evaluator(names, calibration_pixels=1024)
    for output, batch in data.batches(names, size=5):
        evaluator.update(output, batch)
    frame = evaluate(
        data.scores, data.labels, data.maps, data.masks, data.categories, calibration_pixels=1024,
        batch_size=5,
    )  # fmt: skip
    pd.testing.assert_frame_equal(frame, evaluator.compute().to_frame())


def test_bad_inputs_are_named() -> None:
    data = structured_maps(seed=4, per_category=2, size=8, categories=("a",))
    args = [data.scores, data.labels, data.maps, data.masks, data.categories]
    with pytest.raises(InvalidInputError, match=r"maps must have shape \(N, H, W\)"):
        evaluate(args[0], args[1], data.maps[0], *args[3:])
    with pytest.raises(InvalidInputError, match="masks has 1 entries but scores has 2"):
        evaluate(*args[:3], data.masks[:1], args[4])
    with pytest.raises(InvalidInputError, match="got 2, 1 and 2"):
        evaluate(args[0], args[1][:1], *args[2:])
