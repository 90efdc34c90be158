"""Object-level (Real-IAD sample-level) metrics against pandas groupby + scikit-learn."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from metric_cases import Maps, f1_max_reference, structured_maps
from sklearn.metrics import average_precision_score, roc_auc_score

from adbench.errors import UnknownNameError
from adbench.metrics import COLUMNS, OBJECT_METRICS, Evaluator, MetricWarning, evaluate
from adbench.metrics.objects import ViewPooling

VIEWS = 5


def multi_view(seed: int = 0, objects: int = 6, categories: tuple[str, ...] = ("a", "b")) -> Maps:
    """Structured maps where every 5 consecutive images of a category are one object's views.

    Every other object is anomalous, in a random, non-empty subset of its views.
    """
    data = structured_maps(seed, per_category=objects * VIEWS, size=16, categories=categories)
    rng = np.random.default_rng(seed)
    labels = np.zeros_like(data.labels)
    for start in range(VIEWS, len(labels), 2 * VIEWS):
        labels[start : start + VIEWS] = rng.random(VIEWS) < 0.5
        labels[start + rng.integers(VIEWS)] = 1
    masks = data.masks * labels[:, None, None]
    scores = data.scores + 0.6 * labels + rng.normal(0, 0.5, len(labels))
    return Maps(scores, labels, data.maps, masks.astype(np.float32), data.categories)


def object_names(data: Maps) -> list[str]:
    return [f"{c}/S{i // VIEWS:04d}" for i, c in enumerate(data.categories)]


def reference(data: Maps, pool: str = "max", k: int = 1) -> pd.DataFrame:
    """S-AUROC, S-AP, S-F1max per category from a pandas groupby and scikit-learn."""
    views = pd.DataFrame(
        {
            "category": data.categories,
            "object": object_names(data),
            "score": data.scores,
            "label": data.labels,
        }
    )
    grouped = views.groupby(["category", "object"])
    if pool == "top":
        score = grouped["score"].apply(lambda s: s.nlargest(k).mean())
    else:
        score = grouped["score"].agg(pool)
    objects = pd.DataFrame({"score": score, "label": grouped["label"].max()}).reset_index()
    rows = {}
    for name, rows_ in objects.groupby("category"):
        y, s = rows_["label"].to_numpy(), rows_["score"].to_numpy()
        rows[name] = [roc_auc_score(y, s), average_precision_score(y, s), f1_max_reference(y, s)]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(OBJECT_METRICS))


@pytest.mark.parametrize(
    ("pooling", "pool", "k"),
    [("max", "max", 1), ("mean", "mean", 1), ("top2", "top", 2), ("top9", "top", 9)],
)
@pytest.mark.parametrize("mode", ["exact", "streaming"])
def test_object_metrics_match_groupby_and_sklearn(
    pooling: str, pool: str, k: int, mode: str
) -> None:
    data = multi_view(seed=1)
    frame = evaluate(
        data.scores,
        data.labels,
        data.maps,
        data.masks,
        data.categories,
        mode=mode,
        objects=object_names(data),
        view_pooling=pooling,
        batch_size=7,
    )
    expected = reference(data, pool, k)
    assert list(frame.columns) == [*COLUMNS, *OBJECT_METRICS]
    np.testing.assert_allclose(frame.loc[["a", "b"], list(OBJECT_METRICS)], expected, atol=1e-12)
    np.testing.assert_allclose(frame.loc["mean", list(OBJECT_METRICS)], expected.mean(), atol=1e-12)
    plain = evaluate(
        data.scores, data.labels, data.maps, data.masks, data.categories, mode=mode, batch_size=7
    )
    pd.testing.assert_frame_equal(frame[list(COLUMNS)], plain)  # mAD stays the seven's mean


def test_views_arriving_in_any_order_and_repeated_give_the_same_numbers() -> None:
    data = multi_view(seed=2)
    names = ["a", "b"]
    keys = dict(enumerate(object_names(data)))
    order = np.random.default_rng(0).permutation(len(data.scores))
    shuffled = Maps(
        data.scores[order],
        data.labels[order],
        data.maps[order],
        data.masks[order],
        [data.categories[i] for i in order],
        order,
    )
    evaluator = Evaluator(names, mode="exact", objects=keys)
    for output, batch in shuffled.batches(names, size=4):
        evaluator.update(output, batch)
    output, batch = next(shuffled.batches(names, size=4))
    evaluator.update(output, batch)  # a padding sampler repeats a few images
    with pytest.warns(MetricWarning, match="more than once"):
        frame = evaluator.compute().to_frame()
    np.testing.assert_allclose(frame.loc[names, list(OBJECT_METRICS)], reference(data), atol=1e-12)


def test_images_without_objects_get_no_object_columns() -> None:
    data = multi_view(seed=3, categories=("a", "b", "c"))
    kept = [n if not n.startswith("c/") else None for n in object_names(data)]
    frame = evaluate(data.scores, data.labels, data.maps, data.masks, data.categories, objects=kept)
    assert frame.loc["c", list(OBJECT_METRICS)].isna().all()  # a category without objects
    expected = reference(data).loc[["a", "b"]]
    np.testing.assert_allclose(frame.loc["mean", list(OBJECT_METRICS)], expected.mean(), atol=1e-12)
    none = evaluate(
        data.scores, data.labels, data.maps, data.masks, data.categories, objects=[None] * len(kept)
    )
    assert list(none.columns) == list(COLUMNS)


def test_undefined_object_metrics_warn_with_the_reason() -> None:
    data = multi_view(seed=4, categories=("a",))
    data.labels[:VIEWS] = 1  # the first object is anomalous ...
    one = ["a/S0000"] * len(data.scores)  # ... and every image is one of its views
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = evaluate(
            data.scores, data.labels, data.maps, data.masks, data.categories, objects=one
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, MetricWarning)]
    assert messages == ["category 'a': S-AUROC undefined (no normal test objects); reported as NaN"]
    assert np.isnan(frame.loc["a", "S-AUROC"]) and frame.loc["a", "S-AP"] == 1.0


def test_unknown_pooling_is_an_error_that_suggests() -> None:
    with pytest.raises(UnknownNameError, match="unknown view pooling 'maxx'; did you mean 'max'"):
        Evaluator(["a"], view_pooling="maxx")
    with pytest.raises(UnknownNameError, match="topK"):
        ViewPooling.parse("top0")
    assert ViewPooling.parse("top3") == ViewPooling("top", 3)
    assert str(ViewPooling.parse("top3")) == "top3"


def test_adbench_evaluate_reports_objects_of_a_realiad_index(realiad_root) -> None:
    import adbench
    from adbench.data import UnifiedDataModule, load_index

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from toy_method import ToyAutoencoder, ToyConfig

    index = load_index("realiad", realiad_root.root)
    test = index.frame[index.frame["split"] == "test"]
    assert index.object_ids().loc[test.index].nunique() == test["object_id"].nunique()
    datamodule = UnifiedDataModule(index, image_size=32, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = adbench.evaluate(
            ToyAutoencoder(ToyConfig(random_weights=True)),  # mechanics mode: scored unfitted
            datamodule,
            mode="exact",
            accelerator="cpu",
            enable_progress_bar=False,
        )
    frame = table.to_frame()
    assert list(frame.columns) == [*COLUMNS, *OBJECT_METRICS]
    # mint: one normal and one anomalous object, so S-AUROC is 0, 0.5 or 1
    assert frame.loc["mint", "S-AUROC"] in (0.0, 0.5, 1.0)
