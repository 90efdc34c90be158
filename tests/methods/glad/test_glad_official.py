"""GLAD's `paper` setting follows the official 2024 multi-class code: the own-image fill (DTD as an
option), whole-image synthesis outside the official lists, the per-category Otsu polarity, the
noising step, the sampler's steps check and the chunked decoding of the ADS check.

References: the authors' code, ``dataset/dataset_multiclass.py`` at 9de702b (2024-06-25),
``main_multi.py`` at 8317418 (2024-07-13), ``utilize/utilize.py`` at 9de702b (README).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from glad_helpers import PIXELS, SIZE, images, tiny
from PIL import Image

import adbench
from adbench.errors import ConfigError
from adbench.methods.glad.categories import foreground_polarity
from adbench.methods.glad.scoring import foreground_mask
from adbench.synthesis import otsu_foreground, photometric_augment

GRID = 8  # the official 8 x 8 cells
CELL = SIZE // GRID
OWN = {  # the paper's synthesis on the tiny preset: every image anomalous, no blending
    "training.fill_source": "own",
    "training.synthesis.foreground": False,
    "training.synthesis.probability": 1.0,
    "training.synthesis.beta": [0.0, 0.0],
}


def cells(x: torch.Tensor) -> torch.Tensor:
    """(3, SIZE, SIZE) -> (GRID * GRID, 3, CELL, CELL), row by row."""
    return x.unfold(1, CELL, CELL).unfold(2, CELL, CELL).permute(1, 2, 0, 3, 4).flatten(0, 1)


def matching_cells(got: torch.Tensor, source: torch.Tensor, where: torch.Tensor) -> list[set]:
    """For each cell of ``got`` (3, H, W): the cells of ``source`` equal to it where ``where``."""
    got_cells, source_cells, masks = cells(got), cells(source), cells(where.expand(3, -1, -1))
    return [
        {k for k, s in enumerate(source_cells) if torch.equal(g[m], s[m])}
        for g, m in zip(got_cells, masks, strict=True)
    ]


def test_paper_fill_is_the_augmented_image_half_plain_half_block_shuffled():
    method = tiny(**OWN, **{"training.synthesis.threshold": -2.0})  # the whole image masked
    x = images(8, seed=3)
    torch.manual_seed(0)
    out = method.synthesize(x)
    torch.manual_seed(0)
    augmented = photometric_augment(x, 3)  # the first draws of the synthesis
    assert not torch.equal(augmented, x)
    everywhere = torch.ones(1, SIZE, SIZE, dtype=torch.bool)
    kinds = []
    for got, aug in zip(out, augmented, strict=True):
        if torch.equal(got, aug):
            kinds.append("plain")
            continue
        matches = matching_cells(got, aug, everywhere)
        assert all(len(m) == 1 for m in matches)  # each cell is exactly one augmented cell
        order = [next(iter(m)) for m in matches]
        assert sorted(order) == list(range(GRID * GRID)) and order != sorted(order)
        kinds.append("shuffled")
    assert set(kinds) == {"plain", "shuffled"}, kinds


def test_paper_fill_replaces_the_image_only_within_the_synthesis_mask():
    method = tiny(**OWN)  # the official Perlin threshold 0.3: part of each image
    x = images(8, seed=4)
    torch.manual_seed(1)
    out = method.synthesize(x)
    torch.manual_seed(1)
    augmented = photometric_augment(x, 3)
    kinds = set()
    for got, image, aug in zip(out, x, augmented, strict=True):
        inside = (got != image).any(0, keepdim=True)  # (1, H, W): the synthesis mask
        assert inside.any() and not inside.all()
        torch.testing.assert_close(got[:, ~inside[0]], image[:, ~inside[0]], rtol=0, atol=0)
        if torch.equal(got[:, inside[0]], aug[:, inside[0]]):
            kinds.add("plain")
        else:  # every masked cell shows the masked part of one of the augmented cells
            assert all(matching_cells(got, aug, inside)[k] for k in range(GRID * GRID))
            kinds.add("shuffled")
    assert kinds == {"plain", "shuffled"}
    assert method.run_record()["synthesis"]["fill_source"] == "own"


def test_dtd_fill_stays_selectable(tmp_path):
    dtd = tmp_path / "dtd" / "images" / "banded"
    dtd.mkdir(parents=True)
    Image.new("RGB", (40, 40), (255, 0, 0)).save(dtd / "banded_0001.jpg")
    settings = {
        **OWN,
        "training.fill_source": "texture",
        "training.self_source_share": 0.0,  # every anomaly from the texture source
        "training.synthesis.dtd_root": str(tmp_path / "dtd"),
        "training.synthesis.augment": 0,
        "training.synthesis.threshold": -2.0,
    }
    method = tiny(**settings)
    out = method.synthesize(images(2))
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand_as(out)
    torch.testing.assert_close(out, red, atol=0.02, rtol=0)  # the (JPEG) texture everywhere
    assert method.run_record()["synthesis"]["textured"]["source"] == "dtd"
    with pytest.raises(ConfigError, match=r"dtd_root is set .* but training.fill_source is 'own'"):
        adbench.resolve_config("glad", "paper", {"training.synthesis.dtd_root": str(dtd)})


def dark_square() -> torch.Tensor:
    """Two textured images: a dark square (0.1-0.15) on a bright background (0.85-0.9)."""
    x = 0.85 + 0.05 * images(2, seed=8)
    x[..., 8:24, 8:24] -= 0.75
    return x


SQUARE = torch.zeros(SIZE, SIZE, dtype=torch.bool)
SQUARE[8:24, 8:24] = True


def test_categories_outside_the_official_lists_get_whole_image_synthesis():
    assert not adbench.resolve_config("glad", "paper").training.synthesis.foreground
    method = tiny(**OWN, **{"training.synthesis.threshold": -2.0})
    x = dark_square()
    torch.manual_seed(0)
    changed = (method.synthesize(x, ["bottle", "my_dataset/gear"]) != x).any(1)
    assert changed[0][SQUARE].any() and not changed[0][~SQUARE].any()  # official: the object
    assert changed[1][~SQUARE].any() and changed[1][SQUARE].any()  # not listed: everywhere


def test_foreground_polarity_is_the_official_table_not_the_border():
    assert foreground_polarity(["screw", "visa/candle", "carpet", "gear"]) == [-1, 1, 0, 0]
    x = dark_square()
    # mode 2 (hazelnut: the bright class) takes the bright background, mode 1 the dark square;
    # the border rule (not in the table) picks the square as the object
    masks = otsu_foreground(x, torch.tensor([1, -1]))[:, 0]
    assert torch.equal(masks[0], ~SQUARE) and torch.equal(masks[1], SQUARE)
    assert torch.equal(otsu_foreground(x, torch.tensor([0, 0]))[:, 0], SQUARE.expand(2, -1, -1))
    method = tiny(**OWN, **{"training.synthesis.threshold": -2.0})
    torch.manual_seed(0)
    changed = (method.synthesize(x, ["hazelnut", "bottle"]) != x).any(1)
    assert changed[0][~SQUARE].any() and not changed[0][SQUARE].any()
    assert changed[1][SQUARE].any() and not changed[1][~SQUARE].any()
    soft = foreground_mask(x, 1.0, torch.tensor([1, -1]))[:, 0]
    assert soft[0, 0, 0] > 0.99 and soft[0, 16, 16] < 0.01  # the test-time object mask too
    assert soft[1, 0, 0] < 0.01 and soft[1, 16, 16] > 0.99


def test_test_maps_take_the_object_mask_with_the_tables_polarity():
    method = tiny(**PIXELS, **{"scoring.stationary_threshold": None, "sampler.steps": 2})
    x = dark_square()
    official = method(x, ["hazelnut", "hazelnut"]).anomaly_map
    model, raw = method.model, method.model.reconstruct(x, method.config.sampler.seed)
    masked = model.anomaly_map(
        x, raw.images, torch.tensor([True, True]), polarity=torch.tensor([1, 1])
    )
    torch.testing.assert_close(official, method.postprocess(masked, (SIZE, SIZE)).anomaly_map)


def test_noising_step_is_t_max_on_mvtec_and_mpdd_and_one_less_on_visa():
    steps = {
        preset: adbench.resolve_config("glad", preset).sampler.noise_step
        for preset in ("paper", "paper-mpdd", "paper-visa")
    }
    assert steps == {"paper": 650, "paper-mpdd": 500, "paper-visa": 499}
    method = tiny(**PIXELS, **{"sampler.noise_offset": 0, "sampler.steps": 2})
    noised = []
    add_noise = method.model.schedule.add_noise
    method.model.schedule.add_noise = lambda z, e, t: (
        noised.append(t.tolist()) or add_noise(z, e, t)
    )
    method.model.reconstruct(images(1))
    assert noised[0] == [650]  # the input, then ADS re-noises at the trajectory's steps
    method.model.sampler = dataclasses.replace(method.model.sampler, steps=25)
    trajectory = [t for t, _ in method.model.ddim_trajectory()]
    assert trajectory == [625 - 26 * k for k in range(25)]  # official leading spacing


def test_one_leading_step_is_a_config_error():
    with pytest.raises(ConfigError, match=r"sampler.steps=1 with sampler.spacing 'leading'"):
        adbench.resolve_config("glad", "paper", {"sampler.steps": 1})
    linspace = {"sampler.steps": 1, "sampler.spacing": "linspace"}
    assert adbench.resolve_config("glad", "paper", linspace).sampler.steps == 1


def test_chunked_decoding_equals_decoding_the_whole_batch(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=SIZE,
    ).save_pretrained(tmp_path / "vae")
    settings = {
        "autoencoder.kind": "sd_vae",
        "autoencoder.weights": str(tmp_path),
        "autoencoder.size": SIZE,
        "autoencoder.scaling_factor": 0.18215,
        "scoring.pixel_weight": 0.0,
        "sampler.tau": 0.02,
        "sampler.steps": 5,
    }
    whole = tiny(**settings, **{"sampler.decode_chunk": 64}).model
    chunked = tiny(**settings, **{"sampler.decode_chunk": 2}).model
    x = images(3, seed=6)
    calls = []
    decode = chunked.codec.vae.decode
    chunked.codec.vae.decode = lambda z: calls.append(len(z)) or decode(z)
    x0_in, x0_gen = chunked.codec.encode(x), chunked.codec.encode(images(3, seed=7))
    torch.testing.assert_close(
        chunked.ads_discrepancy(x0_in, x0_gen), whole.ads_discrepancy(x0_in, x0_gen)
    )
    assert calls == [2, 2, 2]  # 6 latents (input and generated x0 of 3 images), 2 at a time
    a, b = chunked.reconstruct(x), whole.reconstruct(x)
    torch.testing.assert_close(a.images, b.images)
    assert torch.equal(a.stop_steps, b.stop_steps)
    with pytest.raises(ConfigError, match=r"sampler.decode_chunk must be >= 1, got .* and 0"):
        dataclasses.replace(whole.sampler, decode_chunk=0)
