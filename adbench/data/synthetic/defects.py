"""Defects of the synthetic dataset, each drawn onto a normal scene.

Surface defects (scratch, hole, stain, texture, color) change pixels of the rendered image inside
the product (``Scene.support``); part defects (missing, extra, misplaced, and color when the
product has features) change the product's parts and render again. Sizes are drawn
log-uniformly, from a few pixels to a large share of the product. The ground-truth mask is
computed afterwards from the pixels that changed (`changed_mask`), so it is exact.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from adbench.data.synthetic.products import Scene, draw
from adbench.data.synthetic.render import (
    TEXTURES,
    blob_distance,
    colourise,
    hsv,
    polyline_distance,
    texture_sheet,
)
from adbench.errors import ConfigError, unknown_name

DEFECTS = ("scratch", "hole", "stain", "texture", "color", "missing", "extra", "misplaced")
CHANGE_THRESHOLD = 0.06  # a pixel belongs to the mask when a channel changed by more than this


def changed_mask(normal: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels a defect changed visibly."""
    return np.abs(anomalous - normal).max(axis=-1) > CHANGE_THRESHOLD


def apply_defect(
    kind: str, scene: Scene, normal: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Return a copy of ``normal`` (H, W, 3) with one defect of ``kind``."""
    features = [i for i, p in enumerate(scene.parts) if p.feature]
    if kind in ("missing", "extra", "misplaced") or (kind == "color" and features):
        return draw(replace(scene, parts=_edit_parts(kind, scene, features, rng)))
    size = normal.shape[0]
    ys, xs = np.nonzero(scene.support)
    pick = int(rng.integers(len(ys)))
    cx, cy = xs[pick] + 0.5, ys[pick] + 0.5
    radius = size * float(np.exp(rng.uniform(np.log(0.025), np.log(0.16))))
    image = normal.copy()
    if kind == "scratch":
        return _scratch(image, cx, cy, rng)
    if kind == "hole":
        return _hole(image, cx, cy, radius * 0.6, rng)
    alpha = np.clip(0.5 - blob_distance(rng, size, cx, cy, radius, 0.35), 0, 1)[..., None]
    if kind == "stain":  # dark dirt on bright surfaces, bright residue on dark ones
        bright = image[alpha[..., 0] > 0.5].mean() > 0.45 if (alpha > 0.5).any() else True
        value = rng.uniform(0.02, 0.25) if bright else rng.uniform(0.7, 0.95)
        colour = np.asarray(hsv(rng.uniform(), rng.uniform(0.3, 0.9), value))
        opacity = rng.uniform(0.6, 0.9)
        return image + alpha * opacity * (colour - image)
    if kind == "texture":
        sheet = texture_sheet(str(rng.choice(TEXTURES)), rng.uniform(0.3, 0.7), 0, False, size)
        dark, light = hsv(rng.uniform(), 0.5, 0.15), hsv(rng.uniform(), 0.5, 0.9)
        patch = colourise(sheet[:size, :size], dark, light, 1.2)
        return image + alpha * (patch - image)
    if kind == "color":
        tint = 1.0 + rng.choice([-1.0, 1.0], size=3) * rng.uniform(0.3, 0.6, size=3)
        return image + alpha * (np.clip(image * tint + 0.1 * (tint - 1), 0, 1) - image)
    raise unknown_name("defect", kind, DEFECTS)


def _scratch(image: np.ndarray, cx: float, cy: float, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    length = size * np.exp(rng.uniform(np.log(0.08), np.log(0.5)))
    segments = int(rng.integers(1, 4))
    heading = rng.uniform(0, 2 * np.pi)
    points = [(cx, cy)]
    for _ in range(segments):
        heading += rng.uniform(-0.4, 0.4)
        x, y = points[-1]
        points.append(
            (x + np.cos(heading) * length / segments, y + np.sin(heading) * length / segments)
        )
    width = max(1.0, size * rng.uniform(0.008, 0.025))
    cover = np.clip(width / 2 + 0.5 - polyline_distance(np.asarray(points), size), 0, 1)[..., None]
    local = image[cover[..., 0] > 0].mean() if (cover > 0).any() else 0.5
    target = np.clip(local + (0.45 if local < 0.5 else -0.45), 0, 1)
    return image + cover * rng.uniform(0.75, 1.0) * (target - image)


def _hole(
    image: np.ndarray, cx: float, cy: float, radius: float, rng: np.random.Generator
) -> np.ndarray:
    size = image.shape[0]
    radius = max(radius, 1.5)
    d = blob_distance(rng, size, cx, cy, radius, 0.1)
    inside = np.clip(0.5 - d, 0, 1)[..., None]
    rim = np.clip(0.5 - np.abs(d + radius * 0.15) + radius * 0.1, 0, 1)[..., None]
    dark = image * rng.uniform(0.05, 0.2)
    image = image + inside * (dark - image)
    return image + rim * 0.5 * (np.clip(image + 0.35, 0, 1) - image)


def _edit_parts(kind: str, scene: Scene, features: list[int], rng: np.random.Generator) -> list:
    parts = list(scene.parts)
    if not features:
        raise ConfigError(f"defect '{kind}' needs a product with features; this scene has none")
    target = features[int(rng.integers(len(features)))]
    part = parts[target]
    if kind == "missing":
        del parts[target]
    elif kind == "color":
        colour = np.asarray(part.colour)
        shifted = hsv(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.2, 0.95))
        if np.abs(np.asarray(shifted) - colour).max() < 0.3:
            shifted = tuple(1.0 - colour)
        parts[target] = replace(part, colour=tuple(float(c) for c in shifted))
    elif kind == "misplaced":
        step = max(part.w, part.h) * rng.uniform(0.8, 1.6)
        heading = rng.uniform(0, 2 * np.pi)
        parts[target] = replace(
            part,
            x=part.x + step * np.cos(heading),
            y=part.y + step * np.sin(heading),
            angle=part.angle + rng.uniform(-0.8, 0.8),
        )
    else:  # extra: a copy of a feature somewhere else on the product
        ys, xs = np.nonzero(scene.support)
        pick = int(rng.integers(len(ys)))
        size = scene.support.shape[0]
        parts.append(
            replace(
                part,
                x=(xs[pick] + 0.5) / size,
                y=(ys[pick] + 0.5) / size,
                angle=rng.uniform(0, np.pi),
            )
        )
    return parts
