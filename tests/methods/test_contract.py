"""The method contract, checked for every registered method (built-ins, plugins, the toy method).

A method that is registered is tested here automatically: create its tiny preset (a method with no
offline-capable preset: its paper preset in mechanics mode, ``random_weights=True``, at the reduced
size given in `MECHANICS`), fit a few steps
on the built-in synthetic data, check output shapes and finiteness, a checkpoint round trip with
identical outputs, the unknown-override error, and a full evaluation table.

It runs on the CPU; ``ADBENCH_TEST_DEVICE=cuda`` runs it on the GPU instead (training, inference
and evaluation; ``benchmarks/perf/gpu_check.py`` does so).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from toy_method import TOY_PRESETS, ToyAutoencoder, ToyConfig

import adbench
from adbench import registry
from adbench.batch import AnomalyOutput, Batch
from adbench.config import fill_num_classes
from adbench.errors import ConfigError
from adbench.metrics import METRICS

TOY = "contract_toy"
if TOY not in registry._REGISTERED:
    adbench.method(TOY, config=ToyConfig, presets=TOY_PRESETS, paper="test")(ToyAutoencoder)

IMAGE_SIZE = 32
DEVICE = os.environ.get("ADBENCH_TEST_DEVICE", "cpu")  # "cpu" or "cuda" (a Lightning accelerator)
if DEVICE not in ("cpu", "cuda") or (DEVICE == "cuda" and not torch.cuda.is_available()):
    raise RuntimeError(f"ADBENCH_TEST_DEVICE={DEVICE!r}: expected 'cpu', or 'cuda' with a GPU")

# methods without a tiny preset (their paper presets need downloaded weights): the overrides that
# make the paper architecture small enough for the contract, built with random_weights=True
MECHANICS = {
    # ViT-S/14 DINOv2-R instead of ViT-B, a 28 px centre crop (2 x 2 patches) of the 32 px images
    "anomalib.dinomaly": {
        "crop_size": 28,
        "backbone": {
            "name": "vit_small_patch14_reg4_dinov2.lvd142m",
            "layers": [2, 3, 4, 5, 6, 7, 8, 9],
        },
    },
    "anomalib.inp_former": {
        "crop_size": 28,
        "backbone": {
            "name": "vit_small_patch14_reg4_dinov2.lvd142m",
            "layers": [2, 3, 4, 5, 6, 7, 8, 9],
        },
    },
}


def contract_preset(name: str) -> tuple[str, dict, bool]:
    """(preset, overrides, random_weights) the contract builds ``name`` with."""
    if "tiny" in registry.get_method_spec(name).presets:
        return "tiny", {}, False
    if name not in MECHANICS:
        raise AssertionError(
            f"method '{name}' has no tiny preset: add its reduced mechanics-mode "
            "overrides to MECHANICS"
        )
    return "paper", MECHANICS[name], True


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    adbench.make_synthetic(root, n_categories=2, seed=0, image_size=IMAGE_SIZE, n_train=6, n_test=6)
    index = adbench.load_index("synthetic", root)
    return adbench.UnifiedDataModule(index, image_size=IMAGE_SIZE, batch_size=4, seed=0)


def build(name: str, k: int) -> adbench.AnomalyMethod:
    spec = registry.get_method_spec(name)
    preset, overrides, random_weights = contract_preset(name)
    config = registry.resolve_config(
        name, preset, {**overrides, "random_weights": random_weights, "data.image_size": IMAGE_SIZE}
    )
    return spec.module(fill_num_classes(config, k))


def outputs(method: adbench.AnomalyMethod, images: torch.Tensor) -> AnomalyOutput:
    method.to(DEVICE).eval()
    torch.manual_seed(0)  # methods that sample noise at inference are compared at a fixed seed
    with torch.no_grad():
        return method(images.to(DEVICE))


@pytest.mark.parametrize("name", adbench.list_methods())
def test_method_contract(name, datamodule, tmp_path):
    method = build(name, k=len(datamodule.categories))
    trainer = adbench.fit(
        method,
        datamodule,
        max_steps=2,
        accelerator=DEVICE,
        devices=1,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    assert trainer.global_step == 2

    datamodule.setup("predict")
    batch = next(iter(datamodule.predict_dataloader()))
    out = outputs(method, batch.image)
    B = len(batch)
    assert isinstance(out, AnomalyOutput)
    assert out.anomaly_map.ndim == 4 and out.anomaly_map.shape[:2] == (B, 1)
    assert out.score.shape == (B,)
    assert torch.isfinite(out.anomaly_map).all() and torch.isfinite(out.score).all()

    checkpoint = tmp_path / "method.ckpt"
    trainer.save_checkpoint(checkpoint)
    reloaded = type(method).load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    assert type(reloaded.config) is type(method.config) and reloaded.config == method.config
    again = outputs(reloaded, batch.image)
    torch.testing.assert_close(again.anomaly_map, out.anomaly_map)
    torch.testing.assert_close(again.score, out.score)

    table = adbench.evaluate(
        reloaded, datamodule, accelerator=DEVICE, devices=1, enable_progress_bar=False
    ).to_frame()
    assert list(table.columns) == [*METRICS, "mAD"]
    assert list(table.index) == [*datamodule.categories, "mean"]
    assert all(0.0 <= v <= 1.0 for v in table.to_numpy().ravel() if not math.isnan(v))
    assert not table.loc["mean"].isna().any()


@pytest.mark.parametrize("name", adbench.list_methods())
def test_unknown_override_is_an_error(name):
    preset, _, _ = contract_preset(name)
    with pytest.raises(ConfigError, match="unknown key 'no_such_option'"):
        adbench.create(name, preset=preset, no_such_option=1)


def test_batch_and_output_survive_lightning_device_moves(datamodule):
    batch = next(iter(datamodule.train_dataloader()))
    assert isinstance(batch, Batch)
    assert isinstance(move_data_to_device(batch, torch.device(DEVICE)), Batch)
    output = AnomalyOutput(torch.rand(2, 1, 4, 4), torch.rand(2))
    assert isinstance(move_data_to_device(output, torch.device(DEVICE)), AnomalyOutput)


@pytest.mark.parametrize("sigma", [1.5, 4.0])
def test_gaussian_blur_matches_scipy(sigma):
    from scipy import ndimage

    from adbench.contract import gaussian_blur

    maps = torch.rand(2, 1, 40, 36, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = [
        ndimage.gaussian_filter(m[0].numpy(), sigma, mode="mirror", truncate=4.0) for m in maps
    ]
    got = gaussian_blur(maps, sigma)
    torch.testing.assert_close(got[:, 0], torch.from_numpy(np.stack(expected)))
    assert gaussian_blur(maps, 0.0) is maps
