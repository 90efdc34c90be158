"""The reverse-distillation loss (Deng & Li, CVPR 2022): 1 - cosine, summed over the levels."""

from __future__ import annotations

from torch import Tensor

from adbench.distillation import global_cosine_loss, pixel_cosine_distance
from adbench.errors import ConfigError


def distillation_loss(teacher: list[Tensor], student: list[Tensor], form: str) -> Tensor:
    """sum_k of the level-k loss between the teacher E_k and the student D_k, batch-averaged.

    Args:
        teacher: levels [(B, C_k, h_k, w_k)] (treated as constants).
        student: levels shaped like ``teacher``.
        form: "flattened" (RD official code): 1 - cos(vec E_k, vec D_k), each level flattened to
            one vector per image; "position" (RD paper, Eq. 2): the mean over the h_k w_k
            positions of 1 - cos(E_k(h, w), D_k(h, w)) along the channels (Eq. 1).
    """
    if form == "flattened":
        return global_cosine_loss(student, teacher)
    if form == "position":
        total = student[0].new_zeros(())
        for e, d in zip(teacher, student, strict=True):
            total = total + pixel_cosine_distance(e.detach(), d).mean()
        return total
    raise ConfigError(f"rd: loss.form must be 'flattened' or 'position', got {form!r}")
