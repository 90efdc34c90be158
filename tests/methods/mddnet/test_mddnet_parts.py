"""MDD-Net parts: the class-aware memory and the scoring against hand-computed references,
module shapes, and the training step.

References (Xing et al., arXiv 2504.14884): L_res = 1 - cos(R_i(a), T_i(n)), L_id = 1 - cos(I_i(a),
T_i(a)) with each level flattened per image; L_dist = mean |(1 - cos_px(R_i, I_i)) - m_i|;
A_TR = sum_i up(1 - cos_px(T_i, R_i)), A_RI = sum_i up(1 - cos_px(R_i, I_i)). The expected numbers
below are worked out by hand in the comments, independently of the implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
from mddnet_helpers import IMAGES, build, t

from adbench.batch import Batch
from adbench.distillation import FeatureDecoder, FusionBottleneck, ResidualBlock, discrepancy_map
from adbench.errors import ConfigError
from adbench.methods.mddnet.loss import mddnet_loss
from adbench.methods.mddnet.memory import ClassAwareMemory
from adbench.methods.mddnet.scoring import fuse_maps


# -- memory ------------------------------------------------------------------------------------
def test_memory_read_matches_hand_computation():
    memory = ClassAwareMemory(1, 2, 2, temperature=0.5, init_std=1.0)
    with torch.no_grad():
        memory.slots.copy_(t([[[1, 0], [0, 2]]]))
    z = torch.stack([t([1, 1]), t([1, 0])], dim=1).view(1, 2, 1, 2)  # tokens (1,1) and (1,0)
    read = memory(z)
    # token (1,1): cos 1/sqrt2 with both slots -> weights 1/2, 1/2 -> readout (0.5, 1.0)
    # token (1,0): cos 1 and 0 -> w1 = 1 / (1 + exp(-1/0.5)) -> readout (w1, 2 (1 - w1))
    w1 = 1 / (1 + math.exp(-2.0))
    expected = t([[0.5, w1], [1.0, 2 * (1 - w1)]]).view(1, 2, 1, 2)
    torch.testing.assert_close(read.readout, expected)
    torch.testing.assert_close(read.log_weights.exp().view(2, 2), t([[0.5, 0.5], [w1, 1 - w1]]))
    assert read.tokens.shape == (1, 2, 2)


def test_memory_read_is_class_agnostic_and_spans_every_class():
    memory = ClassAwareMemory(4, 3, 8, temperature=0.07, init_std=1.0)
    read = memory(torch.randn(2, 8, 3, 3))
    assert read.log_weights.shape == (2, 9, 4, 3)
    torch.testing.assert_close(read.log_weights.exp().sum(dim=(2, 3)), torch.ones(2, 9))


def test_empty_memory_explains_how_to_size_it():
    memory = ClassAwareMemory(0, 3, 8, temperature=0.07, init_std=1.0)
    with pytest.raises(ConfigError, match=r"memory\.num_classes.*num_classes=k"):
        memory(torch.randn(1, 8, 2, 2))


# -- scoring -----------------------------------------------------------------------------------
def test_discrepancy_map_matches_hand_computation():
    # level 1 (1x2): a (1,0),(0,1) vs b (1,0),(1,0) -> [0, 1]
    a1 = t([[1, 0], [0, 1]]).T.reshape(1, 2, 1, 2)
    b1 = t([[1, 0], [1, 0]]).T.reshape(1, 2, 1, 2)
    # level 2 (1x1): (1,0) vs (-1,0) -> 2, upsampled to 1x2 -> [2, 2]
    a2, b2 = t([1, 0]).view(1, 2, 1, 1), t([-1, 0]).view(1, 2, 1, 1)
    result = discrepancy_map([a1, a2], [b1, b2], (1, 2))
    torch.testing.assert_close(result, t([2, 3]).view(1, 1, 1, 2))


def test_fusion_rules():
    a_tr, a_ri = t([1, 4]).view(1, 1, 1, 2), t([3, 2]).view(1, 1, 1, 2)
    torch.testing.assert_close(fuse_maps(a_tr, a_ri, "sum", (1.0, 1.0)), t([4, 6]).view(1, 1, 1, 2))
    torch.testing.assert_close(
        fuse_maps(a_tr, a_ri, "sum", (2.0, 0.5)), t([3.5, 9]).view(1, 1, 1, 2)
    )
    torch.testing.assert_close(fuse_maps(a_tr, a_ri, "max", (1.0, 1.0)), t([3, 4]).view(1, 1, 1, 2))
    with pytest.raises(ConfigError, match=r"scoring\.fusion"):
        fuse_maps(a_tr, a_ri, "mean", (1.0, 1.0))


# -- module shapes -----------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "size"), [("same", 8), ("down", 4), ("up", 16)])
def test_residual_block_shapes(mode, size):
    block = ResidualBlock(6, 10, 4, mode)
    assert block(torch.randn(2, 6, 8, 8)).shape == (2, 10, size, size)


@pytest.mark.parametrize(("stride", "size"), [(2, 2), (1, 4)])
def test_bottleneck_and_decoder_shapes(stride, size):
    channels, strides = [8, 16, 32], [4, 8, 16]
    features = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip(channels, strides, strict=True)]
    neck = FusionBottleneck(
        channels, strides, out_channels=24, blocks=2, mid_ratio=0.5, stride=stride
    )
    z = neck(features)
    assert z.shape == (2, 24, size, size) and neck.out_stride == 16 * stride
    decoder = FeatureDecoder(24, neck.out_stride, channels, strides, (2, 1, 1), 0.5)
    assert [tuple(f.shape) for f in decoder(z)] == [tuple(f.shape) for f in features]
    assert len(decoder.stages[0]) == 2


def test_bottleneck_rejects_strides_that_do_not_double():
    with pytest.raises(ConfigError, match="power of two"):
        FusionBottleneck([8, 16], [4, 12], out_channels=8, blocks=1, mid_ratio=0.5, stride=2)


def test_tiny_model_shapes():
    method = build()
    features = method.model.encode(IMAGES)
    assert [tuple(f.shape) for f in features] == [(2, 24, 16, 16), (2, 40, 8, 8), (2, 112, 4, 4)]
    student = method.model.student(features)
    assert student.z.shape == (2, 128, 4, 4)
    assert student.read.readout.shape == (2, 128, 4, 4)
    assert student.read.log_weights.shape == (2, 16, 3, 8)
    for levels in (student.restored, student.identity):
        assert [f.shape for f in levels] == [f.shape for f in features]
    with torch.no_grad():
        out = method(IMAGES)
    assert out.anomaly_map.shape == (2, 1, 64, 64) and out.score.shape == (2,)
    assert torch.isfinite(out.anomaly_map).all()


def test_forward_is_the_fused_teacher_restoration_identity_map():
    method = build(**{"scoring.sigma": 0.0})
    with torch.no_grad():
        features = method.model.encode(IMAGES)
        student = method.model.student(features)
        a_tr, a_ri = method.model.score_maps(features, student)
        torch.testing.assert_close(a_tr, discrepancy_map(features, student.restored, (16, 16)))
        torch.testing.assert_close(
            a_ri, discrepancy_map(student.restored, student.identity, (16, 16))
        )
        raw = method.model(IMAGES)
        torch.testing.assert_close(raw, a_tr + a_ri)
        out = method(IMAGES)
    up = torch.nn.functional.interpolate(raw, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.anomaly_map, up)
    torch.testing.assert_close(out.score, up.flatten(1).amax(dim=1))


def test_training_step_matches_the_losses_on_clean_and_corrupted_pairs(monkeypatch):
    method = build()
    method.train()
    # image 0 gets a square anomaly, image 1 stays normal (the step reuses T(n) for it)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 8:24, 8:24] = 1
    corrupted = IMAGES * (1 - mask) + mask * IMAGES.flip(-1)
    calls = []

    def synthesizer(images, *args, **kwargs):
        calls.append(images)
        return corrupted, mask

    logged = {}
    monkeypatch.setattr(method, "synthesizer", synthesizer)
    monkeypatch.setattr(method, "log_dict", lambda values, **k: logged.update(values))
    monkeypatch.setattr(method, "log", lambda *a, **k: None)
    category = torch.tensor([0, 2])
    batch = Batch(
        IMAGES,
        torch.zeros(2, 1, 64, 64),
        torch.zeros(2, dtype=torch.long),
        category,
        torch.arange(2),
    )
    loss = method.training_step(batch, 0)
    assert len(calls) == 1 and calls[0] is IMAGES
    loss.backward()
    assert method.model.memory.slots.grad is not None
    assert method.model.bottleneck.fuse[0].body[0].weight.grad is not None
    assert all(p.grad is None for p in method.model.teacher.parameters())

    with torch.no_grad():  # reference: both teacher passes in full, then the paper's losses
        clean, damaged = method.model.encode(IMAGES), method.model.encode(corrupted)
        student = method.model.student(damaged)
        terms = mddnet_loss(
            clean,
            damaged,
            student.restored,
            student.identity,
            mask,
            student.read,
            method.model.memory.slots,
            category,
            method.config.loss,
        )
    torch.testing.assert_close(loss.detach(), terms["loss"], rtol=1e-4, atol=1e-5)
    for name in ("res", "id", "dist", "cls", "cpt"):
        torch.testing.assert_close(
            logged[f"train/{name}"].detach(), terms[name], rtol=1e-4, atol=1e-5
        )
