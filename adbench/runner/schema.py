"""The sweep schema: the dataclasses a sweep file is read into, and `Cell`, the unit of work.

Plain data only: this module imports nothing else of ``adbench.runner``, so every part of the
runner (datasets, launchers, execution, expansion in `adbench.runner.sweep`) can import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from adbench.protocols import DEFAULT_PROTOCOL


@dataclass(frozen=True)
class MethodEntry:
    """One method of a sweep: registry name, preset and dotted overrides (``set``)."""

    name: str
    preset: str | None = None  # None: the sweep's `preset`
    set: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # leaderboard name; default: name, or name:preset when ambiguous
    random_weights: bool = False  # mechanics mode: the architecture without weights


@dataclass(frozen=True)
class SyntheticOptions:
    """How to generate the built-in synthetic dataset when its root does not exist yet."""

    n_categories: int = 6
    image_size: int = 64
    n_train: int = 16
    n_test: int = 12
    seed: int = 0


@dataclass(frozen=True)
class DatasetPart:
    """One dataset root inside a union dataset."""

    format: str
    root: str
    categories: tuple[str, ...] | Literal["all"] = "all"
    options: dict[str, Any] = field(default_factory=dict)  # reader options, e.g. {dataset: mpdd}


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset: one root (``format``, ``root``) or the union of several ``parts``.

    ``categories`` restricts the pool the category counts ``k`` draw from; ``options`` go to the
    format's reader (``{dataset: mpdd}``, ``{image_dir: realiad_1024}``). A union prefixes
    category names with each part's dataset name (``mvtec/bottle``).
    """

    format: str = ""
    root: str = ""
    categories: tuple[str, ...] | Literal["all"] = "all"
    name: str | None = None  # default: the format (or "union")
    options: dict[str, Any] = field(default_factory=dict)  # reader options, e.g. {dataset: mpdd}
    parts: tuple[DatasetPart, ...] = ()
    synthetic: SyntheticOptions | None = None  # format "synthetic" only: generation settings


@dataclass(frozen=True)
class TrainerSettings:
    """Lightning Trainer settings for every cell; unset (None) keeps the method's defaults."""

    max_epochs: int | None = None
    max_steps: int | None = None
    precision: int | str | None = None
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int | None = None
    limit_train_batches: int | float | None = None
    accelerator: str = "auto"
    devices: int | str | tuple[int, ...] = "auto"
    strategy: str = "auto"
    num_nodes: int = 1


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file (see the module docstring and ``benchmarks/*.yaml``)."""

    methods: Any  # "all" or a list of MethodEntry mappings; parsed by `load_sweep`
    datasets: tuple[DatasetEntry, ...]
    name: str = ""
    categories: tuple[int | Literal["all"], ...] = ("all",)
    seeds: tuple[int, ...] = (0,)
    preset: str = "paper"
    image_size: int | None = None
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    protocol: str = DEFAULT_PROTOCOL  # evaluation protocol (adbench.protocols.PROTOCOLS)
    # None: the protocol's value (streaming, max, 0.3 under adbench; 0.05 for MVTec AD 2)
    evaluation: Literal["streaming", "exact"] | None = None
    view_pooling: str | None = None  # object score from its view scores (Real-IAD): max, mean, topK
    aupro_fpr_limit: float | None = None
    subset_seed: int | None = 0  # None: each seed draws its own nested category subsets
    num_workers: int = 0
    checkpoints: bool = True
    plugins: tuple[str, ...] = ()
    launcher: Any = field(default_factory=lambda: {"name": "local"})


@dataclass(frozen=True)
class Cell:
    """One unit of work: a method on k categories of a dataset with one seed.

    Attributes:
        id: `config_hash` of ``config``.
        label: the method's leaderboard name.
        config: the resolved, hashed config (plain data; written to ``config.yaml``).
    """

    id: str
    label: str
    method: str
    preset: str
    dataset: str
    k: int
    seed: int
    categories: tuple[str, ...]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``cell.json``)."""
        return {**dataclasses.asdict(self), "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        """Inverse of `to_dict`."""
        return cls(**{**data, "categories": tuple(data["categories"])})
