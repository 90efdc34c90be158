"""Exact AUROC, AP and F1-max against scikit-learn; the curve arithmetic on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metric_cases import f1_max_reference
from sklearn.metrics import average_precision_score, roc_auc_score

from adbench.metrics import Curve, auroc, average_precision, f1_max, ranked_curve
from adbench.metrics.ranking import partial_area


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.3
    return [
        ("continuous", rng.normal(size=500) + labels, labels),
        ("ties", np.round(rng.normal(size=500) + labels, 1), labels),
        ("few levels", rng.integers(0, 4, 500) + labels * rng.integers(0, 2, 500), labels),
        ("tiny", np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)),
        ("one anomaly", rng.random(50), np.arange(50) == 7),
        ("separable", np.r_[np.zeros(5), np.ones(5)], np.r_[np.zeros(5), np.ones(5)].astype(bool)),
    ]


@pytest.mark.parametrize(("name", "scores", "labels"), _cases(), ids=[c[0] for c in _cases()])
def test_exact_metrics_match_sklearn(name: str, scores: np.ndarray, labels: np.ndarray) -> None:
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    ap = average_precision_score(labels, scores)
    assert average_precision(scores, labels) == pytest.approx(ap, abs=1e-12)
    assert f1_max(scores, labels) == pytest.approx(f1_max_reference(labels, scores), abs=1e-12)


def test_torch_input_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    scores, labels = rng.random(64), rng.random(64) < 0.5
    assert auroc(torch.from_numpy(scores), torch.from_numpy(labels)) == auroc(scores, labels)


def test_ranked_curve_groups_ties() -> None:
    scores = torch.tensor([0.9, 0.5, 0.5, 0.5, 0.1])
    positive = torch.tensor([True, True, False, False, True])
    curve = ranked_curve(scores, positive, weights=positive.double() / 3)
    np.testing.assert_array_equal(curve.tp, [1, 2, 3])
    np.testing.assert_array_equal(curve.fp, [0, 2, 2])
    np.testing.assert_allclose(curve.overlap, [1 / 3, 2 / 3, 1.0])
    # the tie at 0.5 is one threshold: P = 2/4 for the step from R = 1/3 to 2/3
    assert curve.ap() == pytest.approx((1 / 3) * 1 + (1 / 3) * (2 / 4) + (1 / 3) * (3 / 5))


def test_undefined_metrics_are_nan() -> None:
    only_normal = Curve(tp=np.zeros(3), fp=np.array([1.0, 2.0, 3.0]))
    assert np.isnan(only_normal.auroc())
    assert np.isnan(only_normal.ap())
    assert np.isnan(only_normal.f1max())
    only_anomalous = Curve(tp=np.array([1.0, 2.0]), fp=np.zeros(2), overlap=np.array([0.5, 1.0]))
    assert np.isnan(only_anomalous.auroc())
    assert only_anomalous.ap() == 1.0
    assert only_anomalous.f1max() == 1.0
    assert np.isnan(only_anomalous.aupro(regions=1))
    assert np.isnan(Curve(np.zeros(0), np.zeros(0)).auroc())


def test_partial_area_interpolates_at_the_limit() -> None:
    x, y = np.array([0.0, 0.2, 0.5, 1.0]), np.array([0.0, 0.4, 1.0, 1.0])
    # 0..0.2: 0.04; 0.2..0.3: y(0.3) = 0.6, area 0.1 * 0.5 = 0.05
    assert partial_area(x, y, 0.3) == pytest.approx(0.09)
    assert partial_area(x, y, 0.2) == pytest.approx(0.04)
    assert partial_area(x, y, 1.0) == pytest.approx(np.trapezoid(y, x))


def test_binned_ap_steps_over_single_value_bins_and_integrates_the_others() -> None:
    tp, fp = np.array([2.0, 3.0]), np.array([0.0, 2.0])
    step = (2 / 3) * 1 + (1 / 3) * (3 / 5)
    assert Curve(tp, fp, single=np.array([True, True])).ap() == pytest.approx(step)
    # second bin: 1 positive, 2 negatives spread evenly after 2 positives
    t = np.linspace(0, 1, 200_001)
    precision = (2 + t) / (2 + 3 * t)
    integral = (1 / 3) * float(np.trapezoid(precision, t))
    spread = Curve(tp, fp, single=np.array([True, False])).ap()
    assert spread == pytest.approx((2 / 3) + integral, abs=1e-9)
