"""`CategorySubset`: seeded, nested subsets of k categories for category-scaling curves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adbench.data.index import SampleIndex
from adbench.errors import ConfigError


@dataclass(frozen=True)
class CategorySubset:
    """Pick ``k`` categories of an index at random, reproducibly.

    With ``nested=True`` the categories are taken in the order of one seeded permutation of the
    sorted category names, so for a fixed seed the subset for k is contained in the subset for
    every larger k. With ``nested=False`` each k draws its own subset.

    Attributes:
        k: number of categories.
        seed: seed of the permutation.
        nested: share one permutation across k.
    """

    k: int
    seed: int = 0
    nested: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"CategorySubset: k must be a positive integer, got {self.k!r}")

    def names(self, categories: list[str]) -> list[str]:
        """The chosen names (in the order they were drawn) out of ``categories``."""
        pool = sorted(categories)
        if self.k > len(pool):
            raise ConfigError(
                f"CategorySubset: k={self.k} but the index has only {len(pool)} categories; "
                f"use k <= {len(pool)} or add datasets"
            )
        key = [self.seed] if self.nested else [self.seed, self.k]
        order = np.random.default_rng(key).permutation(len(pool))
        return [pool[i] for i in order[: self.k]]

    def apply(self, index: SampleIndex) -> SampleIndex:
        """The rows of the chosen categories."""
        return index.select(self.names(index.categories))

    __call__ = apply
