"""The ``ader`` protocol and ADEval strip metrics against references written from the official code.

The references transcribe ADEval 1.1.0's ``EvalAccumulatorCuda`` (``torch.histc`` per image and
per distinct region weight, under- and overflow bins, ``np.trapz`` curves, the interpolated AUPRO)
and ADer's ``util/metric.py`` (P-F1max at 21 thresholds, the image metrics, scipy smoothing).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import measure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from torchvision import transforms

from adbench.data.dataset import load_mask
from adbench.metrics import evaluate
from adbench.metrics.adeval import adeval_pixel_metrics
from adbench.metrics.aupro import label_regions
from adbench.protocols import PixelRule, get_protocol


def _blob_masks(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """(count, size, size) bool masks: every other image has 1-3 discs and a lone pixel."""
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((count, size, size), dtype=bool)
    for i in range(0, count, 2):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(8, size - 8, 2)
            ry, rx = rng.uniform(2, size / 8, 2)
            masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        masks[i, rng.integers(size), rng.integers(size)] = True  # a region of one pixel
    return masks


def _blob_maps(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """(N, H, W) float32 maps: noise plus a blurred, partly shifted copy of the mask."""
    signal = np.stack([gaussian_filter(m.astype(np.float64), 2) for m in np.roll(masks, 3, -1)])
    signal = 0.5 * signal + 0.5 * np.stack([gaussian_filter(m * 1.0, 2) for m in masks])
    return (rng.normal(0, 0.15, masks.shape) + 2.0 * signal).astype(np.float32)


def _adeval_reference(maps: np.ndarray, masks: np.ndarray, strips: int, limit: float):
    """ADEval's P-AUROC, P-AP and AUPRO of one category, as its CUDA accumulator computes them.

    cuda_mem_effic.py:26-34 (histc plus under/overflow), 50-84 (per distinct weight), 97-150
    (cumulative curves, precision 1 where nothing is predicted), iterative.py:126-152
    (trapz; AUPRO to LIMIT with _trapezoid_intep, mem_effic.py:297-305), weights of
    iterative_cuda.py:26-30 and mem_effic.py:287-294 (8-connected, float32 1/area).
    """
    values = torch.from_numpy(maps.astype(np.float64))
    low, high = float(values.min()), float(values.max())

    def histogram(x: torch.Tensor) -> np.ndarray:
        stat = torch.zeros(strips + 2, dtype=torch.float64)
        torch.histc(x, bins=strips, min=low, max=high, out=stat[1:-1])
        stat[0] = x.less(low).count_nonzero()
        stat[-1] = x.greater_equal(high).count_nonzero()
        return stat.numpy()

    pos, neg, wpos, wneg = (np.zeros(strips + 2) for _ in range(4))
    for amap, mask in zip(values, masks, strict=True):
        labels = measure.label(mask, connectivity=2)
        area = np.bincount(labels.ravel())
        weight = np.ones(mask.shape, dtype=np.float32)
        weight[mask] = 1.0 / area[labels[mask]]
        weight, label = torch.from_numpy(weight), torch.from_numpy(mask)
        for wt in torch.unique(weight):
            hist_pos = histogram(amap[label & (weight == wt)])
            hist_neg = histogram(amap[~label & (weight == wt)])
            pos, neg = pos + hist_pos, neg + hist_neg
            wpos, wneg = wpos + hist_pos * float(wt), wneg + hist_neg * float(wt)

    def summary(positive, negative):
        fn, p = np.cumsum(positive)[:-1], np.cumsum(positive)[-1]
        tn, n = np.cumsum(negative)[:-1], np.cumsum(negative)[-1]
        return p - fn, n - tn, fn, tn

    tp, fp, fn, tn = summary(pos, neg)
    tpr, fpr = tp / (tp + fn), fp / (fp + tn)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    precision[~(tp + fp > 0)] = 1.0
    wtp, wfp, wfn, wtn = summary(wpos, wneg)
    pro, wfpr = wtp / (wtp + wfn), wfp / (wfp + wtn)
    keep = wfpr <= limit
    lo_pro, lo_fpr = pro[keep][::-1], wfpr[keep][::-1]
    hi_pro, hi_fpr = pro[~keep][::-1], wfpr[~keep][::-1]
    lo, hi = np.trapezoid(lo_pro, lo_fpr), np.trapezoid(hi_pro, hi_fpr)
    tot = np.trapezoid(pro[::-1], wfpr[::-1])
    interp, area = (limit - lo_fpr[-1]) / (hi_fpr[0] - lo_fpr[-1]), tot - (lo + hi)
    y1, y2 = lo_pro[-1], hi_pro[0]
    rect_ratio = y1 / (y1 + 0.5 * (y2 - y1))
    crossing = area * rect_ratio * interp + area * (1 - rect_ratio) * interp * interp
    return {
        "P-AUROC": np.trapezoid(tpr[::-1], fpr[::-1]),
        "P-AP": np.trapezoid(precision[::-1], tpr[::-1]),
        "AUPRO": (lo + crossing) / limit,
    }


def _f1_reference(maps: np.ndarray, masks: np.ndarray) -> float:
    """ADer util/metric.py:77, 215-243 (mF1_max_px)."""
    maps = maps.astype(np.float64)
    norm = (maps - maps.min()) / (maps.max() - maps.min())
    scores = []
    for score in np.arange(0.0, 1.0 + 1e-3, 0.05):
        pr = norm > score
        intersect = np.logical_and(masks, pr).sum()
        precision = intersect / (pr.sum() + 1e-8)
        recall = intersect / (masks.sum() + 1e-8)
        scores.append(2 * precision * recall / (precision + recall + 1e-8))
    return float(np.max(scores))


def _inputs(maps: np.ndarray, masks: np.ndarray):
    """The evaluator's per-category inputs: (n,) float32 scores and weights, region count."""
    regions = label_regions(masks)
    weights = torch.zeros(masks.size, dtype=torch.float32)
    weights[regions.pixels] = torch.from_numpy(regions.weights).float()
    return torch.from_numpy(maps).flatten(), weights, int(regions.counts.sum())


@pytest.mark.parametrize(
    ("quantised", "strips", "limit"),
    [(False, 50, 0.3), (True, 50, 0.3), (False, 200, 0.05), (True, 200, 0.3)],
)
def test_strip_metrics_match_adeval(quantised: bool, strips: int, limit: float) -> None:
    rng = np.random.default_rng(strips + int(quantised))
    masks = _blob_masks(rng, 10, 64)
    maps = _blob_maps(rng, masks)
    if quantised:  # values on bin edges, and many pixels tied at the highest value
        maps = np.clip(np.round(maps * 40) / 40, -0.25, 1.0).astype(np.float32)
        assert (maps == maps.max()).sum() > 50
    protocol = get_protocol("ader", aupro_fpr_limit=limit)
    protocol = dataclasses.replace(protocol, pixels=PixelRule("strips", strips, 21))
    found = adeval_pixel_metrics(*_inputs(maps, masks), protocol)
    expected = _adeval_reference(maps, masks, strips, limit)
    expected["P-F1max"] = _f1_reference(maps, masks)
    assert found.keys() == expected.keys()
    for name, value in expected.items():
        assert found[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_strip_metrics_without_f1_thresholds_and_undefined_cases() -> None:
    rng = np.random.default_rng(3)
    masks = _blob_masks(rng, 4, 32)
    maps = _blob_maps(rng, masks)
    protocol = dataclasses.replace(get_protocol("ader"), pixels=PixelRule("strips", 50))
    assert set(adeval_pixel_metrics(*_inputs(maps, masks), protocol)) == {
        "P-AUROC",
        "P-AP",
        "AUPRO",
    }
    ader = get_protocol("ader")
    for case_maps, case_masks in ((maps, np.zeros_like(masks)), (np.ones_like(maps), masks)):
        values = adeval_pixel_metrics(*_inputs(case_maps, case_masks), ader)
        assert len(values) == 4 and all(np.isnan(v) for v in values.values())


def _image_f1max(labels: np.ndarray, scores: np.ndarray) -> float:
    """ADer util/metric.py:152-158 (mF1_max_sp_max)."""
    precisions, recalls, _ = precision_recall_curve(labels, scores)
    f1 = 2 * precisions * recalls / (precisions + recalls)
    return float(np.max(f1[np.isfinite(f1)]))


def test_ader_protocol_matches_reference_pipeline() -> None:
    rng = np.random.default_rng(7)
    masks = _blob_masks(rng, 10, 256)
    raw = _blob_maps(rng, masks)
    spots = np.zeros_like(raw)  # a bright spot of random strength per image: images overlap
    rows, cols = rng.integers(20, 236, (2, 10))
    spots[np.arange(10), rows, cols] = rng.uniform(0, 400, 10)
    raw += np.stack([gaussian_filter(s, 6) for s in spots])
    categories = ["a"] * 5 + ["b"] * 5
    labels = masks.reshape(10, -1).any(axis=1).astype(np.int64)
    table = evaluate(
        rng.uniform(size=10), labels, raw, masks.astype(np.float32), categories,
        mode="exact", protocol="ader",
    )  # fmt: skip
    for name, part in (("a", slice(0, 5)), ("b", slice(5, 10))):
        smoothed = np.stack([gaussian_filter(m, sigma=4) for m in raw[part]])  # ADer metric.py:295
        scores, truth = smoothed.max(axis=(1, 2)), labels[part]
        expected = {
            "I-AUROC": roc_auc_score(truth, scores),
            "I-AP": average_precision_score(truth, scores),
            "I-F1max": _image_f1max(truth, scores),
            **_adeval_reference(smoothed, masks[part], 50, 0.3),
            "P-F1max": _f1_reference(smoothed, masks[part]),
        }
        row = table.loc[name]
        for metric, value in expected.items():
            # the protocol smooths in float32 by convolution, scipy in float64: pixels next to a
            # strip edge may change strip, moving the pixel metrics by about 1 / pixels
            assert row[metric] == pytest.approx(value, abs=1e-5), (name, metric)
        assert row["mAD"] == pytest.approx(np.mean(list(expected.values())), abs=1e-5)


def test_ader_mask_rule_matches_torchvision(tmp_path) -> None:
    rng = np.random.default_rng(11)
    mask = _blob_masks(rng, 1, 300)[0]
    gray = np.where(mask, rng.choice(np.array([1, 128, 255], dtype=np.uint8), mask.shape), 0)
    path = tmp_path / "mask.png"
    Image.fromarray(gray.astype(np.uint8)).save(path)
    found = load_mask(path, (256, 256), resample="bilinear") > 0.5
    # ADer data/ad_dataset.py:130-131, then vitad_256_100e.py:54-58 and vitad_trainer.py:90
    binary = Image.fromarray((np.array(Image.open(path).convert("L")) > 0).astype(np.uint8) * 255)
    resize = transforms.Compose([transforms.Resize((256, 256)), transforms.ToTensor()])
    expected = resize(binary) > 0.5
    assert torch.equal(found, expected)
    assert not torch.equal(found, load_mask(path, (256, 256)) > 0.5)  # the rule matters here
