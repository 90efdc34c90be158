"""Reverse distillation: the loss against references, training on a batch, the anomaly map."""

from __future__ import annotations

import pytest
import torch
from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
from rd_helpers import IMAGES, build, synthetic_batch

from adbench.errors import ConfigError
from adbench.methods.rd.loss import distillation_loss


def position_loss_reference(teacher: list[torch.Tensor], student: list[torch.Tensor]) -> float:
    """RD paper Eq. 1-2 as loops: M_k(h, w) = 1 - <E, D> / (|E| |D|) along the channels, the
    level loss is the mean of M_k over positions (and images), summed over the levels k."""
    total = 0.0
    for e, d in zip(teacher, student, strict=True):
        B, _, h, w = e.shape
        level = 0.0
        for b in range(B):
            for i in range(h):
                for j in range(w):
                    u, v = e[b, :, i, j].double(), d[b, :, i, j].double()
                    level += 1 - float(u @ v) / (float(u.norm()) * float(v.norm()))
        total += level / (B * h * w)
    return total


def levels(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(2, 6, 4, 4, generator=generator),
        torch.randn(2, 10, 2, 2, generator=generator),
    ]


def test_flattened_loss_is_the_official_code_loss():
    teacher, student = levels(0), levels(1)
    expected = ReverseDistillationLoss()(teacher, student)  # anomalib's port of loss_fucntion
    torch.testing.assert_close(distillation_loss(teacher, student, "flattened"), expected)


def test_position_loss_is_the_paper_equation():
    teacher, student = levels(0), levels(1)
    assert distillation_loss(teacher, student, "position").item() == pytest.approx(
        position_loss_reference(teacher, student), rel=1e-5
    )


def test_the_two_forms_on_hand_computed_levels():
    """One image, one level of two positions: the student matches the teacher at the first
    position, (1, 0), and is orthogonal to it at the second, (3, 0) against (0, 3). Per position:
    (0 + 1) / 2. Flattened (channel-major): cos([1, 3, 0, 0], [1, 0, 0, 3]) = 1 / (sqrt(10)
    sqrt(10)), so the loss is 1 - 1 / 10."""
    teacher = [torch.tensor([[1.0, 3.0], [0.0, 0.0]]).view(1, 2, 1, 2)]
    student = [torch.tensor([[1.0, 0.0], [0.0, 3.0]]).view(1, 2, 1, 2)]
    assert distillation_loss(teacher, student, "position").item() == pytest.approx(0.5)
    assert distillation_loss(teacher, student, "flattened").item() == pytest.approx(0.9)
    with pytest.raises(ConfigError, match=r"loss\.form must be"):
        distillation_loss(teacher, student, "pixel")


@pytest.mark.parametrize("form", ["flattened", "position"])
def test_training_decreases_the_loss_on_a_synthetic_batch(tmp_path, form):
    method = build(**{"loss.form": form})
    method.log = lambda *args, **kwargs: None  # no Trainer: nothing to log to
    batch = synthetic_batch(tmp_path / "synthetic")
    optimizer = method.configure_optimizers()
    teacher_before = [p.clone() for p in method.model.teacher.parameters()]
    method.train()
    losses = []
    for step in range(10):
        optimizer.zero_grad()
        loss = method.training_step(batch, step)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses
    for before, after in zip(teacher_before, method.model.teacher.parameters(), strict=True):
        assert torch.equal(before, after)  # the teacher stays frozen
    assert not method.model.teacher.model.training  # and in eval mode (BatchNorm statistics)


def test_map_is_image_sized_and_zero_where_the_decoder_restores_the_teacher(monkeypatch):
    method = build().eval()
    monkeypatch.setattr(method.model, "student", lambda features: [f.clone() for f in features])
    with torch.no_grad():
        raw = method.model(IMAGES)
        output = method(IMAGES)
    assert raw.shape == output.anomaly_map.shape == (2, 1, 64, 64)
    assert output.score.shape == (2,)
    torch.testing.assert_close(raw, torch.zeros_like(raw), atol=1e-6, rtol=0)
    torch.testing.assert_close(output.score, torch.zeros(2), atol=1e-6, rtol=0)


def test_map_sums_the_levels_discrepancy_where_the_decoder_departs(monkeypatch):
    """The decoder restores the teacher except at the top-left cell of the deepest level (stride
    16) of the first image, where it outputs the opposite vector: 1 - cos = 2 there."""
    method = build().eval()

    def student(features: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [f.clone() for f in features]
        out[-1][0, :, 0, 0] *= -1
        return out

    monkeypatch.setattr(method.model, "student", student)
    with torch.no_grad():
        raw = method.model(IMAGES)
    assert raw[0, 0, :8, :8].min().item() == pytest.approx(2.0, abs=1e-5)  # the cell's centre
    assert raw[0, 0, 24:, :].abs().max().item() < 1e-6  # beyond the upsampling's reach
    assert raw[1].abs().max().item() < 1e-6  # the other image


def test_scoring_ignores_the_category_and_matches_the_forward_pass(tmp_path):
    method = build().eval()
    batch = synthetic_batch(tmp_path / "synthetic", n=4)
    with torch.no_grad():
        first = method.score(batch)
        swapped = method.score(type(batch)(**{**vars(batch), "category": batch.category.flip(0)}))
        direct = method(batch.image)
    torch.testing.assert_close(first.score, swapped.score)
    torch.testing.assert_close(first.score, direct.score)
