"""Batched, on-device anomaly synthesis for training (used by GLAD and MDD-Net).

A Perlin-noise mask M (DRAEM: Zavrtanik et al., ICCV 2021, Sec. 3.3) is filled from a texture
source and blended into the image:

    I_a = I (1 - M) + (1 - beta) S M + beta I M

with beta drawn from ``SynthesisConfig.beta`` per image (GLAD's formula; MDD-Net draws an opacity
from U(0.1, 1), which is the same family with another range). The source S is a DTD image when a
DTD root is given, otherwise the CC0 textures shipped with scikit-image, or (``source="self"``)
the image itself with its 8 x 8 cells shuffled; `AnomalySynthesizer.record` names what was used,
for each run's ``run_record``. With ``augment = n`` the DTD or self source first gets n distinct
random photometric operations of DRAEM's list (`photometric_augment`), as DRAEM and GLAD do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from adbench.data.dataset import load_image
from adbench.data.formats.common import IMAGE_EXTENSIONS
from adbench.errors import ConfigError, DatasetFormatError, DatasetNotFoundError

Source = Literal["auto", "dtd", "self", "textures"]
SELF_GRID = 8  # "self" source: the image with its 8 x 8 cells shuffled (GLAD)
AUGMENTATIONS = 10  # the operations of `photometric_augment`


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of `AnomalySynthesizer` (defaults: DRAEM's)."""

    probability: float = 0.5  # share of images that receive an anomaly
    perlin_scales: tuple[int, int] = (0, 6)  # lattice cells per axis: 2**k, k ~ U{min..max}
    threshold: float = 0.5  # Perlin noise above it is anomalous
    beta: tuple[float, float] = (0.0, 0.8)  # blending factor range (kept share of the image)
    source: Source = "auto"  # auto = dtd when dtd_root is set, else textures
    dtd_root: str | None = None  # a folder of DTD images (searched recursively)
    rotate: bool = True  # rotate the noise by a random angle
    foreground: bool = False  # keep anomalies on the Otsu foreground (objects)
    augment: int = 0  # distinct random photometric operations on a DTD or self source (DRAEM: 3)

    def __post_init__(self) -> None:
        low, high = self.perlin_scales
        if not 0 <= self.augment <= AUGMENTATIONS:
            raise ConfigError(
                f"synthesis.augment must be in [0, {AUGMENTATIONS}], got {self.augment}"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigError(f"synthesis.probability must be in [0, 1], got {self.probability}")
        if not 0 <= low <= high <= 10:
            raise ConfigError(
                f"synthesis.perlin_scales must be 0 <= min <= max <= 10, got {low, high}"
            )
        if not 0.0 <= self.beta[0] <= self.beta[1] <= 1.0:
            raise ConfigError(f"synthesis.beta must satisfy 0 <= low <= high <= 1, got {self.beta}")
        if self.source not in ("auto", "dtd", "self", "textures"):
            raise ConfigError(
                f"synthesis.source must be auto, dtd, self or textures, got '{self.source}'"
            )
        if self.source == "dtd" and not self.dtd_root:
            raise ConfigError("synthesis.source is 'dtd' but synthesis.dtd_root is not set")


def _fade(t: Tensor) -> Tensor:
    return t * t * t * (t * (t * 6 - 15) + 10)


def _generator_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def perlin_noise(
    shape: tuple[int, ...],
    scale: tuple[int, int],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Gradient (Perlin) noise of ``shape`` (..., H, W) in about [-1, 1].

    Args:
        shape: output shape; leading dimensions are independent noise fields.
        scale: lattice cells along (H, W); larger means finer noise. H and W need not be
            multiples of it.
        generator: random generator (its device draws the random numbers).
        device: output device.
    """
    *lead, height, width = shape
    device = torch.device(device or "cpu")
    cells_y, cells_x = scale
    count = math.prod(lead)
    angles = (
        2
        * math.pi
        * torch.rand(
            count,
            cells_y + 1,
            cells_x + 1,
            generator=generator,
            device=_generator_device(generator, device),
        ).to(device)
    )
    grads = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    ys = (torch.arange(height, device=device) + 0.5) * cells_y / height
    xs = (torch.arange(width, device=device) + 0.5) * cells_x / width
    y0, x0 = ys.floor().long().clamp(max=cells_y - 1), xs.floor().long().clamp(max=cells_x - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]

    def corner(dy: int, dx: int) -> Tensor:
        g = grads.index_select(1, y0 + dy).index_select(2, x0 + dx)  # (count, H, W, 2)
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    u, v = _fade(fx), _fade(fy)
    top = torch.lerp(corner(0, 0), corner(0, 1), u)
    bottom = torch.lerp(corner(1, 0), corner(1, 1), u)
    return (math.sqrt(2.0) * torch.lerp(top, bottom, v)).reshape(*lead, height, width)


def otsu_foreground(images: Tensor, polarity: Tensor | None = None) -> Tensor:
    """(B, 1, H, W) bool: the object's Otsu class of each gray image.

    ``polarity`` (B,) int per image: 1 = the bright class, -1 = the dark class (at or below the
    threshold), 0 = the class rarer along the border; None = 0 for every image.
    """
    gray = images.mean(dim=1)
    batch = gray.shape[0]
    bins = (gray.clamp(0, 1) * 255).round().long().flatten(1)
    hist = torch.zeros(batch, 256, device=images.device).scatter_add_(
        1, bins, torch.ones_like(bins, dtype=torch.float32)
    )
    p = hist / hist.sum(dim=1, keepdim=True)
    levels = torch.arange(256, device=images.device, dtype=torch.float32)
    w0, mu = p.cumsum(1), (p * levels).cumsum(1)
    between = (mu[:, -1:] * w0 - mu) ** 2 / (w0 * (1 - w0)).clamp(min=1e-12)
    bright = bins.view_as(gray) > between.argmax(dim=1).view(batch, 1, 1)  # as cv2, on 8 bits
    border = torch.cat([bright[:, 0], bright[:, -1], bright[:, :, 0], bright[:, :, -1]], dim=1)
    background_bright = border.float().mean(dim=1).view(batch, 1, 1) > 0.5
    if polarity is not None:
        polarity = polarity.to(images.device).view(batch, 1, 1)
        background_bright = torch.where(polarity == 0, background_bright, polarity < 0)
    return (bright != background_bright).unsqueeze(1)


def _affine(
    images: Tensor,
    size: tuple[int, int],
    generator: torch.Generator | None,
    zoom: tuple[float, float],
) -> Tensor:
    """Random rotation, zoom and shift of each image (B, C, h, w) -> (B, C, H, W)."""
    batch, device = images.shape[0], images.device
    r = torch.rand(batch, 4, generator=generator, device=_generator_device(generator, device))
    r = r.to(device)
    angle = 2 * math.pi * r[:, 0]
    scale = zoom[0] + (zoom[1] - zoom[0]) * r[:, 1]
    shift = (r[:, 2:] * 2 - 1) * (1 - scale[:, None])
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, [batch, images.shape[1], *size], align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def _augment_one(image: Tensor, op: int, r: Tensor) -> Tensor:
    """Operation ``op`` of DRAEM's list on one image (3, H, W) in [0, 1].

    Uniform draws ``r`` (4,) set its parameters (torchvision equivalents of the imgaug
    operations).
    """
    from torchvision.transforms.v2 import functional as TF

    def as_uint8(x: Tensor) -> Tensor:
        return (x * 255).round().clamp(0, 255).to(torch.uint8)

    if op == 0:  # GammaContrast((0.5, 2.0), per_channel=True)
        return image.clamp(min=0) ** (0.5 + 1.5 * r[:3]).view(3, 1, 1)
    if op == 1:  # MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30))
        return image * (0.8 + 0.4 * r[0]) + (r[1] * 60 - 30) / 255
    if op == 2:  # pillike.EnhanceSharpness(factor=(0, 2))
        return TF.adjust_sharpness(image, float(2 * r[0]))
    if op == 3:  # AddToHueAndSaturation((-50, 50)): hue and saturation shifts of up to 50/255
        hued = TF.adjust_hue(image.clamp(0, 1), float((r[0] * 2 - 1) * 50 / 255))
        return TF.adjust_saturation(hued, float(1 + (r[1] * 2 - 1) * 50 / 255))
    if op == 4:  # Solarize(p=0.5, threshold=(32, 128))
        return TF.solarize(image, float((32 + 96 * r[1]) / 255)) if r[0] < 0.5 else image
    if op == 5:  # Posterize(nb_bits=(1, 8))
        return TF.posterize(as_uint8(image), int(1 + 7 * r[0])).float() / 255
    if op == 6:  # Invert()
        return 1 - image
    if op == 7:  # pillike.Autocontrast()
        return TF.autocontrast(image)
    if op == 8:  # pillike.Equalize()
        return TF.equalize(as_uint8(image)).float() / 255
    return TF.rotate(image, float(r[0] * 90 - 45))  # Affine(rotate=(-45, 45))


def photometric_augment(
    images: Tensor, count: int, generator: torch.Generator | None = None
) -> Tensor:
    """``count`` distinct random operations of DRAEM's augmentation list per image.

    The operations are applied in random order (DRAEM, Zavrtanik et al. ICCV 2021; GLAD's
    dataset code uses the same list and 3).

    Args:
        images: (B, 3, H, W) in [0, 1].
        count: operations per image (0 returns ``images`` unchanged).
        generator: source of the random draws; None = torch's global generator.

    Returns:
        (B, 3, H, W) in [0, 1].
    """
    if count == 0:
        return images
    gen_device = _generator_device(generator, images.device)
    out = []
    for image in images.float():
        ops = torch.randperm(AUGMENTATIONS, generator=generator, device=gen_device)[:count]
        for op in ops.tolist():
            draws = torch.rand(4, generator=generator, device=gen_device).to(images.device)
            image = _augment_one(image, op, draws).clamp(0, 1)
        out.append(image)
    return torch.stack(out).to(images.dtype)


class AnomalySynthesizer:
    """Corrupts a batch of normal images with Perlin-shaped texture anomalies.

    Args:
        config: the synthesis settings.
    """

    def __init__(self, config: SynthesisConfig | None = None) -> None:
        self.config = config or SynthesisConfig()
        source = self.config.source
        if source == "auto":
            source = "dtd" if self.config.dtd_root else "textures"
        self._files: list[Path] = []
        if source == "dtd":
            root = Path(self.config.dtd_root or "").expanduser()
            if not root.is_dir():
                raise DatasetNotFoundError(
                    f"DTD root not found: {root}; set synthesis.dtd_root to the unpacked "
                    "dtd/images folder, or use synthesis.source=textures"
                )
            self._files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not self._files:
                raise DatasetFormatError(f"DTD root {root} holds no images")
            self.source_used = f"dtd:{root.resolve()}"
        else:
            self.source_used = source
        self._textures: Tensor | None = None

    def record(self) -> dict[str, Any]:
        """What this synthesizer draws from, for a run's ``run_record``.

        The source used ("dtd", "textures" or "self"), the DTD root and its image count, or the
        texture names.
        """
        if self._files:
            return {
                "source": "dtd",
                "dtd_root": str(Path(self.config.dtd_root or "").resolve()),
                "dtd_images": len(self._files),
                "augment": self.config.augment,
            }
        if self.source_used == "textures":
            from adbench.data.synthetic.render import TEXTURES

            return {"source": "textures", "textures": [f"scikit-image:{name}" for name in TEXTURES]}
        return {"source": self.source_used, "grid": SELF_GRID, "augment": self.config.augment}

    def __call__(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        foreground: Tensor | None = None,
        polarity: Tensor | None = None,
        fill: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Corrupt ``images`` (B, 3, H, W) in [0, 1].

        Args:
            images: (B, 3, H, W) in [0, 1].
            generator: source of the random draws (noise shapes, textures, blending); None =
                torch's global generator.
            foreground: (B,) bool, which images keep their anomaly on the Otsu foreground;
                None = ``config.foreground`` for every image.
            polarity: (B,) int, which Otsu class is each image's object (`otsu_foreground`).
            fill: (B, 3, H, W) in [0, 1], the source to blend in instead of the configured one.

        Returns:
            (corrupted images (B, 3, H, W), masks (B, 1, H, W) in {0, 1}); images left normal
            are returned unchanged with an all-zero mask.
        """
        batch, _, height, width = images.shape
        device, cfg = images.device, self.config
        gen_device = _generator_device(generator, device)
        draws = torch.rand(batch, 2, generator=generator, device=gen_device).to(device)
        low, high = cfg.perlin_scales
        exps = torch.randint(low, high + 1, (batch, 2), generator=generator, device=gen_device)
        noise = torch.empty(batch, height, width, device=device)
        for pair in torch.unique(exps, dim=0).tolist():
            rows = (exps == torch.tensor(pair, device=gen_device)).all(dim=1).to(device)
            scale = (2 ** pair[0], 2 ** pair[1])
            noise[rows] = perlin_noise((int(rows.sum()), height, width), scale, generator, device)
        if cfg.rotate:
            noise = _affine(noise[:, None], (height, width), generator, (1.0, 1.0))[:, 0]
        mask = (noise > cfg.threshold).unsqueeze(1)
        if foreground is None:
            foreground = torch.full((batch,), cfg.foreground, dtype=torch.bool)
        foreground = foreground.to(device).view(batch, 1, 1, 1)
        if bool(foreground.any()):
            mask &= otsu_foreground(images, polarity) | ~foreground
        mask &= (draws[:, 0] < cfg.probability).view(batch, 1, 1, 1)
        mask = mask.to(images.dtype)
        source = self._source(images, generator) if fill is None else fill
        beta = (cfg.beta[0] + (cfg.beta[1] - cfg.beta[0]) * draws[:, 1]).view(batch, 1, 1, 1)
        corrupted = images * (1 - mask) + (1 - beta) * source * mask + beta * images * mask
        return corrupted, mask

    def _source(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        """(B, 3, H, W) fill texture in [0, 1]."""
        batch, _, height, width = images.shape
        device = images.device
        gen_device = _generator_device(generator, device)
        if self._files:
            picks = torch.randint(
                len(self._files), (batch,), generator=generator, device=gen_device
            )
            loaded = torch.stack(
                [load_image(self._files[i], (height, width)) for i in picks.tolist()]
            )
            loaded = photometric_augment(loaded.to(device), self.config.augment, generator)
            return _affine(loaded, (height, width), generator, (0.5, 1.0))
        if self.source_used == "self":
            own = photometric_augment(images, self.config.augment, generator)
            return shuffle_patches(own, SELF_GRID, generator)
        if self._textures is None or self._textures.device != device:
            self._textures = _texture_stack().to(device)
        picks = torch.randint(len(self._textures), (batch,), generator=generator, device=gen_device)
        gray = _affine(self._textures[picks.to(device)], (height, width), generator, (0.3, 1.0))
        colours = torch.rand(batch, 2, 3, 1, 1, generator=generator, device=gen_device).to(device)
        return torch.lerp(colours[:, 0], colours[:, 1], gray)


def shuffle_patches(images: Tensor, grid: int, generator: torch.Generator | None) -> Tensor:
    """Cut each image (B, C, H, W) into grid x grid cells and shuffle the cells per image."""
    batch, _, height, width = images.shape
    side_h, side_w = -(-height // grid) * grid, -(-width // grid) * grid  # next multiples
    resized = F.interpolate(images, size=(side_h, side_w), mode="bilinear", align_corners=False)
    cells = rearrange(resized, "b c (gh h) (gw w) -> b (gh gw) c h w", gh=grid, gw=grid)
    keys = torch.rand(
        batch, grid * grid, generator=generator, device=_generator_device(generator, images.device)
    ).to(images.device)
    order = keys.argsort(dim=1)[:, :, None, None, None].expand_as(cells)
    shuffled = rearrange(cells.gather(1, order), "b (gh gw) c h w -> b c (gh h) (gw w)", gh=grid)
    return F.interpolate(shuffled, size=(height, width), mode="bilinear", align_corners=False)


def _texture_stack(side: int = 256) -> Tensor:
    """(T, 1, side, side) gray CC0 textures from scikit-image."""
    from adbench.data.synthetic.render import TEXTURES, texture_source

    stack = [
        F.interpolate(
            torch.from_numpy(texture_source(name))[None, None],
            size=(side, side),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0]
        for name in TEXTURES
    ]
    return torch.stack(stack)
