"""Object-level (sample-level) scores of multi-view datasets: the Real-IAD protocol.

Real-IAD and Real-IAD Variety photograph each object from five camera views (Wang et al., "Real-IAD:
A Real-World Multi-View Dataset for Benchmarking Versatile Industrial Anomaly Detection", CVPR
2024). Besides image- and pixel-level numbers, their papers report a sample-level score: an object
is anomalous when any of its views is, and its score pools the scores of its views (the maximum in
the papers). `object_scores` turns per-image rows into per-object rows; the Evaluator computes
S-AUROC, S-AP and S-F1max on them exactly as it computes the image metrics on images.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adbench.errors import InvalidInputError, UnknownNameError, unknown_name

POOLINGS = ("max", "mean", "topK")
_TOP = re.compile(r"top(\d+)")


@dataclass(frozen=True)
class ViewPooling:
    """How the view scores of one object become the object's score.

    Attributes:
        kind: ``"max"`` (the papers' protocol), ``"mean"``, or ``"top"`` (mean of the ``k``
            highest view scores; an object with fewer than ``k`` views averages all of them).
        k: views averaged by ``"top"``.
    """

    kind: str = "max"
    k: int = 1

    @classmethod
    def parse(cls, text: str) -> ViewPooling:
        """``"max"``, ``"mean"`` or ``"topK"`` with K >= 1 (e.g. ``"top2"``)."""
        if text in ("max", "mean"):
            return cls(text)
        match = _TOP.fullmatch(text)
        if match is None or int(match.group(1)) < 1:
            error = unknown_name("view pooling", text, POOLINGS)
            raise UnknownNameError(f"{error} (topK: the mean of the K highest view scores, K >= 1)")
        return cls("top", int(match.group(1)))

    def __str__(self) -> str:
        return f"top{self.k}" if self.kind == "top" else self.kind

    def pool(self, views: pd.DataFrame, by: list[str]) -> pd.Series:
        """One pooled score per object: ``views`` holds a ``score`` column and the ``by`` keys."""
        if self.kind == "top":
            views = views.sort_values("score", ascending=False, kind="stable")
            views = views[views.groupby(by).cumcount() < self.k]
        grouped = views.groupby(by, sort=True)["score"]
        return grouped.max() if self.kind == "max" else grouped.mean()


def object_keys(objects: Mapping[int, str | None] | pd.Series) -> pd.Series:
    """Sample index -> object id, without the samples that have none.

    Args:
        objects: object id per sample index (`SampleIndex` row id); None or NaN means no object.

    Returns:
        str Series indexed by int64 sample index.
    """
    keys = pd.Series(objects, dtype=object).dropna()
    if not keys.index.is_unique:
        raise InvalidInputError("objects: a sample index is listed twice")
    try:
        keys.index = keys.index.astype("int64")
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"objects must be keyed by integer sample index ({err})") from None
    return keys.astype(str)


def object_scores(images: np.ndarray, keys: pd.Series, pooling: ViewPooling) -> pd.DataFrame:
    """Pool the rows of the images that belong to an object into one row per object.

    Args:
        images: (N, 4) float64 rows ``(score, label, category, sample index)``, each sample once.
        keys: sample index -> object id, from `object_keys`.
        pooling: how view scores are pooled; labels are always pooled with the maximum.

    Returns:
        One row per (category, object) with columns ``category`` (int), ``object``, ``score``
        and ``label`` (0/1); empty when no image has an object.
    """
    frame = pd.DataFrame(images[:, :3], columns=["score", "label", "category"])
    frame["object"] = keys.reindex(images[:, 3].astype(np.int64)).to_numpy()
    frame = frame.dropna(subset=["object"]).astype({"category": "int64"})
    by = ["category", "object"]
    labels = frame.groupby(by, sort=True)["label"].max().astype("int64")
    return pd.DataFrame({"score": pooling.pool(frame, by), "label": labels}).reset_index()
