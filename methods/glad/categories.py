"""The per-category settings of GLAD's official multi-class code (Yao et al., ECCV 2024).

The official dataset code (``dataset/dataset_multiclass.py`` at 9de702b, 2024-06-25, lines
211-221 for the synthesis and 161-171 for the test mask; unchanged at HEAD) restricts synthetic
anomalies and test maps to the object for the categories of two lists, with a fixed Otsu class
per list (``generate_target_foreground_mask``, lines 252-269, on the gray image): mode 1 keeps
the dark class (at or below the threshold), mode 2 the bright class. Every other category, named
in its mode-3 list or not, is mode 3: the whole image. The test script (``main_multi.py`` at
8317418, 2024-07-13, lines 319 and 324) uses both nearest-neighbour directions for three
categories.
"""

from __future__ import annotations

from collections.abc import Sequence

DARK_OBJECT_CATEGORIES = frozenset(  # mode 1: the object is the dark Otsu class
    {"screw", "bottle", "capsule", "zipper", "bracket_black", "bracket_brown", "metal_plate"}
)
BRIGHT_OBJECT_CATEGORIES = frozenset(  # mode 2: the object is the bright Otsu class
    {
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
FOREGROUND_CATEGORIES = DARK_OBJECT_CATEGORIES | BRIGHT_OBJECT_CATEGORIES
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


def foreground_polarity(names: Sequence[str]) -> list[int]:
    """Per category name: its object's Otsu class, as `adbench.synthesis.otsu_foreground` reads it.

    1 = the bright class (mode 2), -1 = the dark class (mode 1), 0 = not in the official table
    (the class rarer along the border decides, for a category given the foreground by config).
    """
    return [
        1 if name in BRIGHT_OBJECT_CATEGORIES else -1 if name in DARK_OBJECT_CATEGORIES else 0
        for name in map(base_name, names)
    ]


def bidirectional_flags(names: Sequence[str], default: bool) -> list[bool]:
    """Per category name: whether to use both NN directions.

    The official list decides for official categories; ``default`` for the others.
    """
    official = FOREGROUND_CATEGORIES | WHOLE_IMAGE_CATEGORIES
    return [
        name in BIDIRECTIONAL_CATEGORIES if name in official else default
        for name in map(base_name, names)
    ]
