"""Anomaly synthesis for training: Perlin noise, masks, the blending formula, sources."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adbench.errors import ConfigError, DatasetFormatError, DatasetNotFoundError
from adbench.synthesis import AnomalySynthesizer, SynthesisConfig, otsu_foreground, perlin_noise


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_perlin_noise_shape_range_and_seed() -> None:
    noise = perlin_noise((6, 40, 56), (4, 8), _gen())
    assert noise.shape == (6, 40, 56)
    assert noise.abs().max() <= math.sqrt(2) and noise.std() > 0.1
    assert torch.equal(noise, perlin_noise((6, 40, 56), (4, 8), _gen()))
    assert not torch.equal(noise, perlin_noise((6, 40, 56), (4, 8), _gen(1)))


def test_perlin_noise_is_zero_on_the_lattice() -> None:
    """Gradient noise vanishes at lattice points (4 cells over 64 px: every 16 px)."""
    size, cells = 64, 4
    noise = perlin_noise((3, size, size), (cells, cells), _gen())
    ys = (torch.arange(size) + 0.5) * cells / size  # lattice coordinate of each pixel centre
    near = (ys - ys.round()).abs() <= 0.5 * cells / size  # the pixels closest to each point
    corners = noise[:, near][:, :, near]
    assert corners.abs().max() < 0.2 and noise.abs().max() > 0.4


def test_finer_scales_vary_faster() -> None:
    def roughness(cells: int) -> float:
        noise = perlin_noise((8, 64, 64), (cells, cells), _gen())
        return (noise[:, :, 1:] - noise[:, :, :-1]).abs().mean().item()

    assert roughness(1) < roughness(4) < roughness(16)


def test_blending_formula() -> None:
    """a = n (1 - m) + (1 - beta) s m + beta n m: with n = 0, a = (1 - beta) s m."""
    images = torch.zeros(6, 3, 32, 32)
    cfg = {"probability": 1.0, "threshold": 0.2, "source": "textures"}
    opaque, mask = AnomalySynthesizer(SynthesisConfig(beta=(0.0, 0.0), **cfg))(images, _gen(3))
    half, mask_half = AnomalySynthesizer(SynthesisConfig(beta=(0.5, 0.5), **cfg))(images, _gen(3))
    assert torch.equal(mask, mask_half) and mask.sum() > 0
    assert torch.allclose(half, 0.5 * opaque, atol=1e-6)
    assert (opaque * (1 - mask)).abs().max() == 0  # outside the mask the image is untouched
    assert opaque[mask.expand_as(opaque) > 0].mean() > 0.05  # inside it holds the source
    images = torch.rand(6, 3, 32, 32)
    kept, _ = AnomalySynthesizer(SynthesisConfig(beta=(1.0, 1.0), **cfg))(images, _gen(3))
    assert torch.allclose(kept, images)  # beta = 1 keeps the image everywhere


def test_probability_and_normal_samples() -> None:
    images = torch.rand(16, 3, 32, 32)
    untouched, mask = AnomalySynthesizer(SynthesisConfig(probability=0.0))(images, _gen())
    assert torch.equal(untouched, images) and mask.sum() == 0
    out, mask = AnomalySynthesizer(SynthesisConfig(probability=0.5, threshold=-2.0))(images, _gen())
    per_image = mask.flatten(1).mean(1)
    assert set(per_image.tolist()) == {0.0, 1.0}  # threshold -2: all or nothing per image
    normal = per_image == 0
    assert torch.equal(out[normal], images[normal])
    assert mask.shape == (16, 1, 32, 32) and mask.dtype == images.dtype


@pytest.mark.parametrize("source", ["textures", "self"])
def test_sources_are_seeded_and_recorded(source: str) -> None:
    synth = AnomalySynthesizer(SynthesisConfig(source=source, probability=1.0, threshold=0.0))
    images = torch.rand(4, 3, 24, 24)
    a, mask = synth(images, _gen(1))
    b, _ = synth(images, _gen(1))
    assert synth.source_used == source
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and mask.sum() > 0


def test_auto_source_and_dtd(tmp_path: Path) -> None:
    assert AnomalySynthesizer(SynthesisConfig()).source_used == "textures"
    dtd = tmp_path / "dtd" / "images" / "banded"
    dtd.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 80 * i, dtype=np.uint8)).save(dtd / f"{i}.jpg")
    synth = AnomalySynthesizer(SynthesisConfig(dtd_root=str(tmp_path / "dtd"), probability=1.0))
    assert synth.source_used == f"dtd:{(tmp_path / 'dtd').resolve()}"
    out, mask = synth(torch.zeros(3, 3, 16, 16), _gen())
    assert out.shape == (3, 3, 16, 16) and mask.sum() > 0
    with pytest.raises(DatasetNotFoundError, match="DTD root not found"):
        AnomalySynthesizer(SynthesisConfig(source="dtd", dtd_root=str(tmp_path / "none")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="holds no images"):
        AnomalySynthesizer(SynthesisConfig(dtd_root=str(tmp_path / "empty")))


def test_foreground_restriction() -> None:
    images = torch.full((2, 3, 32, 32), 0.1)
    images[:, :, 8:24, 8:24] = 0.9  # a bright object on a dark background
    images[1] = 1 - images[1]  # and a dark object on a bright background
    fg = otsu_foreground(images)
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:24, 8:24] = True
    assert torch.equal(fg[0, 0], expected) and torch.equal(fg[1, 0], expected)
    cfg = SynthesisConfig(probability=1.0, threshold=-2.0, foreground=True)
    _, mask = AnomalySynthesizer(cfg)(images, _gen())
    assert torch.equal(mask[:, 0] > 0, fg[:, 0])


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="probability"):
        SynthesisConfig(probability=1.5)
    with pytest.raises(ConfigError, match="dtd_root is not set"):
        SynthesisConfig(source="dtd")
    with pytest.raises(ConfigError, match="beta"):
        SynthesisConfig(beta=(0.8, 0.2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_images_device() -> None:
    images = torch.rand(4, 3, 32, 32, device="cuda")
    out, mask = AnomalySynthesizer(SynthesisConfig(probability=1.0))(
        images, torch.Generator(device="cuda").manual_seed(0)
    )
    assert out.device.type == mask.device.type == "cuda"


def test_self_source_shuffles_the_cells_of_the_image_itself() -> None:
    from adbench.synthesis import shuffle_patches

    image = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    shuffled = shuffle_patches(image, 8, _gen())
    assert not torch.equal(shuffled, image)
    for original, moved in zip(image, shuffled, strict=True):
        cells = original.unfold(1, 2, 2).unfold(2, 2, 2).reshape(64, 4)
        moved_cells = moved.unfold(1, 2, 2).unfold(2, 2, 2).reshape(64, 4)
        assert sorted(map(tuple, cells.tolist())) == sorted(map(tuple, moved_cells.tolist()))
    levels = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1, 1).expand(3, 3, 16, 16)
    cfg = SynthesisConfig(source="self", probability=1.0, threshold=-2.0, beta=(0.0, 0.0))
    out, _ = AnomalySynthesizer(cfg)(levels.contiguous(), _gen(2))
    # GLAD's official code fills from the sample's own image: constant images stay themselves
    assert out[:, 0, 0, 0].tolist() == pytest.approx([0.1, 0.5, 0.9])


def test_photometric_augment_draws_distinct_operations_of_the_list() -> None:
    from adbench import synthesis
    from adbench.synthesis import _augment_one, photometric_augment

    images = torch.rand(3, 3, 16, 16, generator=_gen(1))
    assert torch.equal(photometric_augment(images, 0, _gen()), images)
    out = photometric_augment(images, 3, _gen(4))
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, photometric_augment(images, 3, _gen(4)))  # seeded
    image, r = images[0], torch.tensor([0.5, 0.25, 0.0, 0.0])
    # hand-computed cases: invert, gamma 0.5 + 1.5 r per channel, brightness x 1.0 - 15/255
    torch.testing.assert_close(_augment_one(image, 6, r), 1 - image)
    gamma = torch.tensor([1.25, 0.875, 0.5]).view(3, 1, 1)
    torch.testing.assert_close(_augment_one(image, 0, r), image**gamma)
    torch.testing.assert_close(_augment_one(image, 1, r), image - 15 / 255)
    seen = []
    original = synthesis._augment_one
    synthesis._augment_one = lambda x, op, draws: seen.append(op) or original(x, op, draws)
    try:
        photometric_augment(images, 3, _gen(5))
    finally:
        synthesis._augment_one = original
    ops = [seen[i : i + 3] for i in range(0, 9, 3)]
    assert len(seen) == 9 and all(len(set(o)) == 3 for o in ops)
    with pytest.raises(ConfigError, match=r"synthesis\.augment"):
        SynthesisConfig(augment=11)


def test_per_image_foreground_overrides_the_config() -> None:
    images = torch.full((2, 3, 32, 32), 0.1)
    images[:, :, 8:24, 8:24] = 0.9
    cfg = SynthesisConfig(probability=1.0, threshold=-2.0, foreground=False)
    _, mask = AnomalySynthesizer(cfg)(images, _gen(), foreground=torch.tensor([True, False]))
    assert int(mask[0].sum()) == 16 * 16 and int(mask[1].sum()) == 32 * 32
