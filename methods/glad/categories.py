"""The per-category settings of GLAD's official multi-class scripts (Yao et al., ECCV 2024).

The official code restricts synthetic anomalies and test maps to the object foreground for the
object categories below (Otsu on the gray image; mode 1: objects on a light background, mode 2:
on a dark one) and uses both nearest-neighbour directions for three categories. Categories
outside these lists (other datasets) use the values in the config.
"""

from __future__ import annotations

from collections.abc import Sequence

FOREGROUND_CATEGORIES = frozenset(
    {
        # mode 1
        "screw",
        "bottle",
        "capsule",
        "zipper",
        "bracket_black",
        "bracket_brown",
        "metal_plate",
        # mode 2
        "hazelnut",
        "pill",
        "metal_nut",
        "toothbrush",
        "candle",
        "cashew",
        "chewinggum",
        "fryum",
        "macaroni1",
        "macaroni2",
        "pipe_fryum",
        "bracket_white",
    }
)
WHOLE_IMAGE_CATEGORIES = frozenset(
    {  # mode 3: textures and layouts, no foreground restriction
        "tile",
        "grid",
        "cable",
        "carpet",
        "leather",
        "wood",
        "transistor",
        "capsules",
        "pcb1",
        "pcb2",
        "pcb3",
        "pcb4",
        "connector",
        "tubes",
    }
)
BIDIRECTIONAL_CATEGORIES = frozenset({"transistor", "pcb1", "pcb4"})


def base_name(name: str) -> str:
    """'mvtec/bottle' or 'bottle' -> 'bottle'."""
    return name.rsplit("/", 1)[-1]


def foreground_flags(names: Sequence[str], default: bool) -> list[bool]:
    """Per category name: restrict to the foreground (official lists; else ``default``)."""
    flags = []
    for name in map(base_name, names):
        known = name in FOREGROUND_CATEGORIES or name in WHOLE_IMAGE_CATEGORIES
        flags.append(name in FOREGROUND_CATEGORIES if known else default)
    return flags


def bidirectional_flags(names: Sequence[str], default: bool) -> list[bool]:
    """Per category name: whether to use both NN directions.

    The official list decides for official categories; ``default`` for the others.
    """
    official = FOREGROUND_CATEGORIES | WHOLE_IMAGE_CATEGORIES
    return [
        name in BIDIRECTIONAL_CATEGORIES if name in official else default
        for name in map(base_name, names)
    ]
