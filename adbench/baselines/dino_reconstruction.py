"""The DINOv2 feature-reconstruction adapter of `anomalib.dinomaly` and `anomalib.inp_former`.

Both papers (Dinomaly, Guo et al., CVPR 2025; INP-Former, Luo et al., CVPR 2025) reconstruct the
features of a frozen DINOv2-R ViT encoder and score one minus the cosine similarity of encoder and
decoder features. This module holds what they share: the config fields, the encoder built by
anomalib without downloading (``pre_trained`` forced off while the model is built) that then
receives the weights adbench resolves from ``backbone`` (model hub cache or a local file; missing
weights raise `WeightsNotFoundError`), strictly, key for key; the centre crop, normalisation and
scoring; the official MLP biases; and StableAdamW with the warm-up cosine schedule.
``random_weights`` is the mechanics mode: nothing is loaded.

Pre-processing: the data pipeline resizes to ``data.image_size`` (papers: 448); the model
centre-crops ``crop_size`` (papers: 392) and scores the crop. The map outside the crop is filled by
replicating the crop's border (adbench evaluates the whole image, the papers the cropped masks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
import torch.nn.functional as F
from anomalib.models.image.dinomaly import torch_model as dinomaly_torch
from anomalib.models.image.dinomaly.components import DinomalyMLP
from anomalib.models.image.dinomaly.components.optimizer import StableAdamW, WarmCosineScheduler
from anomalib.models.image.dinomaly.lightning_model import Dinomaly as DinomalyLightning
from torch import Tensor, nn

from adbench.backbones import BackboneConfig, create_timm_model
from adbench.baselines.adapter import AnomalibConfig, backbone_arch
from adbench.batch import AnomalyOutput, Batch
from adbench.contract import (
    AnomalyMethod,
    DataDefaults,
    OptimConfig,
    ScoringConfig,
    TrainerDefaults,
)
from adbench.errors import AdbenchError, ConfigError

ARCH_SIZES = tuple(dinomaly_torch.DINO_ARCHITECTURES)  # small, base, large, huge


@dataclass(frozen=True)
class DinoReconstructionConfig(AnomalibConfig):
    """Fields shared by the DINOv2 feature-reconstruction baselines (Dinomaly, INP-Former)."""

    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            # Dinomaly paper Sec. 4.1: ViT-Base/14 DINOv2 with registers (DINOv2-R);
            # timm tag lvd142m
            name="vit_base_patch14_reg4_dinov2.lvd142m",
            layers=(
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                9,
            ),  # Dinomaly paper Sec. 3/4.1: the middle 8 blocks of ViT-B
            weights="pretrained",
        )
    )
    # Dinomaly paper Sec. 3.4 "loose reconstruction": two groups (low / high) of four layers each
    fuse_groups: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3), (4, 5, 6, 7))
    crop_size: int = 392  # Dinomaly paper Sec. 4.1: resize to 448, centre-crop 392; 0 = no crop
    data: DataDefaults = field(default_factory=lambda: DataDefaults(image_size=448, batch_size=16))
    # Dinomaly paper Sec. 4.1: batch 16; StableAdamW lr 2e-3, betas (0.9, 0.999), weight decay
    # 1e-4, warm-up 100 iterations then cosine to final_lr 2e-4 (amsgrad as the official code)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            name="adamw",
            lr=2e-3,
            betas=(0.9, 0.999),
            weight_decay=1e-4,
            schedule="cosine",
            warmup_steps=100,
        )
    )
    final_lr: float = 2e-4
    # StableAdamW eps of both official codes: Dinomaly dinomaly_mvtec_uni.py (train(), line 166)
    # and INP-Former INP_Former_Multi_Class.py (main(), line 130) pass eps=1e-10
    adam_eps: float = 1e-10
    # The official MLPs have biases (nn.Linear's default): Dinomaly models/vision_transformer.py
    # bMlp (bottleneck) and Mlp (decoder blocks), INP-Former models/vision_transformer.py Mlp
    # (bottleneck, INP extractor, decoder blocks). anomalib 2.7 builds those of the Dinomaly
    # bottleneck and decoder and of the INP-Former extractor and decoder without (DinomalyMLP
    # bias=False); True adds them (zero-initialised, as the official code), False keeps anomalib's
    mlp_bias: bool = True
    # Dinomaly paper Sec. 4.1: 10,000 iterations (multi-class MVTec AD and VisA); gradient
    # clipping 0.1 as in the official code (dinomaly_mvtec_uni.py, clip_grad_norm max_norm=0.1)
    trainer: TrainerDefaults = field(
        default_factory=lambda: TrainerDefaults(
            max_steps=10_000,
            gradient_clip_val=0.1,
        )
    )
    # Dinomaly paper Sec. 4.1 scoring: the map is smoothed with a Gaussian of sigma 4 and the
    # image score is the mean of its top 1% (anomalib's pred_score). The evaluated map is
    # smoothed with sigma 4 px by the shared post-processing.
    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(sigma=4.0))

    def __post_init__(self) -> None:
        arch = backbone_arch(self.backbone)
        if not any(size in arch for size in ARCH_SIZES) or "dinov2" not in arch:
            raise ConfigError(
                f"backbone.name must be a timm DINOv2 ViT ('vit_<size>_patch14_"
                f"reg4_dinov2', size one of {', '.join(ARCH_SIZES)}), got "
                f"'{self.backbone.name}'"
            )
        n = len(self.backbone.layers)
        used = sorted(i for group in self.fuse_groups for i in group)
        if not used or used[-1] >= n or used[0] < 0:
            raise ConfigError(
                f"fuse_groups {[list(g) for g in self.fuse_groups]} must index the "
                f"{n} target layers (0..{n - 1})"
            )
        if self.crop_size < 0 or self.crop_size > self.data.image_size:
            raise ConfigError(
                f"crop_size must be in [0, data.image_size={self.data.image_size}]"
                f" (0 = no crop), got {self.crop_size}"
            )
        patch = re.search(r"patch(\d+)", arch)  # timm names carry the patch size
        key, side = (
            ("crop_size", self.crop_size)
            if self.crop_size
            else ("data.image_size", self.data.image_size)
        )
        if patch and side % int(patch[1]):
            raise ConfigError(
                f"{key} must be a multiple of the ViT patch size {patch[1]}, got {side}"
            )
        if self.adam_eps <= 0:
            raise ConfigError(f"adam_eps must be positive, got {self.adam_eps}")


@contextlib.contextmanager
def encoder_without_download(module: Any) -> Iterator[None]:
    """Build the encoder without pretrained weights while anomalib's ``module`` builds its model.

    The encoder is created with ``pre_trained=False`` (anomalib hard-codes True, which
    downloads); the weights are loaded afterwards.
    """
    original = module.TimmFeatureExtractor

    def build(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, "pre_trained": False})

    module.TimmFeatureExtractor = build
    try:
        yield
    finally:
        module.TimmFeatureExtractor = original


def add_mlp_biases(modules: list[nn.Module]) -> None:
    """Give the bias-free linear layers of anomalib's MLPs (`DinomalyMLP`) biases, in place.

    The new layers have the same shapes; they are initialised afterwards with the rest of the
    trainable modules (weights truncated normal, biases zero).
    """
    for module in modules:
        for mlp in module.modules():
            if not isinstance(mlp, DinomalyMLP):
                continue
            for name in ("fc1", "fc2"):
                linear = getattr(mlp, name)
                if linear.bias is None:
                    setattr(mlp, name, nn.Linear(linear.in_features, linear.out_features))


class DinoReconstruction(AnomalyMethod):
    """Base of the DINOv2 reconstruction baselines: weights, crop, scoring and StableAdamW."""

    config: DinoReconstructionConfig

    def __init__(self, config: DinoReconstructionConfig) -> None:
        super().__init__(config)
        backbone = self.config.backbone
        if backbone.timm_kwargs:
            raise ConfigError(
                f"backbone.timm_kwargs {backbone.timm_kwargs} cannot be used with "
                "anomalib.dinomaly: anomalib creates the ViT itself"
            )
        # fails fast (WeightsNotFoundError) before anomalib's model is built
        weighted = create_timm_model(
            dataclasses.replace(backbone, timm_kwargs={}),
            random_weights=self.config.random_weights,
            dynamic_img_size=True,
        )
        data_config = timm.data.resolve_model_data_config(weighted)
        self.register_buffer(
            "mean", torch.tensor(data_config["mean"]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(data_config["std"]).view(1, 3, 1, 1), persistent=False
        )
        groups = [list(g) for g in self.config.fuse_groups]
        self.model = self.build_model(backbone_arch(backbone), list(backbone.layers), groups)
        self.model.fuse_layer_encoder = groups
        self.model.fuse_layer_decoder = groups
        self.model.encoder.feature_extractor.load_state_dict(weighted.state_dict(), strict=True)
        del weighted
        self.freeze(self.model.encoder)
        if self.config.mlp_bias:
            add_mlp_biases(self.trainable())
        # the papers' initialisation of the trainable parts (official code, anomalib)
        DinomalyLightning._initialize_trainable_modules(torch.nn.ModuleList(self.trainable()))

    # -- the part a subclass writes -------------------------------------------------------------
    def build_model(self, arch: str, layers: list[int], groups: list[list[int]]) -> nn.Module:
        """Anomalib's torch model, built without downloading (see `encoder_without_download`)."""
        raise NotImplementedError

    def trainable(self) -> list[nn.Module]:
        """The modules that are trained (the encoder stays frozen)."""
        raise NotImplementedError

    def reconstruction_loss(self, images: Tensor) -> Tensor:
        """Anomalib's training loss for normalised, cropped images."""
        raise NotImplementedError

    def normalize(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> normalised with the encoder's mean and std."""
        return (images - self.mean) / self.std

    def crop(self, images: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
        """Centre crop to ``crop_size`` (as torchvision's CenterCrop) and the padding back."""
        size = self.config.crop_size
        height, width = images.shape[-2:]
        if size == 0 or (size >= height and size >= width):
            return images, (0, 0, 0, 0)
        if size > height or size > width:
            raise AdbenchError(
                f"anomalib.dinomaly: crop_size={size} is larger than the images "
                f"({height} x {width}); lower crop_size or raise data.image_size"
            )
        top, left = round((height - size) / 2.0), round((width - size) / 2.0)
        cropped = images[..., top : top + size, left : left + size]
        return cropped, (left, width - left - size, top, height - top - size)

    def _check_patch_multiple(self, images: Tensor) -> None:
        patch = self.model.encoder.patch_size
        if images.shape[-1] % patch or images.shape[-2] % patch:
            raise AdbenchError(
                f"anomalib.dinomaly: the (cropped) image size "
                f"{tuple(images.shape[-2:])} must be a multiple of the ViT patch "
                f"size {patch}; set crop_size (or data.image_size) accordingly"
            )

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """The method's reconstruction loss on the cropped, normalised images."""
        images, _ = self.crop(batch.image)
        self._check_patch_multiple(images)
        self.model.encoder.eval()
        loss = self.reconstruction_loss(self.normalize(images))
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    def forward(self, images: Tensor) -> AnomalyOutput:
        """Map: 1 - cosine(encoder, decoder) averaged over groups; score: anomalib's (paper)."""
        if self.model.training:
            raise AdbenchError(
                f"{type(self).__name__}.forward scores images and needs eval "
                "mode: call .eval() first"
            )
        cropped, padding = self.crop(images)
        self._check_patch_multiple(cropped)
        output = self.model(self.normalize(cropped))
        raw = output.anomaly_map.float()
        if any(padding):
            raw = F.pad(raw, padding, mode="replicate")
        maps = self.postprocess(raw, images.shape[-2:]).anomaly_map
        return AnomalyOutput(maps, output.pred_score.reshape(-1).float())

    def configure_optimizers(self) -> Any:
        """StableAdamW over the trainable parts with the warm-up cosine schedule (papers)."""
        optim = self.config.optim
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = StableAdamW(
            [{"params": trainable}],
            lr=optim.lr,
            betas=optim.betas,
            weight_decay=optim.weight_decay,
            amsgrad=True,
            eps=self.config.adam_eps,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(optim.warmup_steps, max(total - 1, 0))
        scheduler = WarmCosineScheduler(
            optimizer,
            base_value=optim.lr,
            final_value=self.config.final_lr,
            total_iters=total,
            warmup_iters=warmup,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
