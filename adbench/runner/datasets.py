"""Sweep dataset entries -> `SampleIndex`, generating the built-in synthetic data when absent."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adbench.config import from_dict, to_dict
from adbench.runner.schema import DatasetEntry, Sweep, SyntheticOptions


def prepare_datasets(sweep: Sweep) -> list[Path]:
    """Generate each ``format: synthetic`` dataset whose root does not exist; return those roots."""
    from adbench.data import make_synthetic

    made = []
    for entry in sweep.datasets:
        if entry.format != "synthetic" or Path(entry.root).expanduser().exists():
            continue
        options = entry.synthetic or SyntheticOptions()
        made.append(make_synthetic(entry.root, **dataclasses.asdict(options)))
    return made


def load_dataset(entry: DatasetEntry | Mapping[str, Any]) -> Any:
    """The `SampleIndex` of a dataset entry (a single root or a union of parts).

    Indexes are cached per process (a sweep reads each dataset once, however many cells use it).

    Args:
        entry: a `DatasetEntry`, or its plain form as stored in a cell's config.
    """
    if isinstance(entry, Mapping):
        entry = from_dict(DatasetEntry, entry, context="dataset")
    return _load(json.dumps(to_dict(entry), sort_keys=True))


@functools.lru_cache(maxsize=8)
def _load(key: str) -> Any:
    from adbench.data import load_index
    from adbench.data.index import concat

    entry = from_dict(DatasetEntry, json.loads(key), context="dataset")
    if not entry.parts:
        return load_index(entry.format, entry.root, _categories(entry.categories), **entry.options)
    indexes = [
        load_index(part.format, part.root, _categories(part.categories), **part.options)
        for part in entry.parts
    ]
    union = concat(indexes)
    wanted = _categories(entry.categories)
    return union if wanted is None else union.select(wanted)


def _categories(value: tuple[str, ...] | str) -> list[str] | None:
    return None if value == "all" else list(value)
