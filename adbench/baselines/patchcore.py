"""PatchCore (Roth et al., CVPR 2022) through anomalib's `PatchcoreModel`.

A memory bank of locally aggregated mid-level patch features of all training images (all
categories together: the unified protocol), reduced by greedy coreset selection; a test patch's
score is its distance to the nearest bank entry, the image score the paper's re-weighted maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from anomalib.models.components.dimensionality_reduction import SparseRandomProjection
from anomalib.models.image.patchcore.torch_model import PatchcoreModel
from torch import Tensor, nn

from adbench.backbones import BackboneConfig
from adbench.baselines import PRESETS
from adbench.baselines.adapter import AnomalibConfig, MemoryBankAdapter
from adbench.batch import AnomalyOutput
from adbench.contract import TrainerDefaults
from adbench.errors import ConfigError
from adbench.registry import MethodSpec, presets_from_folder


@dataclass(frozen=True)
class PatchCoreConfig(AnomalibConfig):
    """PatchCore settings; the defaults are the paper's (Roth et al., CVPR 2022, Sec. 3-4)."""

    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            name="wide_resnet50_2.tv_in1k",  # paper Sec. 4.1: ImageNet WideResNet-50 (torchvision)
            layers=(2, 3),  # paper Sec. 3.1: the mid-level blocks 2 and 3
            weights="pretrained",
        )
    )
    neighbourhood: int = 3  # paper Sec. 3.1: patch size p = 3 of the local average aggregation
    coreset_ratio: float = 0.1  # paper Sec. 4: PatchCore-10% (the 1% and 25% variants also exist)
    max_bank_size: int | None = None  # choice: cap on bank rows (None = ratio only, the paper's);
    # bounds bank memory and nearest-neighbour cost when many categories share one bank
    num_neighbors: int = 9  # paper Eq. 7: b nearest bank entries of m* used for re-weighting
    image_score: Literal["reweighted", "pooled"] = "reweighted"  # paper Eq. 7; "pooled": the
    # map pooled as `scoring` says (choice, for comparison with the other methods' scoring)
    trainer: TrainerDefaults = field(default_factory=lambda: TrainerDefaults(max_epochs=1))
    # paper: one pass over the training images builds the bank

    def __post_init__(self) -> None:
        if not 0.0 < self.coreset_ratio <= 1.0:
            raise ConfigError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if self.max_bank_size is not None and self.max_bank_size < 1:
            raise ConfigError(f"max_bank_size must be >= 1 or null, got {self.max_bank_size}")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ConfigError(f"neighbourhood must be an odd size >= 1, got {self.neighbourhood}")
        if self.num_neighbors < 1:
            raise ConfigError(f"num_neighbors must be >= 1, got {self.num_neighbors}")


def projection_dims(n: int, eps: float) -> int:
    """Johnson-Lindenstrauss dimension that keeps n points' distances within 1 +- eps."""
    return int(4 * math.log(n) / (eps**2 / 2 - eps**3 / 3))


def greedy_coreset(embedding: Tensor, size: int, eps: float = 0.9) -> Tensor:
    """Indices of a greedy k-center coreset of ``embedding`` (paper Sec. 3.2, Algorithm 1).

    Distances are measured after the same Johnson-Lindenstrauss sparse random projection as
    anomalib's ``KCenterGreedy`` (``eps`` = 0.9), from the same random start, so the selection is
    the same. Two differences, both measured in ``benchmarks/perf/methods_anomalib.py``: each step
    updates preallocated (N,) buffers in place instead of allocating an (N, d) difference (flat
    memory, faster), and features with fewer dimensions than the projection would have are used
    as they are (anomalib projects them *up*, which only costs time and adds distortion).

    Args:
        embedding: (N, D) patch features.
        size: number of rows to select, 1 <= size <= N.
        eps: distortion of the random projection.

    Returns:
        (size,) int64 row indices, in selection order.
    """
    n, dims = embedding.shape
    features = embedding
    if projection_dims(n, eps) < dims:
        features = SparseRandomProjection(eps=eps).fit(embedding).transform(embedding)  # (N, d)
    squared_norms = features.pow(2).sum(dim=1)
    min_distance = torch.full((n,), float("inf"), device=features.device, dtype=features.dtype)
    distance = torch.empty_like(min_distance)
    selected = torch.empty(size, dtype=torch.long, device=features.device)
    index = torch.randint(high=n, size=(1,), device=features.device).squeeze()
    for step in range(size):
        selected[step] = index
        torch.mv(features, features[index], out=distance)  # ||x - c||^2 = |x|^2 - 2 x.c + |c|^2
        distance.mul_(-2.0).add_(squared_norms).add_(squared_norms[index])
        torch.minimum(min_distance, distance, out=min_distance)
        min_distance[index] = 0.0
        index = torch.argmax(min_distance)
    return selected


class AnomalibPatchCore(MemoryBankAdapter):
    """PatchCore: anomalib's `PatchcoreModel` with adbench's weights, data and bounded bank."""

    config: PatchCoreConfig

    def __init__(self, config: PatchCoreConfig) -> None:
        super().__init__(config)
        size = self.config.neighbourhood
        self.model.feature_pooler = nn.AvgPool2d(size, stride=1, padding=size // 2)

    def build_model(self, backbone: str, layers: list[int]) -> nn.Module:
        """Anomalib's model, built without downloading weights."""
        return PatchcoreModel(
            layers=layers,
            backbone=backbone,
            pre_trained=False,
            num_neighbors=self.config.num_neighbors,
        )

    def pretrained_extractors(self) -> list[nn.Module]:
        """The backbone that receives the weights."""
        return [self.model.feature_extractor]

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Anomaly map (B, 1, H, W) = nearest-bank distance; score per ``config.image_score``."""
        output = self.infer(images)
        result = self.postprocess(output.anomaly_map, images.shape[-2:])
        if self.config.image_score == "reweighted":
            return AnomalyOutput(result.anomaly_map, output.pred_score.float())
        return result

    # -- the memory bank --------------------------------------------------------------------------
    def collect(self, images: Tensor) -> None:
        """Append the (B * h * w, D) patch embeddings to anomalib's embedding store."""
        self.model(images)  # in training mode anomalib's model stores the embedding

    def reset_collection(self) -> None:
        """Drop embeddings collected but not yet built into the bank."""
        self.model.embedding_store.clear()

    def has_memory(self) -> bool:
        """Whether the memory bank holds any rows."""
        return self.model.memory_bank.numel() > 0

    def build_if_pending(self) -> None:
        """Build the bank from the stored embeddings by coreset selection (bounded size)."""
        store = self.model.embedding_store
        if not store:
            return
        embedding = torch.cat(store).float()  # a float32 bank under mixed precision too
        store.clear()
        self.model.memory_bank = embedding[self.coreset_indices(embedding)]

    def coreset_indices(self, embedding: Tensor) -> Tensor | slice:
        """Rows of ``embedding`` (N, D) kept in the bank: ratio * N, at most ``max_bank_size``."""
        n = embedding.shape[0]
        size = max(1, int(n * self.config.coreset_ratio))
        if self.config.max_bank_size is not None:
            size = min(size, self.config.max_bank_size)
        if size >= n:
            return slice(None)
        return greedy_coreset(embedding, size)


SPEC = MethodSpec(
    name="anomalib.patchcore",
    module=AnomalibPatchCore,
    config=PatchCoreConfig,
    presets=presets_from_folder(PRESETS / "patchcore"),
    paper="Roth et al., Towards Total Recall in Industrial Anomaly Detection, CVPR 2022, "
    "arXiv:2106.08265 (implementation: anomalib)",
)
