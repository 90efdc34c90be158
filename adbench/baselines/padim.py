"""PaDiM (Defard et al., ICPR 2021) through anomalib's `PadimModel`.

One multivariate Gaussian per feature-map position, fitted to the randomly reduced multi-level
embeddings of all training images (all categories together: the unified protocol); a test patch's
score is its Mahalanobis distance to the Gaussian of its position.

anomalib keeps every training embedding until the end of the epoch ((N_images, C, h, w), about
9 MB per image at the paper's setting); the adapter instead merges per-batch mean and scatter
matrices as batches arrive (Chan et al.'s pairwise update), so memory stays at one float64
(h*w, C, C) matrix whatever the number of images, and writes the same mean and inverse covariance
(to float32 accuracy or better) into anomalib's Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from anomalib.models.image.padim.torch_model import PadimModel
from torch import Tensor, nn

from adbench.backbones import BackboneConfig
from adbench.baselines import PRESETS
from adbench.baselines.adapter import AnomalibConfig, MemoryBankAdapter
from adbench.contract import TrainerDefaults
from adbench.errors import AdbenchError, ConfigError
from adbench.registry import MethodSpec, presets_from_folder

STABILISER = 1e-5  # anomalib adds this to the regularised covariance before inverting it


@dataclass(frozen=True)
class PadimConfig(AnomalibConfig):
    """PaDiM settings; the defaults are the paper's (Defard et al., ICPR 2021, Sec. 3-4)."""

    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            name="wide_resnet50_2.tv_in1k",  # paper Sec. 4.1: ImageNet WideResNet-50 (torchvision)
            layers=(1, 2, 3),  # paper Sec. 3.1: the first three layers' activations, concatenated
            weights="pretrained",
        )
    )
    n_features: int = 550  # paper Sec. 4.2 (WR50-Rd550): dimensions kept by random selection
    covariance_epsilon: float = 0.01  # paper Sec. 3.2: epsilon * I regularises each covariance
    trainer: TrainerDefaults = field(default_factory=lambda: TrainerDefaults(max_epochs=1))
    # paper: one pass over the training images estimates the Gaussians

    def __post_init__(self) -> None:
        if self.n_features < 1:
            raise ConfigError(f"n_features must be >= 1, got {self.n_features}")
        if self.covariance_epsilon < 0:
            raise ConfigError(f"covariance_epsilon must be >= 0, got {self.covariance_epsilon}")


class RunningGaussian:
    """Mean and scatter of per-position embeddings, merged batch by batch.

    Attributes:
        count: images seen.
        mean: (C, N) float64 mean embedding per position (N = h * w).
        scatter: (N, C, C) float64 sum of outer products of deviations from the mean.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.scatter: Tensor | None = None

    def update(self, embedding: Tensor) -> None:
        """Merge a batch (B, C, h, w) into the statistics (Chan et al., 1979, pairwise update)."""
        B, C, h, w = embedding.shape
        x = embedding.reshape(B, C, h * w).double()
        batch_mean = x.mean(dim=0)  # (C, N)
        deviation = (x - batch_mean).permute(2, 1, 0)  # (N, C, B)
        if self.mean is None or self.scatter is None:
            self.mean = batch_mean
            self.scatter = torch.bmm(deviation, deviation.transpose(1, 2))
            self.count = B
            return
        total = self.count + B
        delta = (batch_mean - self.mean).T  # (N, C)
        self.scatter.baddbmm_(deviation, deviation.transpose(1, 2))
        self.scatter.baddbmm_(delta.unsqueeze(2), delta.unsqueeze(1), alpha=self.count * B / total)
        self.mean += delta.T * (B / total)
        self.count = total

    def finish(self, epsilon: float) -> tuple[Tensor, Tensor]:
        """(C, N) mean and (N, C, C) inverse of the regularised covariance (paper Sec. 3.2).

        The covariance is unbiased (divides by count - 1) as in anomalib; its scatter buffer is
        reused in place. Sums and the inverse are computed in float64 (the regularised covariance
        is ill-conditioned when there are fewer images than channels, and float32 loses about 1%
        of the inverse there, as anomalib's float32 estimate does) and returned as float32.
        """
        if self.mean is None or self.scatter is None or self.count < 2:
            raise AdbenchError(
                f"PaDiM needs at least 2 training images to estimate covariances, got {self.count}"
            )
        covariance = self.scatter.div_(self.count - 1)
        covariance.diagonal(dim1=1, dim2=2).add_(epsilon + STABILISER)
        return self.mean.float(), torch.linalg.inv(covariance).float()


class AnomalibPadim(MemoryBankAdapter):
    """PaDiM: anomalib's `PadimModel` with adbench's weights and streamed Gaussian estimation."""

    config: PadimConfig

    def __init__(self, config: PadimConfig) -> None:
        super().__init__(config)
        self.statistics = RunningGaussian()

    def build_model(self, backbone: str, layers: list[int]) -> nn.Module:
        """Anomalib's model, built without downloading weights."""
        available = sum(self.backbone_channels)
        if self.config.n_features > available:
            raise ConfigError(
                f"n_features={self.config.n_features} exceeds the {available} channels of "
                f"{backbone} layers {layers} ({' + '.join(map(str, self.backbone_channels))})"
            )
        return PadimModel(
            backbone=backbone, layers=layers, pre_trained=False, n_features=self.config.n_features
        )

    def pretrained_extractors(self) -> list[nn.Module]:
        """The backbone that receives the weights."""
        return [self.model.feature_extractor]

    # -- the Gaussians ----------------------------------------------------------------------------
    def collect(self, images: Tensor) -> None:
        """Merge the reduced embeddings (B, n_features, h, w) of a batch into the statistics."""
        embedding = self.model(images)  # in training mode anomalib's model returns the embedding
        self.model.memory_bank.clear()  # ... and keeps a copy, which the running sums replace
        self.statistics.update(embedding)

    def reset_collection(self) -> None:
        """Drop statistics collected but not yet turned into Gaussians."""
        self.statistics = RunningGaussian()

    def has_memory(self) -> bool:
        """Whether the Gaussians have been estimated."""
        return self.model.gaussian.mean.numel() > 0

    def build_if_pending(self) -> None:
        """Write the mean and inverse covariance into anomalib's Gaussian (saved as buffers)."""
        if self.statistics.count == 0:
            return
        mean, inverse = self.statistics.finish(self.config.covariance_epsilon)
        self.statistics = RunningGaussian()
        self.model.gaussian.mean = mean
        self.model.gaussian.inv_covariance = inverse


SPEC = MethodSpec(
    name="anomalib.padim",
    module=AnomalibPadim,
    config=PadimConfig,
    presets=presets_from_folder(PRESETS / "padim"),
    paper="Defard et al., PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection "
    "and Localization, ICPR 2021, arXiv:2011.08785 (implementation: anomalib)",
)
