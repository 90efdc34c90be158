"""MDD-Net: losses and scoring against hand-computed references from the paper's equations,
module shapes, every config option, memory sizing, the paper preset offline, and learning.

References (Xing et al., arXiv 2504.14884): L_res = 1 - cos(R_i(a), T_i(n)), L_id = 1 - cos(I_i(a),
T_i(a)) with each level flattened per image; L_dist = mean |(1 - cos_px(R_i, I_i)) - m_i|;
A_TR = sum_i up(1 - cos_px(T_i, R_i)), A_RI = sum_i up(1 - cos_px(R_i, I_i)). The expected numbers
below are worked out by hand in the comments, independently of the implementation.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from fixtures.learning import synthetic_task

import adbench
from adbench.backbones import BackboneConfig
from adbench.batch import Batch
from adbench.config import from_dict
from adbench.errors import ConfigError, WeightsNotFoundError
from adbench.methods.mddnet import MDDNet, MDDNetConfig
from adbench.methods.mddnet.config import LossConfig
from adbench.methods.mddnet.layers import FeatureDecoder, FusionBottleneck, ResidualBlock
from adbench.methods.mddnet.loss import (
    class_evidence_loss,
    compactness_loss,
    discrepancy_loss,
    global_cosine_loss,
    mddnet_loss,
    normal_tokens,
    resize_mask,
)
from adbench.methods.mddnet.memory import ClassAwareMemory
from adbench.methods.mddnet.scoring import discrepancy_map, fuse_maps, pixel_cosine_distance
from adbench.registry import resolve_config
from adbench.synthesis import AnomalySynthesizer


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def tiny_config(**overrides) -> MDDNetConfig:
    """The tiny preset with a randomly initialised teacher (mechanics only) and 3 classes."""
    base = {"backbone.weights": "none", "memory.num_classes": 3, **overrides}
    return resolve_config("mddnet", "tiny", base)


def build(seed: int = 0, **overrides) -> MDDNet:
    torch.manual_seed(seed)
    return MDDNet(tiny_config(**overrides)).eval()


IMAGES = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


# -- losses ------------------------------------------------------------------------------------
def test_global_cosine_loss_matches_hand_computation():
    # level 1, per image (C=2, 1x1): (1,0) vs (0,1) -> cos 0 -> 1;  (1,1) vs (1,1) -> 0.  mean 0.5
    p1 = t([[1, 0], [1, 1]]).view(2, 2, 1, 1)
    t1 = t([[0, 1], [1, 1]]).view(2, 2, 1, 1)
    # level 2 (C=1, 1x2): (3,4) vs (4,3) -> cos 24/25 -> 0.04;  (1,0) vs (-1,0) -> 2.  mean 1.02
    p2 = t([[3, 4], [1, 0]]).view(2, 1, 1, 2)
    t2 = t([[4, 3], [-1, 0]]).view(2, 1, 1, 2)
    loss = global_cosine_loss([p1, p2], [t1, t2])
    assert loss.item() == pytest.approx(0.5 + 1.02, abs=1e-6)


def test_global_cosine_loss_does_not_backpropagate_into_the_target():
    p, target = torch.randn(2, 3, 2, 2, requires_grad=True), torch.randn(2, 3, 2, 2,
                                                                          requires_grad=True)
    global_cosine_loss([p], [target]).backward()
    assert p.grad is not None and target.grad is None


def test_discrepancy_loss_matches_hand_computation():
    # R positions (1,0), (0,1); I positions (1,0), (1,0) -> 1 - cos = [0, 1].
    r = t([[[1, 0]], [[0, 1]]]).view(1, 2, 1, 2)
    i = t([[[1, 1]], [[0, 0]]]).view(1, 2, 1, 2)
    # mask 2x4: left 2x2 cell empty, right 2x2 cell half anomalous -> area-resized [0, 0.5]
    mask = t([[0, 0, 1, 1], [0, 0, 0, 0]]).view(1, 1, 2, 4)
    # |0 - 0| and |1 - 0.5| -> mean 0.25
    assert discrepancy_loss([r], [i], mask).item() == pytest.approx(0.25, abs=1e-6)
    # two identical levels add up
    assert discrepancy_loss([r, r], [i, i], mask).item() == pytest.approx(0.5, abs=1e-6)


def test_class_evidence_loss_matches_hand_computation():
    # one image, N=2 tokens, K=2 classes, M=2 slots; attention weights given directly.
    weights = t([[[[0.4, 0.1], [0.3, 0.2]],   # token 1: class 0 mass 0.5
                  [[0.7, 0.1], [0.1, 0.1]]]])  # token 2: class 0 mass 0.8
    # evidence = mean over tokens: class 0 -> 0.65, class 1 -> 0.35
    log_weights = weights.log()
    assert class_evidence_loss(log_weights, torch.tensor([0])).item() == pytest.approx(
        -math.log(0.65), abs=1e-6)
    both = torch.cat([log_weights, log_weights])
    assert class_evidence_loss(both, torch.tensor([0, 1])).item() == pytest.approx(
        (-math.log(0.65) - math.log(0.35)) / 2, abs=1e-6)


def test_compactness_loss_matches_hand_computation():
    tokens = t([[[0, 0], [3, 4]]])  # (B=1, N=2, D=2)
    slots = t([[[1, 0], [3, 3]],    # class 0: nearest to (0,0) is (1,0): 1; to (3,4) is (3,3): 1
               [[0, 0], [3, 4]]])   # class 1: exact matches: 0
    # mean over tokens of the squared distance, divided by D=2: class 0 -> 0.5, class 1 -> 0
    assert compactness_loss(tokens, slots, torch.tensor([0])).item() == pytest.approx(0.5)
    assert compactness_loss(tokens, slots, torch.tensor([1])).item() == pytest.approx(0.0)
    pair = torch.cat([tokens, tokens])
    assert compactness_loss(pair, slots, torch.tensor([0, 1])).item() == pytest.approx(0.25)


def test_compactness_loss_leaves_out_anomalous_tokens():
    tokens = t([[[0, 0], [3, 4]]]).requires_grad_()  # as above: class 0 distances 1 and 1
    slots = t([[[1, 0], [3, 3]]])
    normal = torch.tensor([[True, False]])  # the second token lies on a synthetic anomaly
    loss = compactness_loss(tokens, slots, torch.tensor([0]), normal)
    assert loss.item() == pytest.approx(1 / 2)  # only (0,0): distance 1, over D=2
    loss.backward()
    assert tokens.grad[0, 1].abs().sum() == 0 and tokens.grad[0, 0].abs().sum() > 0
    none = compactness_loss(tokens, slots, torch.tensor([0]), torch.tensor([[False, False]]))
    assert none.item() == 0.0


def test_normal_tokens_are_the_cells_without_any_anomalous_pixel():
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 0, 3] = 1  # one pixel in the top-right 2x2 cell
    mask[0, 0, 2:, :2] = 1  # the whole bottom-left cell
    assert normal_tokens(mask, (2, 2)).tolist() == [[True, False, False, True]]


def test_total_loss_uses_the_normal_tokens_for_compactness():
    memory = ClassAwareMemory(2, 3, 4, temperature=0.1, init_std=1.0)
    read = memory(torch.randn(1, 4, 2, 2))
    levels = [torch.randn(1, 3, 4, 4)]
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1  # the top-left token is anomalous
    terms = mddnet_loss(levels, levels, levels, levels, mask, read, memory.slots,
                        torch.tensor([1]), LossConfig())
    expected = compactness_loss(read.tokens[:, 1:], memory.slots, torch.tensor([1]))
    torch.testing.assert_close(terms["cpt"], expected)


def test_total_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    levels = [torch.randn(2, 4, 4, 4), torch.randn(2, 6, 2, 2)]
    args = (levels, [x + 0.3 * torch.randn_like(x) for x in levels],
            [x + 0.5 * torch.randn_like(x) for x in levels],
            [x + 0.1 * torch.randn_like(x) for x in levels],
            (torch.rand(2, 1, 16, 16) > 0.7).float())
    memory = ClassAwareMemory(3, 4, 5, temperature=0.1, init_std=1.0)
    read = memory(torch.randn(2, 5, 2, 2))
    category = torch.tensor([0, 2])
    weights = LossConfig(restoration=1.0, identity=2.0, discrepancy=3.0, class_evidence=0.5,
                         compactness=0.25)
    terms = mddnet_loss(*args, read, memory.slots, category, weights)
    expected = (terms["res"] + 2 * terms["id"] + 3 * terms["dist"] + 0.5 * terms["cls"]
                + 0.25 * terms["cpt"])
    torch.testing.assert_close(terms["loss"], expected)
    torch.testing.assert_close(terms["res"], global_cosine_loss(args[2], args[0]))
    torch.testing.assert_close(terms["id"], global_cosine_loss(args[3], args[1]))
    only_dist = LossConfig(0.0, 0.0, 1.0, 0.0, 0.0)
    torch.testing.assert_close(mddnet_loss(*args, read, memory.slots, category, only_dist)["loss"],
                               terms["dist"])


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
    torch.testing.assert_close(fuse_maps(a_tr, a_ri, "sum", (2.0, 0.5)),
                               t([3.5, 9]).view(1, 1, 1, 2))
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
    neck = FusionBottleneck(channels, strides, out_channels=24, blocks=2, mid_ratio=0.5,
                            stride=stride)
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
        torch.testing.assert_close(a_ri, discrepancy_map(student.restored, student.identity,
                                                         (16, 16)))
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
    batch = Batch(IMAGES, torch.zeros(2, 1, 64, 64), torch.zeros(2, dtype=torch.long), category,
                  torch.arange(2))
    loss = method.training_step(batch, 0)
    assert len(calls) == 1 and calls[0] is IMAGES
    loss.backward()
    assert method.model.memory.slots.grad is not None
    assert method.model.bottleneck.fuse[0].body[0].weight.grad is not None
    assert all(p.grad is None for p in method.model.teacher.parameters())

    with torch.no_grad():  # reference: both teacher passes in full, then the paper's losses
        clean, damaged = method.model.encode(IMAGES), method.model.encode(corrupted)
        student = method.model.student(damaged)
        terms = mddnet_loss(clean, damaged, student.restored, student.identity, mask,
                            student.read, method.model.memory.slots, category,
                            method.config.loss)
    torch.testing.assert_close(loss.detach(), terms["loss"], rtol=1e-4, atol=1e-5)
    for name in ("res", "id", "dist", "cls", "cpt"):
        torch.testing.assert_close(logged[f"train/{name}"].detach(), terms[name], rtol=1e-4,
                                   atol=1e-5)


# -- config options ------------------------------------------------------------------------------
def outputs(method: MDDNet) -> torch.Tensor:
    with torch.no_grad():
        return method.model(IMAGES)


def test_option_bottleneck_fields_change_the_embedding():
    base = build().model
    assert base.bottleneck.fuse[0].body[0].out_channels == 64  # mid_ratio 0.5 of 128
    wide = build(**{"bottleneck.channels": 64}).model
    assert wide.memory.slots.shape[-1] == 64
    assert wide.student(wide.encode(IMAGES)).z.shape == (2, 64, 4, 4)
    strided = build(**{"bottleneck.stride": 2}).model
    assert strided.student(strided.encode(IMAGES)).z.shape == (2, 128, 2, 2)
    assert len(build(**{"bottleneck.blocks": 3}).model.bottleneck.fuse) == 3
    narrow = build(**{"bottleneck.mid_ratio": 0.25}).model
    assert narrow.bottleneck.fuse[0].body[0].out_channels == 32
    reference = outputs(build())
    for overrides in ({"bottleneck.blocks": 3}, {"bottleneck.mid_ratio": 0.25},
                      {"bottleneck.stride": 2}):
        assert not torch.allclose(outputs(build(**overrides)), reference)


def test_option_decoder_blocks_and_width():
    model = build(**{"decoder.blocks": [2, 1, 3], "decoder.mid_ratio": 0.25}).model
    for decoder in (model.restoration, model.identity):
        assert [len(stage) for stage in decoder.stages] == [2, 1, 3]
        assert decoder.stages[0][0].body[0].out_channels == 28  # 0.25 * 112
    with pytest.raises(ConfigError, match=r"decoder\.blocks needs one entry per backbone level"):
        tiny_config(**{"decoder.blocks": [1, 1]})


@pytest.mark.parametrize("output_relu", [True, False])
def test_option_decoder_output_relu(output_relu):
    model = build(**{"decoder.output_relu": output_relu}).model
    with torch.no_grad():
        student = model.student(model.encode(IMAGES))
    for levels in (student.restored, student.identity):
        smallest = min(level.min().item() for level in levels)
        assert (smallest >= 0) == output_relu  # signed outputs only without the final ReLU


@pytest.mark.parametrize("inputs", ["split", "shared"])
def test_option_decoder_inputs_routes_memory_to_the_decoders(inputs):
    method = build(**{"decoder.inputs": inputs})
    model = method.model
    width = 256 if inputs == "shared" else 128
    assert model.restoration.stages[0][0].body[0].in_channels == width
    assert model.identity.stages[0][0].body[0].in_channels == width
    with torch.no_grad():
        features = model.encode(IMAGES)
        before = model.student(features)
        model.memory.slots.mul_(3.0).add_(1.0)  # change only the memory
        after = model.student(features)
    torch.testing.assert_close(before.z, after.z)
    assert not torch.allclose(before.restored[0], after.restored[0])
    identity_changed = not torch.allclose(before.identity[0], after.identity[0])
    assert identity_changed == (inputs == "shared")


def test_option_memory_fields():
    base = build()
    assert base.model.memory.slots.shape == (3, 8, 128)
    assert build(**{"memory.slots": 5}).model.memory.slots.shape == (3, 5, 128)
    assert build(**{"memory.num_classes": 7}).model.memory.slots.shape == (7, 8, 128)
    scaled = build(**{"memory.init_std": 0.01}).model.memory.slots
    assert scaled.std().item() == pytest.approx(0.01, rel=0.1)
    sharp = build(**{"memory.temperature": 0.01})
    assert sharp.model.memory.temperature == 0.01
    torch.testing.assert_close(sharp.model.memory.slots, base.model.memory.slots)
    assert not torch.allclose(outputs(sharp), outputs(base))
    with pytest.raises(ConfigError, match="temperature"):
        tiny_config(**{"memory.temperature": 0.0})


def test_option_scoring_fusion():
    method = build(**{"scoring.fusion_weights": [1.0, 0.0]})
    with torch.no_grad():
        features = method.model.encode(IMAGES)
        a_tr, a_ri = method.model.score_maps(features, method.model.student(features))
    torch.testing.assert_close(outputs(method), a_tr)
    torch.testing.assert_close(outputs(build(**{"scoring.fusion_weights": [0.0, 1.0]})), a_ri)
    torch.testing.assert_close(outputs(build(**{"scoring.fusion": "max"})),
                               torch.maximum(a_tr, a_ri))
    torch.testing.assert_close(outputs(build()), a_tr + a_ri)


def training_terms(method: MDDNet, seed: int = 0) -> dict[str, torch.Tensor]:
    """The logged loss terms of one training step at a fixed synthesis seed."""
    logged: dict[str, torch.Tensor] = {}
    method.log_dict = lambda values, **kwargs: logged.update(values)
    method.log = lambda name, value, **kwargs: logged.update({name: value})
    method.train()
    torch.manual_seed(seed)
    batch = Batch(IMAGES, torch.zeros(2, 1, 64, 64), torch.zeros(2, dtype=torch.long),
                  torch.tensor([0, 2]), torch.arange(2))
    with torch.no_grad():
        method.training_step(batch, 0)
    return {name.removeprefix("train/"): value for name, value in logged.items()}


def test_option_loss_weights_change_the_training_loss():
    default = training_terms(build())
    expected = (default["res"] + default["id"] + default["dist"] + 0.1 * default["cls"]
                + 0.1 * default["cpt"])
    torch.testing.assert_close(default["loss"], expected)
    reweighted = training_terms(build(**{"loss.compactness": 0.0, "loss.identity": 2.0}))
    torch.testing.assert_close(reweighted["cpt"], default["cpt"])  # same batch, same synthesis
    torch.testing.assert_close(reweighted["loss"],
                               expected - 0.1 * default["cpt"] + default["id"])


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_option_synthesis_reaches_training(probability, monkeypatch):
    method = build(**{"synthesis.probability": probability, "synthesis.perlin_scales": [1, 2]})
    assert method.synthesizer.config == method.config.synthesis
    seen = []
    original = method.synthesizer.__call__

    def spy(images, *args, **kwargs):
        corrupted, mask = original(images, *args, **kwargs)
        seen.append((images, corrupted, mask))
        return corrupted, mask

    monkeypatch.setattr(method, "synthesizer", spy)
    terms = training_terms(method)
    images, corrupted, mask = seen[0]
    if probability == 0.0:
        assert mask.sum() == 0 and torch.equal(corrupted, images)
    else:
        assert mask.sum() > 0 and not torch.equal(corrupted, images)
    assert torch.isfinite(terms["loss"])


def synthesized(method: MDDNet, images: torch.Tensor = IMAGES) -> tuple[torch.Tensor, ...]:
    """The method's synthesizer on 4 copies of ``images`` with a fixed generator."""
    return method.synthesizer(images.repeat(4, 1, 1, 1), torch.Generator().manual_seed(3))


def test_option_synthesis_threshold_shrinks_the_mask():
    areas, masks = [], []
    for threshold in (0.1, 0.3, 0.5):
        method = build(**{"synthesis.probability": 1.0, "synthesis.threshold": threshold})
        mask = synthesized(method)[1]
        areas.append(mask.mean().item())
        masks.append(mask.bool())
    assert areas[0] > areas[1] > areas[2] > 0  # same noise, higher threshold
    assert not (masks[2] & ~masks[1]).any() and not (masks[1] & ~masks[0]).any()


def test_option_synthesis_beta_is_the_kept_share_of_the_image():
    kept = build(**{"synthesis.probability": 1.0, "synthesis.beta": [1.0, 1.0]})
    corrupted, mask = synthesized(kept)
    assert mask.sum() > 0
    torch.testing.assert_close(corrupted, IMAGES.repeat(4, 1, 1, 1))
    opaque = build(**{"synthesis.probability": 1.0, "synthesis.beta": [0.0, 0.0]})
    corrupted, mask = synthesized(opaque)
    inside = mask.expand_as(corrupted).bool()
    assert (corrupted - IMAGES.repeat(4, 1, 1, 1))[inside].abs().mean() > 0.1


def test_option_synthesis_rotate_and_source_change_the_anomalies():
    base = build(**{"synthesis.probability": 1.0})
    corrupted, mask = synthesized(base)
    unrotated = build(**{"synthesis.probability": 1.0, "synthesis.rotate": False})
    assert not torch.equal(synthesized(unrotated)[1], mask)
    own = build(**{"synthesis.probability": 1.0, "synthesis.source": "self"})
    assert own.run_record() == {"synthesis": {"source": "self", "grid": 8, "augment": 0}}
    assert not torch.allclose(synthesized(own)[0], corrupted)
    assert base.run_record()["synthesis"]["source"] == "textures"


def test_option_synthesis_foreground_keeps_anomalies_on_the_object():
    images = torch.full((1, 3, 64, 64), 0.1)
    images[..., 16:48, 16:48] = 0.9  # a bright square object on a dark background
    method = build(**{"synthesis.probability": 1.0, "synthesis.threshold": 0.0,
                      "synthesis.foreground": True})
    mask = synthesized(method, images)[1]
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[16:48, 16:48] = False
    assert mask.sum() > 0 and mask[..., outside].sum() == 0
    anywhere = build(**{"synthesis.probability": 1.0, "synthesis.threshold": 0.0})
    assert synthesized(anywhere, images)[1][..., outside].sum() > 0


def test_run_record_names_the_dtd_images_used(tmp_path):
    from PIL import Image

    folder = tmp_path / "dtd" / "images" / "banded"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(folder / f"banded_{i}.jpg")
    method = build(**{"synthesis.dtd_root": str(tmp_path / "dtd")})
    assert method.run_record() == {"synthesis": {
        "source": "dtd", "dtd_root": str((tmp_path / "dtd").resolve()), "dtd_images": 2,
        "augment": 0}}


def test_option_scoring_pooling():
    maximum = build()
    topk = build(**{"scoring.pooling": "topk_mean", "scoring.topk_fraction": 0.05})
    with torch.no_grad():
        out, top = maximum(IMAGES), topk(IMAGES)
    torch.testing.assert_close(top.anomaly_map, out.anomaly_map)  # same weights (seed 0)
    k = round(0.05 * 64 * 64)
    torch.testing.assert_close(top.score, out.anomaly_map.flatten(1).topk(k).values.mean(1))
    assert (top.score < out.score).all()


def test_option_backbone_layers_set_the_teacher_levels():
    model = build(**{"backbone.layers": [2, 3, 4]}).model
    assert (model.teacher.channels, model.teacher.strides) == ([40, 112, 320], [8, 16, 32])
    with torch.no_grad():
        student = model.student(model.encode(IMAGES))
    assert [level.shape[1:] for level in student.restored] == [(40, 8, 8), (112, 4, 4),
                                                              (320, 2, 2)]
    assert model(IMAGES).shape == (2, 1, 8, 8)  # the map at the finest level's size


def test_paper_defaults_are_the_specification():
    config = MDDNetConfig()
    assert config.backbone == BackboneConfig("wide_resnet50_2.tv_in1k", (1, 2, 3), "pretrained")
    assert (config.data.image_size, config.data.batch_size) == (256, 16)
    assert config.bottleneck.channels == 2048 and config.bottleneck.stride == 2
    assert config.bottleneck.blocks == 3  # RD's one-class bottleneck
    assert (config.memory.slots, config.memory.temperature) == (32, 0.07)
    assert config.decoder.blocks == (3, 4, 6) and config.decoder.inputs == "split"
    assert config.decoder.output_relu
    assert dataclasses.astuple(config.loss) == (1.0, 1.0, 1.0, 0.1, 0.1)
    assert (config.scoring.sigma, config.scoring.pooling, config.scoring.fusion) == (4.0, "max",
                                                                                      "sum")
    assert (config.optim.name, config.optim.lr, config.optim.betas) == ("adam", 5e-3, (0.5, 0.999))
    synthesis = config.synthesis  # p 0.5, scales 2^[0, 6), threshold 0.5, opacity ~ U(0.1, 1)
    assert synthesis.probability == 0.5 and synthesis.threshold == 0.5 and synthesis.rotate
    assert synthesis.perlin_scales == (0, 5) and synthesis.beta == (0.0, 0.9)  # beta = 1 - opacity
    assert resolve_config("mddnet", "paper") == config


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'memory\.slots'"):
        from_dict(MDDNetConfig, {"memory": {"slot": 3}}, context="mddnet")


def test_paper_preset_offline_raises_weights_not_found(empty_offline_hub):
    with pytest.raises(WeightsNotFoundError, match=r"wide_resnet50_2\.tv_in1k.*looked in"):
        adbench.create("mddnet", preset="paper")


# -- number of classes -------------------------------------------------------------------------
def test_num_classes_from_the_data_is_filled_at_build_and_rebuilds_from_the_checkpoint():
    method = adbench.create("mddnet", "tiny", num_classes=5, **{"backbone.weights": "none"})
    assert method.model.memory.slots.shape == (5, 8, 128)
    assert method.hparams["config"]["memory"]["num_classes"] == 5
    rebuilt = MDDNet(method.hparams["config"])
    rebuilt.load_state_dict(method.state_dict(), strict=True)
    torch.testing.assert_close(rebuilt.model.memory.slots, method.model.memory.slots)


@pytest.mark.parametrize(("num_classes", "message"), [
    (2, r"memory\.num_classes=2 but the training data has 3 categories.*cannot hold"),
    (4, r"memory\.num_classes=4 but the training data has 3 categories.*never be trained"),
    (0, r"memory\.num_classes is 0.*num_classes=3"),
])
def test_fit_refuses_a_memory_not_sized_for_the_training_categories(num_classes, message):
    method = MDDNet(tiny_config(**{"memory.num_classes": num_classes}))
    datamodule = SimpleNamespace(categories=["a", "b", "c"])  # all the check reads
    with pytest.raises(ConfigError, match=message):
        adbench.fit(method, datamodule)


# -- the paper architecture in mechanics mode --------------------------------------------------
def rd_bottleneck_reference() -> torch.nn.Module:
    """RD's one-class bottleneck for WideResNet-50-2 from torchvision's blocks: 3x3 stride-2
    convolutions (level 1: 256 -> 512 -> 1024, level 2: 512 -> 1024) and a stage of 3 bottleneck
    blocks (width 128 per group, as the wide ResNet) from 3 x 1024 to 2048 channels at stride 2."""
    from torch import nn
    from torchvision.models.resnet import Bottleneck

    def conv(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out)]

    down = nn.Sequential(nn.Conv2d(3072, 2048, 1, stride=2, bias=False), nn.BatchNorm2d(2048))
    stage = [Bottleneck(3072, 512, 2, down, base_width=128),
             *(Bottleneck(2048, 512, base_width=128) for _ in range(2))]
    return nn.Sequential(*conv(256, 512), *conv(512, 1024), *conv(512, 1024), *stage)


@pytest.mark.slow
def test_paper_architecture_in_mechanics_mode_trains_and_scores_at_256_px():
    import timm
    from anomalib.models.components.backbone.resnet_decoder import get_decoder

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    with pytest.warns(UserWarning, match="random"):
        method = adbench.create("mddnet", "paper", random_weights=True, num_classes=15)
    model = method.model
    teacher = timm.create_model("wide_resnet50_2", pretrained=False, features_only=True,
                                out_indices=(1, 2, 3))
    assert count(model.teacher) == count(teacher) == 24_862_528
    assert count(model.bottleneck) == count(rd_bottleneck_reference()) == 58_885_120
    assert count(model.restoration) == count(model.identity) == count(get_decoder(
        "wide_resnet50_2")) == 24_917_504  # RD's decoder, as anomalib builds it
    assert model.memory.slots.shape == (15, 32, 2048)

    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    method.train()
    method.log_dict = lambda *args, **kwargs: None
    method.log = lambda *args, **kwargs: None
    batch = Batch(images, torch.zeros(2, 1, 256, 256), torch.zeros(2, dtype=torch.long),
                  torch.tensor([0, 14]), torch.arange(2))
    loss = method.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.memory.slots.grad is not None and model.bottleneck.fuse[0].body[0].weight.grad \
        is not None
    method.eval()
    with torch.no_grad():
        features = model.encode(images)
        z = model.student(features).z
        out = method(images)
    assert [tuple(f.shape[1:]) for f in features] == [(256, 64, 64), (512, 32, 32),
                                                      (1024, 16, 16)]
    assert z.shape == (2, 2048, 8, 8)
    assert out.anomaly_map.shape == (2, 1, 256, 256) and torch.isfinite(out.score).all()


# -- learning ----------------------------------------------------------------------------------
LEARNING_STEPS = 200
LEARNING_MARGIN = 0.08  # image AUROC points over the naive mean-image detector


class LossRecorder(L.Callback):
    """Keeps the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def own_class_attention(method: MDDNet, images: torch.Tensor, category: torch.Tensor) -> tuple:
    """Mean attention mass of each image's tokens on its own class's slots, and the share of
    images whose largest per-class mass is their own class."""
    with torch.no_grad():
        read = method.model.student(method.model.encode(images)).read
    mass = read.log_weights.exp().sum(dim=(1, 3)) / read.log_weights.shape[1]  # (B, K)
    own = mass[torch.arange(len(category)), category]
    return own.mean().item(), (mass.argmax(dim=1) == category).float().mean().item()


def restoration_and_identity_errors(method: MDDNet, images: torch.Tensor) -> tuple[float, float]:
    """Cosine distance to the clean teacher features T(n) inside synthetic anomalies, summed over
    the levels, of the restoration decoder's R(a) and the identity decoder's I(a)."""
    synthesis = dataclasses.replace(method.config.synthesis, probability=1.0)
    corrupted, mask = AnomalySynthesizer(synthesis)(images, torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = method.model.encode(images)
        student = method.model.student(method.model.encode(corrupted))
    errors = []
    for decoded in (student.restored, student.identity):
        total = 0.0
        for level, target in zip(decoded, clean, strict=True):
            weight = resize_mask(mask, level.shape[-2:])
            total += ((pixel_cosine_distance(level, target) * weight).sum() / weight.sum()).item()
        errors.append(total)
    return errors[0], errors[1]


def training_images(datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = datamodule.dataset("train")
    samples = [dataset[i] for i in range(len(dataset))]
    return (torch.stack([s.image for s in samples]),
            torch.tensor([s.category for s in samples]))


@pytest.mark.slow
def test_tiny_preset_learns_and_beats_the_naive_detector(tmp_path):
    """Also: the memory losses make the memory class-specific (an ablation without them is not),
    and the restoration decoder restores synthetic anomalies better than the identity decoder."""
    datamodule, naive = synthetic_task(tmp_path / "synthetic", 4, n_train=20, n_test=20,
                                       batch_size=16)
    method = adbench.create("mddnet", preset="tiny", num_classes=4)
    recorder = LossRecorder()
    adbench.fit(method, datamodule, max_steps=LEARNING_STEPS, accelerator="cpu", devices=1,
                enable_progress_bar=False, callbacks=[recorder])
    fifth = LEARNING_STEPS // 5
    first, last = recorder.losses[:fifth], recorder.losses[-fifth:]
    assert sum(last) / fifth < 0.6 * sum(first) / fifth
    table = adbench.evaluate(method, datamodule, accelerator="cpu", devices=1,
                             enable_progress_bar=False).to_frame()
    assert table.loc["mean", "I-AUROC"] >= naive + LEARNING_MARGIN, (table, naive)

    method.eval()
    images, category = training_images(datamodule)
    mass, hits = own_class_attention(method, images, category)  # measured: 0.91, 1.0
    assert mass > 0.7 and hits >= 0.9, (mass, hits)
    restored, kept = restoration_and_identity_errors(method, images)  # measured: 0.58, 0.67
    assert restored < 0.95 * kept, (restored, kept)

    ablation = adbench.create("mddnet", preset="tiny", num_classes=4,
                              **{"loss.class_evidence": 0.0, "loss.compactness": 0.0})
    adbench.fit(ablation, datamodule, max_steps=LEARNING_STEPS, accelerator="cpu", devices=1,
                enable_progress_bar=False)
    ablation.eval()
    mass_without, _ = own_class_attention(ablation, images, category)  # measured: 0.21
    assert mass_without < 0.5 < mass, (mass_without, mass)
