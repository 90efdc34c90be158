"""The evaluation protocol card: how a number was measured, written beside every result.

A card is plain data (`protocol_card`), saved as ``protocol.yaml`` in a run folder and in each
sweep cell's ``result.json``. Two results may be ranked together only when their cards agree on
every field of `RANKED_FIELDS` (`differing_fields`); the image size, the method's own map
smoothing and the seeds are recorded but do not block a ranking, since papers compare methods at
their own resolution and smoothing and over different seeds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from adbench.errors import ConfigError
from adbench.io import write_atomic

PROTOCOL_FILE = "protocol.yaml"
AUPRO_FPR_LIMIT = 0.3  # the MVTec AD definition; MVTec AD 2 uses 0.05
EVALUATION_MODES = ("streaming", "exact")  # histogram (bounded memory) or sort-based metrics
MASK_RULE = (
    "mask pixel > 0 after decoding is anomalous; masks resized to the image size by "
    "nearest neighbour"
)
MAP_RESIZE = "anomaly maps resized bilinearly (align_corners=False) to the mask size"
IMAGE_RESIZE = "images resized to image_size x image_size (bilinear), no crop at evaluation"
AGGREGATION = "macro: each metric per category, then the unweighted mean over categories"
DEFAULT_NAME = "adbench"  # cards written before named protocols were all adbench's
RANKED_FIELDS = (
    "protocol",
    "rules",
    "mask_rule",
    "map_resize",
    "image_resize",
    "aggregation",
    "aupro_fpr_limit",
    "evaluation",
    "view_pooling",
    "dataset",
    "index_hash",
    "categories",
)


def check_aupro_fpr_limit(value: float) -> float:
    """``value`` as a float unless it is outside AUPRO's FPR range (0, 1]."""
    if not 0 < value <= 1:
        raise ConfigError(f"aupro_fpr_limit must be in (0, 1], got {value}")
    return float(value)


def index_hash(frame: Any, length: int = 16) -> str:
    """Content hash of a `SampleIndex` frame.

    Hashes its rows (category, split, label, defect and the image and mask paths relative to
    their common folder), so that the same dataset unpacked in another place hashes the same.
    """
    paths = [str(p) for p in frame["path"]]
    root = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    digest = hashlib.sha256()
    fields = frame[["category", "split", "label", "defect"]].astype(str)
    for row, path, mask in zip(
        fields.itertuples(index=False), paths, frame["mask_path"], strict=True
    ):
        mask_text = os.path.relpath(str(mask), root) if isinstance(mask, str) and mask else ""
        digest.update("\t".join([*row, os.path.relpath(path, root), mask_text, "\n"]).encode())
    return digest.hexdigest()[:length]


def protocol_card(
    dataset: str,
    index: Any,
    *,
    image_size: int,
    evaluation: str,
    protocol: Any,
    seeds: Iterable[int] = (),
    map_smoothing: float | None = None,
) -> dict[str, Any]:
    """The protocol of results on ``index`` (a `SampleIndex`) of ``dataset``.

    Args:
        dataset: the dataset's name.
        index: the samples evaluated.
        image_size: the input side.
        evaluation: the metric mode.
        protocol: the `adbench.protocols.Protocol` (its name and rules are recorded).
        seeds: the seeds of the results.
        map_smoothing: the method's own smoothing sigma, when it has one.
    """
    own = protocol.name == DEFAULT_NAME
    rules = protocol.fields()  # less the FPR limit and view pooling, recorded as fields below
    rules.pop("view_pooling")
    rules["aupro"] = {k: v for k, v in rules["aupro"].items() if k != "fpr_limit"}
    rule_text = f"the {protocol.name} protocol's rules (see 'rules')"
    return {
        "protocol": protocol.name,
        "rules": rules,
        "mask_rule": MASK_RULE if own else rule_text,
        "map_resize": MAP_RESIZE if own else rule_text,
        "image_resize": IMAGE_RESIZE,
        "image_size": int(image_size),
        "map_smoothing_sigma": None if map_smoothing is None else float(map_smoothing),
        "aggregation": AGGREGATION if own else protocol.aggregation,
        "aupro_fpr_limit": float(protocol.aupro.fpr_limit),
        "evaluation": evaluation,
        "view_pooling": protocol.view_pooling,
        "dataset": dataset,
        "index_hash": index_hash(index.frame),
        "categories": sorted(map(str, index.categories)),
        "seeds": sorted(int(s) for s in seeds),
    }


def differing_fields(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """The `RANKED_FIELDS` on which two cards differ.

    A card written before named protocols has neither ``protocol`` nor ``rules``: it is an
    ``adbench`` card, and its rules are compared through the fields it has.
    """
    compared = [
        f for f in RANKED_FIELDS if f != "rules" or ("rules" in first and "rules" in second)
    ]
    named = {"protocol": DEFAULT_NAME}
    first, second = {**named, **first}, {**named, **second}
    return [f for f in compared if first.get(f) != second.get(f)]


def write_protocol(folder: str | Path, card: Mapping[str, Any]) -> Path:
    """Write ``card`` to ``folder/protocol.yaml`` atomically; returns the path."""
    path = Path(folder) / PROTOCOL_FILE
    write_atomic(path, yaml.safe_dump(dict(card), sort_keys=False))
    return path
