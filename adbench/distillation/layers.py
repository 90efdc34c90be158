"""Reverse-distillation building blocks: residual blocks, the one-class bottleneck, the decoder.

The bottleneck is the one-class bottleneck of reverse distillation (Deng & Li, CVPR 2022), which
`rd` uses as is and MDD-Net's DRD-Net keeps (Xing et al., arXiv 2504.14884): shallower teacher
levels are brought to the deepest level's size by strided convolutions, concatenated and compressed
by a residual stage into the embedding z. A decoder mirrors the teacher: one upsampling residual
stage per teacher level, deepest first, producing features shaped like the teacher's.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from adbench.errors import ConfigError

BlockMode = Literal["same", "down", "up"]


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """Bottleneck residual block (1x1 -> 3x3 or 2x2 transposed -> 1x1) with a projected skip.

    ``mode="down"`` halves the resolution (3x3 convolution of stride 2), ``mode="up"`` doubles it
    (2x2 transposed convolution of stride 2, as in the reverse-distillation decoder).
    ``activate=False`` leaves out the final ReLU, for outputs that imitate signed features.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        mode: BlockMode = "same",
        activate: bool = True,
    ) -> None:
        super().__init__()
        if mode == "up":
            spatial: nn.Module = nn.ConvTranspose2d(
                mid_channels, mid_channels, 2, stride=2, bias=False
            )
            skip: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False)
        else:
            stride = 2 if mode == "down" else 1
            spatial = nn.Conv2d(mid_channels, mid_channels, 3, stride=stride, padding=1, bias=False)
            skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False),
            *_norm_act(mid_channels),
            spatial,
            *_norm_act(mid_channels),
            nn.Conv2d(mid_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if mode == "same" and in_channels == out_channels:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Sequential(skip, nn.BatchNorm2d(out_channels))
        self.act: nn.Module = nn.ReLU(inplace=True) if activate else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, h, w) -> (B, C_out, h', w') with h' = h, h / 2 or 2 h by ``mode``."""
        return self.act(self.body(x) + self.skip(x))


def residual_stage(
    in_channels: int,
    out_channels: int,
    blocks: int,
    mid_ratio: float,
    mode: BlockMode,
    last_relu: bool = True,
) -> nn.Sequential:
    """``blocks`` residual blocks.

    Only the first changes channels and resolution, only the last may leave out its final ReLU.
    """
    mid = max(1, round(out_channels * mid_ratio))
    modes: list[BlockMode] = [mode] + ["same"] * (blocks - 1)
    widths = [in_channels] + [out_channels] * (blocks - 1)
    return nn.Sequential(
        *[
            ResidualBlock(
                width, out_channels, mid, block_mode, activate=last_relu or i < blocks - 1
            )
            for i, (width, block_mode) in enumerate(zip(widths, modes, strict=True))
        ]
    )


def _log2_ratio(high: int, low: int, what: str) -> int:
    steps = math.log2(high / low)
    if steps < 0 or steps != int(steps):
        raise ConfigError(
            f"{what} must differ by a power of two, got strides {low} "
            f"and {high}; pick backbone.layers with strides that double per level"
        )
    return int(steps)


class FusionBottleneck(nn.Module):
    """Multi-level fusion bottleneck: teacher features -> embedding z.

    Level ``l`` goes through ``log2(s_L / s_l)`` strided 3x3 convolutions (each to the channels of
    the next teacher level), all levels are concatenated at the deepest level's size and a residual
    stage of ``blocks`` blocks maps them to ``out_channels`` at ``stride`` times coarser resolution.
    """

    def __init__(
        self,
        channels: list[int],
        strides: list[int],
        out_channels: int,
        blocks: int,
        mid_ratio: float,
        stride: int,
    ) -> None:
        super().__init__()
        self.out_stride = strides[-1] * stride
        self.align = nn.ModuleList()
        by_stride = dict(zip(strides, channels, strict=True))
        for width, level_stride in zip(channels, strides, strict=True):
            steps = _log2_ratio(strides[-1], level_stride, "backbone levels")
            layers: list[nn.Module] = []
            for step in range(steps):
                target = level_stride * 2 ** (step + 1)
                out = by_stride.get(target, channels[-1])
                layers += [
                    nn.Conv2d(width, out, 3, stride=2, padding=1, bias=False),
                    *_norm_act(out),
                ]
                width = out
            if width != channels[-1]:
                layers += [nn.Conv2d(width, channels[-1], 1, bias=False), *_norm_act(channels[-1])]
            self.align.append(nn.Sequential(*layers))
        mode: BlockMode = "down" if stride == 2 else "same"
        self.fuse = residual_stage(
            channels[-1] * len(channels), out_channels, blocks, mid_ratio, mode
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        """Teacher levels [(B, C_l, h_l, w_l)] -> z (B, D, h_z, w_z)."""
        aligned = [align(f) for align, f in zip(self.align, features, strict=True)]
        return self.fuse(torch.cat(aligned, dim=1))


class FeatureDecoder(nn.Module):
    """Reverse-distillation decoder: z -> features shaped like the teacher's levels.

    One residual stage per level, deepest first; the first block of a stage upsamples by 2 when
    the input of the stage is twice as coarse as its level. ``output_relu`` keeps the ReLU at the
    end of each stage (RD: the WideResNet levels it imitates are post-ReLU); without it the
    outputs can take both signs, like the block outputs of EfficientNet.
    """

    def __init__(
        self,
        in_channels: int,
        in_stride: int,
        channels: list[int],
        strides: list[int],
        blocks: tuple[int, ...],
        mid_ratio: float,
        output_relu: bool = True,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        width, stride = in_channels, in_stride
        for level_channels, level_stride, count in zip(
            channels[::-1], strides[::-1], blocks, strict=True
        ):
            steps = _log2_ratio(stride, level_stride, "decoder input and backbone levels")
            if steps > 1:
                raise ConfigError(
                    f"a decoder stage upsamples by at most 2, but stride "
                    f"{stride} -> {level_stride}; use bottleneck.stride 1 or 2"
                )
            mode: BlockMode = "up" if steps == 1 else "same"
            self.stages.append(
                residual_stage(width, level_channels, count, mid_ratio, mode, last_relu=output_relu)
            )
            width, stride = level_channels, level_stride

    def forward(self, z: Tensor) -> list[Tensor]:
        """(B, D, h_z, w_z) -> [(B, C_l, h_l, w_l)] ordered like the teacher (shallow first)."""
        outputs = []
        x = z
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs[::-1]
