"""MDD-Net: every config option changes the computation it names."""

from __future__ import annotations

import pytest
import torch
from mddnet_helpers import IMAGES, build, tiny_config

from adbench.batch import Batch
from adbench.errors import ConfigError
from adbench.methods.mddnet import MDDNet


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
    for overrides in (
        {"bottleneck.blocks": 3},
        {"bottleneck.mid_ratio": 0.25},
        {"bottleneck.stride": 2},
    ):
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
    torch.testing.assert_close(
        outputs(build(**{"scoring.fusion": "max"})), torch.maximum(a_tr, a_ri)
    )
    torch.testing.assert_close(outputs(build()), a_tr + a_ri)


def training_terms(method: MDDNet, seed: int = 0) -> dict[str, torch.Tensor]:
    """The logged loss terms of one training step at a fixed synthesis seed."""
    logged: dict[str, torch.Tensor] = {}
    method.log_dict = lambda values, **kwargs: logged.update(values)
    method.log = lambda name, value, **kwargs: logged.update({name: value})
    method.train()
    torch.manual_seed(seed)
    batch = Batch(
        IMAGES,
        torch.zeros(2, 1, 64, 64),
        torch.zeros(2, dtype=torch.long),
        torch.tensor([0, 2]),
        torch.arange(2),
    )
    with torch.no_grad():
        method.training_step(batch, 0)
    return {name.removeprefix("train/"): value for name, value in logged.items()}


def test_option_loss_weights_change_the_training_loss():
    default = training_terms(build())
    expected = (
        default["res"]
        + default["id"]
        + default["dist"]
        + 0.1 * default["cls"]
        + 0.1 * default["cpt"]
    )
    torch.testing.assert_close(default["loss"], expected)
    reweighted = training_terms(build(**{"loss.compactness": 0.0, "loss.identity": 2.0}))
    torch.testing.assert_close(reweighted["cpt"], default["cpt"])  # same batch, same synthesis
    torch.testing.assert_close(reweighted["loss"], expected - 0.1 * default["cpt"] + default["id"])


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
    method = build(
        **{"synthesis.probability": 1.0, "synthesis.threshold": 0.0, "synthesis.foreground": True}
    )
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
    assert method.run_record() == {
        "synthesis": {
            "source": "dtd",
            "dtd_root": str((tmp_path / "dtd").resolve()),
            "dtd_images": 2,
            "augment": 0,
        }
    }


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
    assert [level.shape[1:] for level in student.restored] == [(40, 8, 8), (112, 4, 4), (320, 2, 2)]
    assert model(IMAGES).shape == (2, 1, 8, 8)  # the map at the finest level's size
