"""DPDiff-AD configuration; the defaults are the `paper` preset.

Feng et al., "Dual Prototype-Conditioned Diffusion Model for Scalable Multi-Class Unsupervised
Anomaly Detection in Large Category Spaces", arXiv 2605.24402. Only the abstract is public: each
field says whether its value is stated there ("paper"), fixed by the project's specification of
the method ("spec", a design consistent with the abstract) or chosen here ("choice: why").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from adbench.backbones import BackboneConfig
from adbench.contract import (
    DataDefaults,
    MethodConfig,
    OptimConfig,
    ScoringConfig,
    TrainerDefaults,
)
from adbench.diffusion import ScheduleConfig
from adbench.errors import ConfigError

DINOV2_REG_VITB14 = "vit_base_patch14_reg4_dinov2.lvd142m"


def _check(ok: bool, field_name: str, value: object, rule: str) -> None:
    if not ok:
        raise ConfigError(f"dpdiff_ad: {field_name} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class FeatureConfig:
    """How backbone levels become one token grid F (B, N, C)."""

    # spec: the mean of the middle ViT blocks; "concat" stacks levels (CNN backbones)
    fusion: Literal["mean", "concat"] = "mean"
    # choice: the level (index into backbone.layers) whose grid is the token grid; other levels
    # are resized to it (area-averaged down, bilinear up)
    grid_level: int = 0
    # choice: "standardize" = per-channel mean/std of the training tokens (estimated with the
    # prototype initialisation), so the DDPM sees unit-variance data; "layernorm" = per-token
    # normalisation without statistics
    norm: Literal["standardize", "layernorm"] = "standardize"


@dataclass(frozen=True)
class LocalPrototypeConfig:
    """The local prototype bank P_L (fine-grained normal patterns)."""

    # spec: K_L = 1024, "scale with the number of classes"; choice: a fixed size that never grows
    # by itself, so memory and time stay flat as categories are added (raise it by configuration)
    num: int = 1024
    topk: int = 8  # spec: prototypes aggregated per token
    temperature: float = 0.07  # spec: tau_L of the softmax over the top-k cosine similarities
    # spec: "vq" learns P_L by gradient of L_loc; "ema" moves P_L by EMA k-means updates
    update: Literal["vq", "ema"] = "vq"
    momentum: float = 0.99  # spec: EMA k-means momentum; also the usage statistics' momentum
    reseed_every: int = 100  # choice: steps between dead-prototype checks
    # choice: a prototype is dead when its usage share falls below this fraction of 1 / K_L
    reseed_threshold: float = 0.01
    # spec: what a token's cross-attention sees locally: its aggregated prototype l_i
    # ("aggregate", one key) or its top-k prototypes ("topk", k keys)
    keys: Literal["aggregate", "topk"] = "aggregate"

    def __post_init__(self) -> None:
        _check(self.num >= 1, "local_prototypes.num", self.num, ">= 1")
        _check(
            1 <= self.topk <= self.num,
            "local_prototypes.topk",
            self.topk,
            f"in [1, local_prototypes.num = {self.num}]",
        )
        _check(self.temperature > 0, "local_prototypes.temperature", self.temperature, "> 0")
        _check(0 <= self.momentum < 1, "local_prototypes.momentum", self.momentum, "in [0, 1)")
        _check(self.reseed_every >= 1, "local_prototypes.reseed_every", self.reseed_every, ">= 1")
        _check(
            0 < self.reseed_threshold <= 1,
            "local_prototypes.reseed_threshold",
            self.reseed_threshold,
            "in (0, 1]",
        )


@dataclass(frozen=True)
class GlobalPrototypeConfig:
    """The global prototype bank P_G (holistic geometry), regularised by entropic OT."""

    num: int = 128  # spec: K_G
    temperature: float = 0.1  # spec: tau_G in the OT cross-entropy
    sinkhorn_eps: float = 0.05  # spec: entropic regularisation of Sinkhorn (cost 1 - cos)
    sinkhorn_iters: int = 1000  # choice: POT's default iteration cap (converges in ~10-50)
    # spec: "cross_entropy" = -sum Q log softmax(cos / tau_G); "sinkhorn_cost" = <Q, C>
    ot_loss: Literal["cross_entropy", "sinkhorn_cost"] = "cross_entropy"
    # choice: where the OT target Q comes from. Balanced OT over one batch alone ("batch") lets
    # no image put more than B / K_G of its target on one prototype (12.5 % at B = 16,
    # K_G = 128). "queue": balanced Sinkhorn over the batch plus a queue of recent descriptors
    # (SwAV, Caron et al. 2020), gathered over DDP ranks; "unbalanced": semi-relaxed OT over
    # the (gathered) batch, each image's mass fixed and the prototype marginal relaxed by a KL
    # penalty of weight unbalanced_reg_m (Chizat et al. 2018; POT's ot.unbalanced)
    ot_target: Literal["queue", "unbalanced", "batch"] = "queue"
    # choice: 16 descriptors per prototype (K_G = 128), so a batch drawn from the queue's
    # distribution over-fills no prototype by more than B / 2048
    queue_size: int = 2048
    # choice: KL weight on the prototype marginal of "unbalanced" (equal to sinkhorn_eps: the
    # column scaling is then the square root of the balanced one)
    unbalanced_reg_m: float = 0.05
    # choice: what L_OT trains besides the global prototypes. "denoiser": the cosines of L_OT
    # are taken after the denoiser's condition embedding W (the linear map through which both
    # prototype sets enter the cross-attention), cos(W g, W p), so L_OT shapes the geometry in
    # which the reconstruction sees the prototypes, and the features stay the frozen backbone's
    # (README: the adapter lowered image AUROC on the tiny preset). "adapter": a learned residual
    # feature adapter F_a = F + W F + b (W, b zero-initialised) between the frozen backbone and
    # everything else (local matching, denoiser input and target, scores), trained by L_OT
    # alone (the diffusion and local losses see it without gradient, so they cannot collapse
    # it), so the OT term shapes the features the reconstruction uses; "prototypes": L_OT
    # moves only the global prototypes (frozen backbone, no adapter)
    ot_acts_on: Literal["denoiser", "adapter", "prototypes"] = "denoiser"

    def __post_init__(self) -> None:
        _check(self.num >= 1, "global_prototypes.num", self.num, ">= 1")
        _check(self.queue_size >= 1, "global_prototypes.queue_size", self.queue_size, ">= 1")
        _check(
            self.unbalanced_reg_m > 0,
            "global_prototypes.unbalanced_reg_m",
            self.unbalanced_reg_m,
            "> 0",
        )
        _check(self.temperature > 0, "global_prototypes.temperature", self.temperature, "> 0")
        _check(self.sinkhorn_eps > 0, "global_prototypes.sinkhorn_eps", self.sinkhorn_eps, "> 0")
        _check(
            self.sinkhorn_iters >= 1,
            "global_prototypes.sinkhorn_iters",
            self.sinkhorn_iters,
            ">= 1",
        )


@dataclass(frozen=True)
class InitConfig:
    """K-means initialisation of both banks from the first training batches."""

    # choice: the sample has batches x batch size images (256 at batch 16)
    batches: int = 16
    max_tokens: int = 200_000  # choice: random subset of tokens k-means runs on (memory bound)
    kmeans_iters: int = 25  # choice: spherical k-means iterations (Lloyd)
    # choice: "stratified" draws the sample per category (at least one image of each, the rest
    # proportional to the categories' sizes), so every category seeds the banks (256 random
    # images of a 160-category set miss about 32 categories); the category of a training image
    # is read for this choice only. "loader": the first batches of the shuffled training loader
    # (label-free). Datasets without per-image categories fall back to "loader".
    sampling: Literal["stratified", "loader"] = "stratified"

    def __post_init__(self) -> None:
        _check(self.batches >= 1, "init.batches", self.batches, ">= 1")
        _check(self.max_tokens >= 1, "init.max_tokens", self.max_tokens, ">= 1")
        _check(self.kmeans_iters >= 0, "init.kmeans_iters", self.kmeans_iters, ">= 0")


@dataclass(frozen=True)
class DenoiserConfig:
    """The token transformer that denoises features."""

    width: int = 768  # spec: 512-768; choice 768, the width of the ViT-B features
    depth: int = 8  # spec
    heads: int = 12  # choice: 64 channels per head
    mlp_ratio: float = 4.0  # choice: transformer convention
    # spec: eps- or x0-prediction; choice: x0. On normal data the local condition l_i is an
    # excellent estimate of x0, and an x0-predictor learns to copy it, which is what turns an
    # anomalous token into a normal one (README: with the tiny preset the reconstruction-only
    # map reaches 0.76 image AUROC with x0 and 0.53 with eps after the same training)
    prediction: Literal["eps", "x0"] = "x0"
    ema_decay: float = 0.999  # spec: EMA of the denoiser, used at inference; choice of decay
    # choice: prototypes enter the denoiser without gradient, so only L_loc / L_OT shape them and
    # the denoiser cannot turn them into a channel for anything but normal patterns
    detach_conditions: bool = True
    # spec: the cross-attention sees both prototype sets. Ablations: ("local",) drops the
    # global prototypes (loss.ot must then be 0), ("global",) the local ones (loss.local and
    # inference.prototype_weight must then be 0, so the local bank shapes nothing)
    conditions: tuple[Literal["local", "global"], ...] = ("local", "global")

    def __post_init__(self) -> None:
        _check(
            len(self.conditions) >= 1 and len(set(self.conditions)) == len(self.conditions),
            "denoiser.conditions",
            self.conditions,
            "one or both of 'local' and 'global', each once",
        )
        _check(
            self.width % self.heads == 0,
            "denoiser.width",
            self.width,
            f"divisible by denoiser.heads = {self.heads}",
        )
        _check(self.depth >= 1, "denoiser.depth", self.depth, ">= 1")
        _check(0 <= self.ema_decay < 1, "denoiser.ema_decay", self.ema_decay, "in [0, 1)")


@dataclass(frozen=True)
class InferenceConfig:
    """Partial-noise reconstruction and the anomaly map."""

    t_start: int = 200  # spec: t_s, noise level the test features are taken to (of T = 1000)
    steps: int = 5  # spec: DDIM steps S from t_s to clean
    sampler: Literal["ddim", "one_step"] = "ddim"  # spec: DDIM, or one-step x0 prediction
    # spec: weight of the nearest-local-prototype distance fused with 1 - cos(F, F_hat) (0.5/0.5)
    prototype_weight: float = 0.5
    seed: int = 0  # choice: fixed noise at inference, so scores are deterministic

    def __post_init__(self) -> None:
        _check(self.t_start >= 0, "inference.t_start", self.t_start, ">= 0")
        _check(self.steps >= 1, "inference.steps", self.steps, ">= 1")
        _check(
            0 <= self.prototype_weight <= 1,
            "inference.prototype_weight",
            self.prototype_weight,
            "in [0, 1]",
        )


@dataclass(frozen=True)
class LossWeights:
    """L = L_diff + local * L_loc + ot * L_OT."""

    local: float = 1.0  # spec
    ot: float = 0.1  # spec


@dataclass(frozen=True)
class DPDiffADConfig(MethodConfig):
    """Every DPDiff-AD hyper-parameter; the defaults are the `paper` preset."""

    # spec: DINOv2-with-registers ViT-B/14 at 392 px (28 x 28 tokens, C = 768); choice: blocks
    # 2-9 of 12 as "the middle blocks"
    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            name=DINOV2_REG_VITB14,
            layers=(2, 3, 4, 5, 6, 7, 8, 9),
            weights="pretrained",
            timm_kwargs={"img_size": 392},
        )
    )
    features: FeatureConfig = field(default_factory=FeatureConfig)
    local_prototypes: LocalPrototypeConfig = field(default_factory=LocalPrototypeConfig)
    global_prototypes: GlobalPrototypeConfig = field(default_factory=GlobalPrototypeConfig)
    init: InitConfig = field(default_factory=InitConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    # spec: T = 1000, linear betas 1e-4 .. 0.02
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    prototype_lr: float = 1e-3  # spec: learning rate of both prototype banks
    data: DataDefaults = field(default_factory=lambda: DataDefaults(image_size=392, batch_size=16))
    # spec: AdamW, lr 1e-4 for the denoiser, cosine schedule; choice: PyTorch's AdamW weight
    # decay (0.01, denoiser only) and 500 warm-up steps for the adaLN transformer
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            name="adamw", lr=1e-4, weight_decay=0.01, schedule="cosine", warmup_steps=500
        )
    )
    # spec: Gaussian sigma = 4, image score = mean of the top 1 % of pixels
    scoring: ScoringConfig = field(
        default_factory=lambda: ScoringConfig(sigma=4.0, pooling="topk_mean", topk_fraction=0.01)
    )
    # choice: 20k steps (the budget feature-reconstruction methods use for unified MVTec
    # training), bf16 autocast and gradient clipping for the transformer
    trainer: TrainerDefaults = field(
        default_factory=lambda: TrainerDefaults(
            max_steps=20_000, precision="bf16-mixed", gradient_clip_val=1.0
        )
    )

    def __post_init__(self) -> None:
        steps = self.schedule.num_train_timesteps
        _check(
            self.inference.t_start < steps,
            "inference.t_start",
            self.inference.t_start,
            f"below schedule.num_train_timesteps = {steps}",
        )
        _check(self.prototype_lr > 0, "prototype_lr", self.prototype_lr, "> 0")
        # choice: with update "ema" the bank has no gradient, so L_loc would train nothing
        if self.local_prototypes.update == "ema":
            _check(
                self.loss.local == 0,
                "loss.local",
                self.loss.local,
                "0 with local_prototypes.update = 'ema' (L_loc has no gradient path)",
            )
        if self.global_prototypes.ot_acts_on == "adapter":
            _check(
                self.loss.ot != 0,
                "loss.ot",
                self.loss.ot,
                "non-zero with global_prototypes.ot_acts_on = 'adapter' (L_OT alone trains "
                "the adapter)",
            )
        # ablations that drop a prototype set drop what only that set serves, never silently
        conditions = self.denoiser.conditions
        if "global" not in conditions:
            _check(
                self.loss.ot == 0,
                "loss.ot",
                self.loss.ot,
                "0 without 'global' in denoiser.conditions (L_OT would shape nothing)",
            )
        if "local" not in conditions:
            _check(
                self.loss.local == 0,
                "loss.local",
                self.loss.local,
                "0 without 'local' in denoiser.conditions (the ablation has no local bank)",
            )
            _check(
                self.inference.prototype_weight == 0,
                "inference.prototype_weight",
                self.inference.prototype_weight,
                "0 without 'local' in denoiser.conditions (the ablation has no local bank)",
            )
