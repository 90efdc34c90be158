"""Product categories of the synthetic dataset: what a category looks like and how it varies.

A category is drawn from a seeded generator into a `CategorySpec`, one of four families:
``texture`` (a CC0 photograph texture under a category-specific zoom, rotation and colour map),
``object`` (a shaded body with a layout of features on a plain or textured background),
``grid`` (a board with a regular array of components) and ``print`` (a label with printed bars,
text blocks and a logo). Normal images vary by pose, crop, lighting and sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from adbench.data.synthetic.render import (
    TEXTURES,
    Colour,
    Part,
    colourise,
    distance,
    render,
    smooth_noise,
    texture_sheet,
    transform,
)
from adbench.data.synthetic.render import hsv as _hsv

FAMILIES = ("texture", "object", "grid", "print")
SURFACE_DEFECTS = ("scratch", "hole", "stain", "texture", "color")
PART_DEFECTS = ("missing", "extra", "misplaced")


@dataclass(frozen=True)
class CategorySpec:
    """Everything that defines one synthetic category (independent of the image size).

    Attributes:
        name: folder name, ``<family>_<detail>_<number>``.
        family: one of `FAMILIES`.
        defects: the defect types of its test set.
        parts: the product at its reference pose; ``parts[0]`` carries surface defects.
        background: colour and optional texture (source, fov, turns, flip, dark, light,
            contrast, strength) of the background.
        shift: largest translation of the product per image (fraction of the side).
        rotation: largest rotation per image (radians).
        part_jitter: position noise of each feature per image (fraction of the side).
    """

    name: str
    family: str
    defects: tuple[str, ...]
    parts: tuple[Part, ...]
    background: dict[str, Any] = field(hash=False)
    shift: float = 0.0
    rotation: float = 0.0
    part_jitter: float = 0.0


@dataclass(frozen=True)
class Scene:
    """One normal image before sensor noise: background, posed parts and the defect support."""

    background: np.ndarray
    parts: list[Part]
    support: np.ndarray  # (H, W) bool: where surface defects may start


def category_spec(seed: int, number: int) -> CategorySpec:
    """The spec of category ``number`` for ``seed`` (independent of how many are generated)."""
    rng = np.random.default_rng([seed, number])
    family = FAMILIES[number % len(FAMILIES)]
    return _BUILDERS[family](rng, number)


def _colour_pair(rng: np.random.Generator) -> tuple[Colour, Colour]:
    hue = rng.uniform()
    dark = _hsv(hue + rng.uniform(-0.08, 0.08), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.35))
    light = _hsv(hue, rng.uniform(0.05, 0.6), rng.uniform(0.6, 0.95))
    return dark, light


def _texture_background(
    rng: np.random.Generator, strength: float, texture: str | None = None
) -> dict[str, Any]:
    dark, light = _colour_pair(rng)
    return {
        "texture": texture or str(rng.choice(TEXTURES)),
        "fov": float(rng.uniform(0.25, 0.7)),
        "turns": int(rng.integers(4)),
        "flip": bool(rng.integers(2)),
        "dark": dark,
        "light": light,
        "contrast": float(rng.uniform(0.8, 1.5)),
        "strength": strength,
        "colour": _hsv(rng.uniform(), rng.uniform(0, 0.4), rng.uniform(0.15, 0.85)),
    }


def _pick_defects(rng: np.random.Generator, options: tuple[str, ...]) -> tuple[str, ...]:
    count = int(rng.integers(3, 5))
    return tuple(sorted(rng.choice(options, size=min(count, len(options)), replace=False)))


def _texture(rng: np.random.Generator, number: int) -> CategorySpec:
    source = TEXTURES[(number // len(FAMILIES)) % len(TEXTURES)]  # cycle through the sources
    background = _texture_background(rng, strength=1.0, texture=source)
    name = f"texture_{background['texture']}_{number:03d}"
    return CategorySpec(name, "texture", _pick_defects(rng, SURFACE_DEFECTS), (), background)


def _contrasting(rng: np.random.Generator, value: float) -> Colour:
    """A colour whose value differs from ``value`` by at least 0.3."""
    v = rng.uniform(0.05, value - 0.3) if value > 0.5 else rng.uniform(value + 0.3, 0.98)
    return _hsv(rng.uniform(), rng.uniform(0.1, 0.9), v)


def _object(rng: np.random.Generator, number: int) -> CategorySpec:
    background = _texture_background(rng, strength=float(rng.choice([0.0, 0.15, 0.3])))
    shape = str(rng.choice(["circle", "ellipse", "box", "ngon", "ring"]))
    w = rng.uniform(0.27, 0.37)
    h = w if shape in ("circle", "ngon", "ring") else w * rng.uniform(0.6, 0.9)
    body_v = float(rng.uniform(0.25, 0.9))
    body = Part(
        "ellipse" if shape == "circle" else shape,
        0.5,
        0.5,
        w,
        h,
        colour=_hsv(rng.uniform(), rng.uniform(0.1, 0.8), body_v),
        rounding=float(rng.uniform(0.1, 0.5)),
        sides=int(rng.integers(5, 9)),
        thickness=float(rng.uniform(0.35, 0.55)),
        shade=float(rng.uniform(0.1, 0.4)),
    )
    ink = _contrasting(rng, body_v)
    size = rng.uniform(0.035, 0.06)
    kind = str(rng.choice(["ellipse", "box", "ngon"]))
    features = []
    count = int(rng.integers(3, 8))
    radius = rng.uniform(0.45, 0.7) * min(w, h) * (1.3 if shape == "ring" else 1.0)
    radius = min(radius, min(w, h) - size * 1.2) if shape != "ring" else min(w, h) - size * 1.5
    start = rng.uniform(0, 2 * np.pi)
    for k in range(count):
        angle = start + 2 * np.pi * k / count
        features.append(
            Part(
                kind,
                0.5 + radius * np.cos(angle),
                0.5 + radius * np.sin(angle),
                size,
                size * rng.uniform(0.6, 1.0),
                ink,
                angle=angle,
                rounding=0.3,
                feature=True,
            )
        )
    if shape != "ring" and rng.uniform() < 0.6:
        centre = rng.uniform(0.2, 0.35) * min(w, h)
        features.append(
            Part(
                str(rng.choice(["ring", "ngon", "ellipse"])),
                0.5,
                0.5,
                centre,
                centre,
                _contrasting(rng, body_v),
                sides=int(rng.integers(3, 7)),
                feature=True,
            )
        )
    return CategorySpec(
        f"object_{shape}_{number:03d}",
        "object",
        _pick_defects(rng, ("scratch", "hole", "stain", "color", *PART_DEFECTS)),
        (body, *features),
        background,
        shift=float(rng.uniform(0.02, 0.06)),
        rotation=float(rng.choice([0.05, 0.3, np.pi])),
        part_jitter=float(rng.uniform(0.0, 0.006)),
    )


def _grid(rng: np.random.Generator, number: int) -> CategorySpec:
    rows, cols = (int(v) for v in rng.integers(2, 7, size=2))
    extent = rng.uniform(0.36, 0.46)
    board_v = float(rng.uniform(0.1, 0.9))
    board = Part(
        "box",
        0.5,
        0.5,
        extent,
        extent * rng.uniform(0.8, 1.0),
        _hsv(rng.uniform(), rng.uniform(0.2, 0.9), board_v),
        rounding=0.05,
        shade=0.1,
    )
    pitch_x, pitch_y = 2 * board.w / cols, 2 * board.h / rows
    size = min(pitch_x, pitch_y) * rng.uniform(0.22, 0.36)
    palette = [_contrasting(rng, board_v) for _ in range(int(rng.integers(1, 4)))]
    step = int(rng.integers(1, 3))
    kind = str(rng.choice(["box", "ellipse", "ngon"]))
    trace_colour = _hsv(rng.uniform(), 0.3, board_v + (0.25 if board_v < 0.5 else -0.25))
    parts = [board]
    if rng.uniform() < 0.6:
        parts += [
            Part(
                "box",
                0.5,
                0.5 - board.h + pitch_y * (r + 0.5),
                board.w * 0.9,
                size * 0.15,
                trace_colour,
            )
            for r in range(rows)
        ]
    for r in range(rows):
        for c in range(cols):
            parts.append(
                Part(
                    kind,
                    0.5 - board.w + pitch_x * (c + 0.5),
                    0.5 - board.h + pitch_y * (r + 0.5),
                    size,
                    size * rng.uniform(0.55, 1.0) if kind == "box" else size,
                    palette[(r * step + c) % len(palette)],
                    rounding=0.2,
                    sides=6,
                    shade=0.2,
                    feature=True,
                )
            )
    return CategorySpec(
        f"grid_{rows}x{cols}_{number:03d}",
        "grid",
        _pick_defects(rng, ("scratch", "stain", "color", *PART_DEFECTS)),
        tuple(parts),
        _texture_background(rng, strength=float(rng.choice([0.0, 0.2]))),
        shift=float(rng.uniform(0.005, 0.02)),
        rotation=float(rng.uniform(0.0, 0.03)),
        part_jitter=float(rng.uniform(0.0, 0.004)),
    )


def _print(rng: np.random.Generator, number: int) -> CategorySpec:
    w, h = rng.uniform(0.3, 0.44), rng.uniform(0.22, 0.4)
    paper = Part(
        "box",
        0.5,
        0.5,
        w,
        h,
        _hsv(rng.uniform(), rng.uniform(0, 0.25), rng.uniform(0.75, 0.98)),
        rounding=float(rng.uniform(0.02, 0.3)),
        shade=0.05,
    )
    ink = _hsv(rng.uniform(), rng.uniform(0.2, 1.0), rng.uniform(0.05, 0.45))
    parts = [paper]
    bars = int(rng.integers(6, 14))
    widths = rng.uniform(0.3, 1.0, size=bars)
    x = 0.5 - w * 0.8
    step = 1.6 * w / bars
    for width in widths:
        parts.append(
            Part("box", x + step / 2, 0.5 + h * 0.55, step * width / 2, h * 0.28, ink, feature=True)
        )
        x += step
    for line in range(int(rng.integers(1, 4))):
        y = 0.5 - h * 0.7 + line * h * 0.28
        x = 0.5 - w * 0.8
        while x < 0.5 + w * 0.3:
            length = rng.uniform(0.03, 0.12)
            parts.append(Part("box", x + length / 2, y, length / 2, h * 0.07, ink, feature=True))
            x += length + 0.02
    logo = rng.uniform(0.05, 0.09)
    parts.append(
        Part(
            str(rng.choice(["ring", "ngon", "ellipse"])),
            0.5 + w * 0.7,
            0.5 - h * 0.55,
            logo,
            logo,
            _hsv(rng.uniform(), 0.8, 0.6),
            sides=3,
            feature=True,
        )
    )
    sx, sy = rng.choice([-1.0, 1.0], size=2)  # mirror the layout: barcode top or bottom, ...
    parts = [replace(p, x=0.5 + sx * (p.x - 0.5), y=0.5 + sy * (p.y - 0.5)) for p in parts]
    return CategorySpec(
        f"print_{'barcode' if bars > 9 else 'label'}_{number:03d}",
        "print",
        _pick_defects(rng, ("scratch", "stain", "color", *PART_DEFECTS)),
        tuple(parts),
        _texture_background(rng, strength=float(rng.choice([0.0, 0.25]))),
        shift=float(rng.uniform(0.01, 0.04)),
        rotation=float(rng.uniform(0.0, 0.08)),
        part_jitter=float(rng.uniform(0.0, 0.003)),
    )


_BUILDERS = {"texture": _texture, "object": _object, "grid": _grid, "print": _print}


def background_sheet(spec: CategorySpec, size: int) -> np.ndarray | None:
    """The texture sheet of a category's background (computed once per category and size)."""
    bg = spec.background
    if not bg["strength"]:
        return None
    return texture_sheet(bg["texture"], bg["fov"], bg["turns"], bg["flip"], size)


def sample_scene(
    spec: CategorySpec, sheet: np.ndarray | None, rng: np.random.Generator, size: int
) -> Scene:
    """Draw one normal image's background and posed parts."""
    bg = spec.background
    image = np.broadcast_to(np.asarray(bg["colour"], np.float32), (size, size, 3)).copy()
    if sheet is not None:
        top = int(rng.integers(0, sheet.shape[0] - size + 1))
        left = int(rng.integers(0, sheet.shape[1] - size + 1))
        crop = colourise(
            sheet[top : top + size, left : left + size], bg["dark"], bg["light"], bg["contrast"]
        )
        image += bg["strength"] * (crop - image)
    image *= 1.0 + 0.04 * smooth_noise(rng, size, 2)[..., None]
    shift = rng.uniform(-spec.shift, spec.shift, size=2)
    angle = rng.uniform(-spec.rotation, spec.rotation)
    scale = rng.uniform(0.97, 1.03) if spec.parts else 1.0
    parts = []
    for part in spec.parts:
        dx, dy = shift + (rng.normal(0, spec.part_jitter, 2) if part.feature else 0.0)
        parts.append(transform(part, dx, dy, angle, scale))
    if parts:
        support = distance(parts[0], size) < -1.0
    else:
        support = np.ones((size, size), dtype=bool)
    return Scene(np.clip(image, 0, 1), parts, support)


def draw(scene: Scene) -> np.ndarray:
    """Render a scene to an (H, W, 3) float image."""
    return np.clip(render(scene.background, scene.parts), 0, 1)
