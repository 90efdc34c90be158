"""MDD-Net losses against hand-computed references from the paper's equations.

References (Xing et al., arXiv 2504.14884): L_res = 1 - cos(R_i(a), T_i(n)), L_id = 1 - cos(I_i(a),
T_i(a)) with each level flattened per image; L_dist = mean |(1 - cos_px(R_i, I_i)) - m_i|;
A_TR = sum_i up(1 - cos_px(T_i, R_i)), A_RI = sum_i up(1 - cos_px(R_i, I_i)). The expected numbers
below are worked out by hand in the comments, independently of the implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
from mddnet_helpers import t

from adbench.distillation import global_cosine_loss
from adbench.methods.mddnet.config import LossConfig
from adbench.methods.mddnet.loss import (
    class_evidence_loss,
    compactness_loss,
    discrepancy_loss,
    mddnet_loss,
    normal_tokens,
)
from adbench.methods.mddnet.memory import ClassAwareMemory


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
    p, target = (
        torch.randn(2, 3, 2, 2, requires_grad=True),
        torch.randn(2, 3, 2, 2, requires_grad=True),
    )
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
    weights = t(
        [
            [
                [[0.4, 0.1], [0.3, 0.2]],  # token 1: class 0 mass 0.5
                [[0.7, 0.1], [0.1, 0.1]],
            ]
        ]
    )  # token 2: class 0 mass 0.8
    # evidence = mean over tokens: class 0 -> 0.65, class 1 -> 0.35
    log_weights = weights.log()
    assert class_evidence_loss(log_weights, torch.tensor([0])).item() == pytest.approx(
        -math.log(0.65), abs=1e-6
    )
    both = torch.cat([log_weights, log_weights])
    assert class_evidence_loss(both, torch.tensor([0, 1])).item() == pytest.approx(
        (-math.log(0.65) - math.log(0.35)) / 2, abs=1e-6
    )


def test_compactness_loss_matches_hand_computation():
    tokens = t([[[0, 0], [3, 4]]])  # (B=1, N=2, D=2)
    slots = t(
        [
            [[1, 0], [3, 3]],  # class 0: nearest to (0,0) is (1,0): 1; to (3,4) is (3,3): 1
            [[0, 0], [3, 4]],
        ]
    )  # class 1: exact matches: 0
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
    terms = mddnet_loss(
        levels, levels, levels, levels, mask, read, memory.slots, torch.tensor([1]), LossConfig()
    )
    expected = compactness_loss(read.tokens[:, 1:], memory.slots, torch.tensor([1]))
    torch.testing.assert_close(terms["cpt"], expected)


def test_total_loss_is_the_weighted_sum_of_its_terms():
    torch.manual_seed(0)
    levels = [torch.randn(2, 4, 4, 4), torch.randn(2, 6, 2, 2)]
    args = (
        levels,
        [x + 0.3 * torch.randn_like(x) for x in levels],
        [x + 0.5 * torch.randn_like(x) for x in levels],
        [x + 0.1 * torch.randn_like(x) for x in levels],
        (torch.rand(2, 1, 16, 16) > 0.7).float(),
    )
    memory = ClassAwareMemory(3, 4, 5, temperature=0.1, init_std=1.0)
    read = memory(torch.randn(2, 5, 2, 2))
    category = torch.tensor([0, 2])
    weights = LossConfig(
        restoration=1.0, identity=2.0, discrepancy=3.0, class_evidence=0.5, compactness=0.25
    )
    terms = mddnet_loss(*args, read, memory.slots, category, weights)
    expected = (
        terms["res"]
        + 2 * terms["id"]
        + 3 * terms["dist"]
        + 0.5 * terms["cls"]
        + 0.25 * terms["cpt"]
    )
    torch.testing.assert_close(terms["loss"], expected)
    torch.testing.assert_close(terms["res"], global_cosine_loss(args[2], args[0]))
    torch.testing.assert_close(terms["id"], global_cosine_loss(args[3], args[1]))
    only_dist = LossConfig(0.0, 0.0, 1.0, 0.0, 0.0)
    torch.testing.assert_close(
        mddnet_loss(*args, read, memory.slots, category, only_dist)["loss"], terms["dist"]
    )
