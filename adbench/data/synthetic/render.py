"""Drawing primitives of the synthetic dataset: anti-aliased shapes, noise, texture sheets.

Images are float32 arrays (H, W, 3) in [0, 1]; positions and sizes are fractions of the image
side, so a category looks the same at every resolution. Shapes are drawn from signed distance
fields: coverage = clip(0.5 - distance_px, 0, 1) gives one pixel of anti-aliasing.
"""

from __future__ import annotations

import colorsys
import itertools
from dataclasses import dataclass, replace
from functools import cache, lru_cache

import numpy as np
from PIL import Image

from adbench.errors import ConfigError

Colour = tuple[float, float, float]


@dataclass(frozen=True)
class Part:
    """One drawn element of a product.

    Attributes:
        shape: ``box`` (rounded rectangle), ``ellipse``, ``ngon`` (regular polygon) or ``ring``.
        x, y: centre, as fractions of the image side.
        w, h: half extents, as fractions of the image side.
        angle: rotation in radians.
        colour: RGB in [0, 1].
        rounding: box corner radius as a fraction of min(w, h).
        sides: number of sides of an ``ngon``.
        thickness: ring width as a fraction of w.
        shade: strength of the lighting gradient across the part.
        feature: defects may remove, move, add or recolour it.
    """

    shape: str
    x: float
    y: float
    w: float
    h: float
    colour: Colour
    angle: float = 0.0
    rounding: float = 0.0
    sides: int = 6
    thickness: float = 0.3
    shade: float = 0.0
    feature: bool = False


def hsv(h: float, s: float, v: float) -> Colour:
    """RGB colour from hue (wrapped), saturation and value."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return (r, g, b)


def transform(part: Part, dx: float, dy: float, angle: float, scale: float = 1.0) -> Part:
    """Rotate ``part`` by ``angle`` about the image centre, scale it, then shift it by (dx, dy)."""
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = part.x - 0.5, part.y - 0.5
    return replace(
        part,
        x=0.5 + scale * (cos * x - sin * y) + dx,
        y=0.5 + scale * (sin * x + cos * y) + dy,
        w=part.w * scale,
        h=part.h * scale,
        angle=part.angle + angle,
    )


def _window(part: Part, size: int) -> tuple[slice, slice]:
    """The pixel rows and columns a part can cover."""
    reach = max(part.w, part.h) * 1.5 * size + 2

    def span(centre: float) -> slice:
        return slice(
            int(min(max(centre - reach, 0), size)), int(min(max(centre + reach + 1, 0), size))
        )

    return span(part.y * size), span(part.x * size)


@lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each (size, size) float32 (read-only, cached)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def distance(part: Part, size: int, window: tuple[slice, slice] | None = None) -> np.ndarray:
    """Signed distance (pixels, negative inside) of ``part`` over ``window`` of the image."""
    yy, xx = pixel_grid(size)
    if window is not None:
        yy, xx = yy[window], xx[window]
    cos, sin = np.cos(part.angle), np.sin(part.angle)
    px, py = xx - part.x * size, yy - part.y * size
    lx, ly = cos * px + sin * py, -sin * px + cos * py
    w, h = part.w * size, part.h * size
    if part.shape == "box":
        r = part.rounding * min(w, h)
        qx, qy = np.abs(lx) - (w - r), np.abs(ly) - (h - r)
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0) - r
    if part.shape == "ellipse":
        return (np.hypot(lx / w, ly / h) - 1.0) * min(w, h)
    if part.shape == "ring":
        half = part.thickness * w / 2
        return np.abs(np.hypot(lx, ly) - (w - half)) - half
    if part.shape == "ngon":
        theta = np.arctan2(ly, lx)
        sector = 2 * np.pi / part.sides
        local = np.mod(theta + sector / 2, sector) - sector / 2
        return np.hypot(lx, ly) * np.cos(local) - w * np.cos(np.pi / part.sides)
    raise ConfigError(f"Part.shape must be 'box', 'ellipse', 'ngon' or 'ring', got '{part.shape}'")


def paint(image: np.ndarray, part: Part, alpha: float = 1.0) -> np.ndarray:
    """Draw ``part`` onto ``image`` in place (anti-aliased, with a lighting gradient)."""
    size = image.shape[0]
    window = _window(part, size)
    d = distance(part, size, window)
    cover = np.clip(0.5 - d, 0.0, 1.0)[..., None] * alpha
    colour = np.asarray(part.colour, dtype=np.float32)
    if part.shade:
        yy, xx = (grid[window] for grid in pixel_grid(size))
        light = ((xx - part.x * size) - (yy - part.y * size)) / (2 * max(part.w, part.h) * size)
        colour = colour * (1.0 + part.shade * light[..., None])
    region = image[window]
    region += cover * (np.clip(colour, 0, 1) - region)
    return image


def render(background: np.ndarray, parts: list[Part]) -> np.ndarray:
    """Draw ``parts`` in order onto a copy of ``background`` (H, W, 3)."""
    image = background.copy()
    for part in parts:
        paint(image, part)
    return image


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise (size, size) in [-1, 1] with about ``cells`` bumps per side."""
    coarse = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1)).astype(np.float32)
    fine = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(fine, dtype=np.float32), -1.0, 1.0)


def blob_distance(
    rng: np.random.Generator, size: int, cx: float, cy: float, radius: float, wobble: float
) -> np.ndarray:
    """Signed distance (pixels) of an irregular blob centred at (cx, cy) px, radius in px."""
    yy, xx = pixel_grid(size)
    stretch = rng.uniform(0.6, 1.0)
    angle = rng.uniform(0, np.pi)
    px, py = xx - cx, yy - cy
    lx = np.cos(angle) * px + np.sin(angle) * py
    ly = (-np.sin(angle) * px + np.cos(angle) * py) / stretch
    edge = smooth_noise(rng, size, max(2, int(4 * size / max(radius, 1.0)))) * wobble * radius
    return np.hypot(lx, ly) - radius + edge


def polyline_distance(points: np.ndarray, size: int) -> np.ndarray:
    """Distance (pixels) from every pixel to a polyline given as (P, 2) xy points in pixels."""
    yy, xx = pixel_grid(size)
    best = np.full((size, size), np.inf, dtype=np.float32)
    for (ax, ay), (bx, by) in itertools.pairwise(points):
        vx, vy = bx - ax, by - ay
        t = np.clip(((xx - ax) * vx + (yy - ay) * vy) / max(vx * vx + vy * vy, 1e-6), 0, 1)
        best = np.minimum(best, np.hypot(xx - ax - t * vx, yy - ay - t * vy))
    return best


# Real CC0 photographs shipped with scikit-image, cropped to their texture-like regions.
_TEXTURE_CROPS = {
    "brick": ("brick", (slice(None), slice(None))),
    "grass": ("grass", (slice(None), slice(None))),
    "gravel": ("gravel", (slice(None), slice(None))),
    "lawn": ("camera", (slice(300, 512), slice(410, 512))),
    "wood": ("coffee", (slice(180, 400), slice(470, 600))),
    "fur": ("chelsea", (slice(0, 80), slice(90, 300))),
}
TEXTURES = tuple(_TEXTURE_CROPS)


@cache
def texture_source(name: str) -> np.ndarray:
    """Gray texture crop (h, w) float32 stretched to [0, 1] (1st-99th percentile)."""
    import skimage.data

    loader, crop = _TEXTURE_CROPS[name]
    image = np.asarray(getattr(skimage.data, loader)(), dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=-1)
    image = image[crop]
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1).astype(np.float32)


def texture_sheet(name: str, fov: float, turns: int, flip: bool, size: int) -> np.ndarray:
    """A texture resampled so that a (size, size) crop shows ``fov`` of the source's short side.

    Returns a gray (h, w) float32 sheet with h, w >= size.
    """
    source = np.rot90(texture_source(name), turns)
    source = source[:, ::-1] if flip else source
    factor = size / (fov * min(source.shape))
    shape = (max(size, round(source.shape[1] * factor)), max(size, round(source.shape[0] * factor)))
    resized = Image.fromarray(np.ascontiguousarray(source, dtype=np.float32)).resize(
        shape, Image.BILINEAR
    )
    return np.asarray(resized, dtype=np.float32)


def colourise(gray: np.ndarray, dark: Colour, light: Colour, contrast: float) -> np.ndarray:
    """Map a gray image in [0, 1] to the colours between ``dark`` and ``light`` (H, W, 3)."""
    g = np.clip(0.5 + (gray - 0.5) * contrast, 0, 1)[..., None]
    low, high = np.asarray(dark, np.float32), np.asarray(light, np.float32)
    return (low + (high - low) * g).astype(np.float32)
