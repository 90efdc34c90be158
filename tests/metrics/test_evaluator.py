"""The Evaluator against independent references, in both modes, and its defined edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from metric_cases import Maps, random_maps, reference_table, structured_maps

from adbench.batch import AnomalyOutput, Batch
from adbench.errors import ConfigError, InvalidInputError, UnknownNameError
from adbench.metrics import METRICS, Evaluator, MetricWarning, aupro


def _run(data: Maps, mode: str, batch: int = 6, **kwargs: object) -> pd.DataFrame:
    names = list(dict.fromkeys(data.categories))
    evaluator = Evaluator(names, mode=mode, **kwargs)
    for output, batch_ in data.batches(names, size=batch):
        evaluator.update(output, batch_)
    return evaluator.compute().to_frame()


def _assert_matches(frame: pd.DataFrame, reference: dict, atol: float, aupro_atol: float) -> None:
    for name, values in reference.items():
        for metric, expected in values.items():
            tolerance = aupro_atol if metric == "AUPRO" else atol
            assert frame.loc[name, metric] == pytest.approx(expected, abs=tolerance), (name, metric)
    means = {m: np.mean([v[m] for v in reference.values()]) for m in METRICS}
    for metric, expected in means.items():
        tolerance = aupro_atol if metric == "AUPRO" else atol
        assert frame.loc["mean", metric] == pytest.approx(expected, abs=tolerance)
    assert frame.loc["mean", "mAD"] == pytest.approx(np.mean(list(means.values())), abs=atol)


@pytest.mark.parametrize("kind", ["random", "structured-quantised"])
def test_exact_mode_matches_sklearn_and_the_aupro_loop(kind: str) -> None:
    if kind == "random":
        data = random_maps(seed=1, count=16, size=20, categories=("a", "b"))
    else:
        data = structured_maps(seed=2, per_category=8, size=32).quantised(128)
    _assert_matches(_run(data, "exact"), reference_table(data), atol=1e-6, aupro_atol=1e-6)


@pytest.mark.parametrize("normal_first", [True, False])
def test_streaming_mode_is_within_1e3_of_the_references(normal_first: bool) -> None:
    data = structured_maps(seed=3, per_category=12, size=48, normal_first=normal_first)
    reference = reference_table(data, aupro=False)
    for name in reference:
        keep = np.array([c == name for c in data.categories])
        reference[name]["AUPRO"] = aupro(data.maps[keep], data.masks[keep])
    # a small calibration buffer, so that every category is histogram-binned
    frame = _run(data, "streaming", calibration_pixels=4096)
    _assert_matches(frame, reference, atol=1e-3, aupro_atol=1e-3)


def test_streaming_on_quantised_maps_matches_the_loop() -> None:
    data = structured_maps(seed=4, per_category=8, size=32).quantised(256)
    frame = _run(data, "streaming", calibration_pixels=2048)
    _assert_matches(frame, reference_table(data), atol=1e-6, aupro_atol=1e-6)


@pytest.mark.parametrize("where", ["in the calibration pixels", "after calibration"])
def test_a_single_extreme_pixel_does_not_wreck_streaming(where: str) -> None:
    data = structured_maps(seed=5, per_category=12, size=48, categories=("one",))
    image = 0 if where == "in the calibration pixels" else 11
    data.maps[image, 10, 10] = 1e6
    exact = _run(data, "exact")
    streaming = _run(data, "streaming", calibration_pixels=4096)
    assert (streaming - exact).abs().to_numpy().max() < 1e-3
    assert exact.loc["one", "P-AUROC"] > 0.9  # the maps still separate well


def test_small_categories_are_exact_in_streaming_mode() -> None:
    data = random_maps(seed=6, count=12, size=16)
    pd.testing.assert_frame_equal(_run(data, "streaming"), _run(data, "exact"))


def test_memory_does_not_grow_with_the_number_of_images() -> None:
    data = structured_maps(seed=7, per_category=24, size=32, categories=("one",))
    evaluator = Evaluator(["one"], calibration_pixels=2048)
    sizes = []
    for output, batch in data.batches(["one"], size=4):
        evaluator.update(output, batch)
        pixel_states = (evaluator.pixel_scores, evaluator.pixel_weights, evaluator.histogram)
        sizes.append(
            sum(t.numel() for s in pixel_states for t in (s if isinstance(s, list) else [s]))
        )
    assert sizes[1] == sizes[-1]  # calibrated after the first two batches: constant from then on
    assert evaluator.pixel_scores == []


def test_maps_are_resized_bilinearly_to_the_mask() -> None:
    data = structured_maps(seed=8, per_category=6, size=32, categories=("one",))
    small = torch.from_numpy(data.maps)[:, None, ::2, ::2].contiguous()
    upsampled = torch.nn.functional.interpolate(
        small, size=(32, 32), mode="bilinear", align_corners=False
    )
    evaluator = Evaluator(["one"], mode="exact")
    for output, batch in data.batches(["one"], size=6):
        evaluator.update(AnomalyOutput(small, output.score), batch)
    resized = Maps(data.scores, data.labels, upsampled[:, 0].numpy(), data.masks, data.categories)
    pd.testing.assert_frame_equal(evaluator.compute().to_frame(), _run(resized, "exact", batch=6))


def test_masks_are_binarised_at_one_half() -> None:
    data = structured_maps(seed=9, per_category=6, size=24, categories=("one",))
    soft = data.masks * 0.7 + (1 - data.masks) * 0.3  # 0.7 anomalous, 0.3 normal
    byte = data.masks * 255
    expected = _run(data, "exact")
    for masks in (soft, byte):
        other = Maps(data.scores, data.labels, data.maps, masks.astype(np.float32), data.categories)
        pd.testing.assert_frame_equal(_run(other, "exact"), expected)


def _batch(maps: torch.Tensor, labels: list[int], category: list[int], index: list[int]):
    count, _, height, width = maps.shape
    masks = torch.zeros(count, 1, height, width)
    masks[torch.tensor(labels) == 1, :, :4, :4] = 1
    batch = Batch(
        torch.zeros(count, 3, height, width),
        masks,
        torch.tensor(labels),
        torch.tensor(category),
        torch.tensor(index),
    )
    return AnomalyOutput(maps, maps.flatten(1).max(1).values), batch


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_maps_name_the_sample(bad: float) -> None:
    evaluator = Evaluator(["a"])
    maps = torch.rand(3, 1, 8, 8)
    evaluator.update(*_batch(maps, [0, 1, 0], [0, 0, 0], [0, 1, 2]))
    maps = torch.rand(3, 1, 8, 8)
    maps[1, 0, 2, 3] = bad
    with pytest.raises(InvalidInputError, match=r"anomaly map of sample index 17 \(position 1"):
        evaluator.update(*_batch(maps, [0, 1, 0], [0, 0, 0], [16, 17, 18]))
    output, batch = _batch(torch.rand(3, 1, 8, 8), [0, 1, 0], [0, 0, 0], [16, 17, 18])
    output = AnomalyOutput(output.anomaly_map, torch.tensor([0.1, 0.2, bad]))
    with pytest.raises(InvalidInputError, match="score of sample index 18"):
        evaluator.update(output, batch)
    assert len(evaluator.image_rows) == 1  # the failed batches left no trace


def test_categories_without_anomalous_or_normal_images_give_nan_and_warn() -> None:
    evaluator = Evaluator(["normal-only", "anomalous-only", "fine", "unseen"])
    maps = torch.rand(6, 1, 16, 16)
    evaluator.update(*_batch(maps, [0, 0, 1, 1, 0, 1], [0, 0, 1, 1, 2, 2], list(range(6))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = evaluator.compute().to_frame()
    messages = "\n".join(str(w.message) for w in caught if issubclass(w.category, MetricWarning))
    assert "'normal-only'" in messages and "no anomalous test images" in messages
    assert "'anomalous-only'" in messages and "no normal test images" in messages
    assert "'unseen'" in messages and "no test images" in messages
    assert "'fine'" not in messages
    assert frame.loc["normal-only", list(METRICS)].isna().all()
    assert np.isnan(frame.loc["anomalous-only", "I-AUROC"])
    assert frame.loc["anomalous-only", "I-AP"] == 1.0  # defined: every image is anomalous
    assert 0 <= frame.loc["anomalous-only", "P-AUROC"] <= 1  # normal pixels exist
    assert frame.loc["fine", list(METRICS)].notna().all()
    assert frame.loc["mean", "I-AUROC"] == frame.loc["fine", "I-AUROC"]  # NaNs are skipped


def test_out_of_range_category_and_label_are_errors() -> None:
    evaluator = Evaluator(["a", "b"])
    with pytest.raises(InvalidInputError, match="category id 2 is out of range for the 2"):
        evaluator.update(*_batch(torch.rand(2, 1, 8, 8), [0, 1], [0, 2], [0, 1]))
    output, batch = _batch(torch.rand(2, 1, 8, 8), [0, 1], [0, 1], [0, 1])
    batch = Batch(batch.image, batch.mask, torch.tensor([0, 2]), batch.category, batch.index)
    with pytest.raises(
        InvalidInputError, match=r"labels must be 0 \(normal\) or 1 \(anomalous\), got 2"
    ):
        evaluator.update(output, batch)


def test_bad_arguments() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'streaming'"):
        Evaluator(["a"], mode="streming")
    with pytest.raises(InvalidInputError, match="non-empty list"):
        Evaluator("bottle")
    with pytest.raises(ConfigError, match="fpr_limit"):
        Evaluator(["a"], fpr_limit=0.0)


def test_repeated_samples_are_counted_once_for_image_metrics() -> None:
    evaluator = Evaluator(["a"], mode="exact")
    maps = torch.rand(4, 1, 8, 8)
    once = _batch(maps, [0, 1, 0, 1], [0, 0, 0, 0], [0, 1, 2, 3])
    evaluator.update(*once)
    reference = evaluator.compute().to_frame()
    evaluator.update(*_batch(maps[:2], [0, 1], [0, 0], [0, 1]))  # a DDP sampler's padding
    with pytest.warns(MetricWarning, match="2 test images were evaluated more than once"):
        frame = evaluator.compute().to_frame()
    assert frame.loc["a", "I-AUROC"] == reference.loc["a", "I-AUROC"]


def test_states_stay_out_of_checkpoints_and_reset() -> None:
    owner = torch.nn.Module()
    owner.evaluator = Evaluator(["a"])
    owner.evaluator.update(*_batch(torch.rand(2, 1, 8, 8), [0, 1], [0, 0], [0, 1]))
    assert owner.state_dict() == {}
    owner.evaluator.reset()
    assert owner.evaluator.image_rows == [] and int(owner.evaluator.regions.sum()) == 0
    assert torch.isnan(owner.evaluator.core).all()
    assert torch.isinf(owner.evaluator.histogram[:, 3]).all()
