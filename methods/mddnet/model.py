"""MDD-Net as a pure torch module (Xing et al., arXiv 2504.14884).

Frozen teacher T -> trainable fusion bottleneck -> z. The class-aware memory reads z into z_hat;
the restoration decoder R decodes z_hat and the identity decoder I decodes z (or both decode
[z; z_hat], ``decoder.inputs="shared"``). Both decoders output features shaped like T's levels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from adbench.backbones import FeatureExtractor
from adbench.distillation import FeatureDecoder, FusionBottleneck, discrepancy_map

from .config import MDDNetConfig
from .memory import ClassAwareMemory, MemoryRead
from .scoring import fuse_maps


class StudentOutput(NamedTuple):
    """One pass of the trainable part on teacher features.

    Attributes:
        z: (B, D, h_z, w_z) bottleneck embedding.
        read: the memory read of z (z_hat, attention, tokens).
        restored: R's levels [(B, C_i, h_i, w_i)].
        identity: I's levels, same shapes.
    """

    z: Tensor
    read: MemoryRead
    restored: list[Tensor]
    identity: list[Tensor]


class MDDNetModel(nn.Module):
    """Teacher, bottleneck, class-aware memory and the two decoders.

    Args:
        config: the method config (backbone, bottleneck, memory, decoder, scoring fields are read).
    """

    def __init__(self, config: MDDNetConfig) -> None:
        super().__init__()
        self.config = config
        self.teacher = FeatureExtractor(
            config.backbone, frozen=True, random_weights=config.random_weights
        )
        channels, strides = self.teacher.channels, self.teacher.strides
        neck = config.bottleneck
        self.bottleneck = FusionBottleneck(
            channels, strides, neck.channels, neck.blocks, neck.mid_ratio, neck.stride
        )
        memory = config.memory
        self.memory = ClassAwareMemory(
            memory.num_classes, memory.slots, neck.channels, memory.temperature, memory.init_std
        )
        decoder = config.decoder
        width = neck.channels * (2 if decoder.inputs == "shared" else 1)
        decoder_args = (
            width,
            self.bottleneck.out_stride,
            channels,
            strides,
            decoder.blocks,
            decoder.mid_ratio,
            decoder.output_relu,
        )
        self.restoration = FeatureDecoder(*decoder_args)
        self.identity = FeatureDecoder(*decoder_args)

    @torch.no_grad()
    def encode(self, images: Tensor) -> list[Tensor]:
        """Frozen teacher features of images (B, 3, H, W) in [0, 1]: [(B, C_i, h_i, w_i)]."""
        return self.teacher(images)

    def student(self, features: list[Tensor]) -> StudentOutput:
        """Bottleneck, memory read and both decoders on teacher levels [(B, C_i, h_i, w_i)]."""
        z = self.bottleneck(features)
        read = self.memory(z)
        if self.config.decoder.inputs == "shared":
            both = torch.cat([z, read.readout], dim=1)
            restored, identity = self.restoration(both), self.identity(both)
        else:
            restored, identity = self.restoration(read.readout), self.identity(z)
        return StudentOutput(z, read, restored, identity)

    def score_maps(self, features: list[Tensor], student: StudentOutput) -> tuple[Tensor, Tensor]:
        """(A_TR, A_RI), each (B, 1, h_1, w_1) at the finest teacher level's size."""
        size = tuple(features[0].shape[-2:])
        teacher_restoration = discrepancy_map(features, student.restored, size)
        restoration_identity = discrepancy_map(student.restored, student.identity, size)
        return teacher_restoration, restoration_identity

    def forward(self, images: Tensor) -> Tensor:
        """Fused anomaly map (B, 1, h_1, w_1) of images (B, 3, H, W) in [0, 1]."""
        features = self.encode(images)
        a_tr, a_ri = self.score_maps(features, self.student(features))
        scoring = self.config.scoring
        return fuse_maps(a_tr, a_ri, scoring.fusion, scoring.fusion_weights)
