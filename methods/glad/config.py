"""GLAD configuration; defaults are the paper's setting (Yao et al., ECCV 2024, arXiv:2406.07487).

Each field says where its default comes from: the paper ("paper"), the authors' public code
("official", for details the paper leaves to the code; MVTec AD test settings where they differ
per dataset) or "choice" with the reason.
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
from adbench.synthesis import SynthesisConfig

SD_V1_4 = "CompVis/stable-diffusion-v1-4"


@dataclass(frozen=True)
class AutoencoderConfig:
    """The frozen autoencoder E/D between images and the diffusion space."""

    # paper: SD v1.4 VAE; identity = pixel space; features = the frozen pretrained `features`
    # extractor as the encoder (no decoder: ADS and scoring compare latents directly; choice for
    # CPU presets, README)
    kind: Literal["sd_vae", "identity", "features"] = "sd_vae"
    weights: str = SD_V1_4  # sd_vae: diffusers folder or hub repo id holding vae/
    scaling_factor: float = 0.18215  # SD v1.4: latent = 0.18215 E(x); identity: (2x - 1) times it
    size: int | None = 512  # official: 256 px inputs are upsampled to 512 for the VAE; None = keep
    patch_size: int = 1  # identity only: lossless space-to-depth by p (3p^2 channels at 1/p size)
    grid_level: int = 0  # features only: every level is resized to this level's grid and the
    # levels are stacked along the channels

    def __post_init__(self) -> None:
        if self.scaling_factor <= 0:
            raise ConfigError(f"autoencoder.scaling_factor must be > 0, got {self.scaling_factor}")
        if self.patch_size < 1 or (self.kind != "identity" and self.patch_size != 1):
            raise ConfigError(
                f"autoencoder.patch_size must be >= 1, and 1 unless kind is "
                f"'identity' (the encoder sets its own latent size), got "
                f"{self.patch_size}"
            )


@dataclass(frozen=True)
class DenoiserConfig:
    """The noise predictor eps_theta (fully fine-tuned in the paper)."""

    kind: Literal["sd_unet", "unet2d"] = "sd_unet"  # paper: SD v1.4 UNet; unet2d: small, scratch
    weights: str = SD_V1_4  # sd_unet: diffusers folder or hub id (unet/, text_encoder/, tokenizer/)
    prompt: str = "a photo of sks"  # official: the text condition of training (every image)
    # official multi-class test script: each test image is conditioned on its category's
    # prompt, class_prompt with the category name (no space: "a photo of sksbottle");
    # "fixed": the training prompt at test too (the official single-class script). Images
    # without a category name (scored outside a Trainer) get the fixed prompt
    test_prompt: Literal["class_name", "fixed"] = "class_name"
    class_prompt: str = "a photo of sks{category}"  # official: "a photo of sks" + class name
    guidance_scale: float = 9.0  # official test code: classifier-free guidance 9; 1 = one pass
    # official training script (--gradient_checkpointing): recompute the SD UNet's activations
    # in the backward pass (sd_unet only; memory estimate in the README)
    gradient_checkpointing: bool = True
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # unet2d only: widths per resolution
    layers_per_block: int = 1  # unet2d only
    attention: bool = True  # unet2d only: self-attention at the lowest resolution
    norm_num_groups: int = 8  # unet2d only: GroupNorm groups (divides every width)
    prediction: Literal["eps", "x0"] = "eps"  # paper: the UNet predicts the noise; x0: it
    # predicts the clean latent and eps_hat is derived from it (choice for small UNets trained
    # from scratch, whose eps errors are amplified by sqrt((1 - abar) / abar) = 2.7 at t = 650)

    def __post_init__(self) -> None:
        if self.kind == "unet2d" and self.guidance_scale != 1.0:
            raise ConfigError(
                f"denoiser.guidance_scale must be 1.0 for kind 'unet2d' (an unconditional UNet "
                f"has no prompt to guide with), got {self.guidance_scale}"
            )
        if self.kind == "unet2d" and self.test_prompt != "fixed":
            raise ConfigError(
                f"denoiser.test_prompt must be 'fixed' for kind 'unet2d' (an unconditional UNet "
                f"reads no prompt), got {self.test_prompt!r}"
            )
        try:
            self.class_prompt.format(category="")
        except (KeyError, IndexError, ValueError):
            valid = False
        else:
            valid = "{category}" in self.class_prompt
        if not valid:
            raise ConfigError(
                f"denoiser.class_prompt must be a template with the field "
                f"{{category}} and no other, got {self.class_prompt!r}"
            )
        if self.guidance_scale < 1.0:
            raise ConfigError(f"denoiser.guidance_scale must be >= 1, got {self.guidance_scale}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(
                f"denoiser.norm_num_groups={self.norm_num_groups} must divide every "
                f"block_out_channels {self.block_out_channels}"
            )


def _glad_synthesis() -> SynthesisConfig:
    # official dataset code (dataset/dataset_multiclass.py at 9de702b, 2024-06-25): p = 0.5
    # normal (line 241), Perlin scales 2^k with k in {0..5} (204-205), rotation (207),
    # threshold 0.3 (203), beta ~ U(0, 0.8) (231), 3 random operations of DRAEM's photometric
    # list on the fill source (192-196; imgaug there, torchvision here); the Otsu foreground only
    # for the object categories of the official lists, every other category whole-image (mode 3,
    # lines 211-223; methods/glad/categories.py). source / dtd_root: the texture source, read
    # only with training.fill_source "texture"
    return SynthesisConfig(
        probability=0.5,
        perlin_scales=(0, 5),
        threshold=0.3,
        rotate=True,
        beta=(0.0, 0.8),
        foreground=False,
        augment=3,
    )


@dataclass(frozen=True)
class TrainingConfig:
    """Anomaly-oriented training (ATP)."""

    synthesis: SynthesisConfig = field(default_factory=_glad_synthesis)  # official recipe
    # official (dataset_multiclass.py at 9de702b, lines 271-303): every anomaly is filled from
    # the image's own augmented copy, as is ("own") or, with probability self_source_share, with
    # its 8 x 8 cells shuffled; the texture branch of that code loads a DTD image and discards it
    # (line 279). "texture": the non-shuffled share is filled from synthesis.source instead (DTD
    # with synthesis.dtd_root, as the code does since a0365d2, 2025-03-15; else scikit-image's
    # CC0 textures)
    fill_source: Literal["own", "texture"] = "own"
    self_source_share: float = 0.5  # official: the share filled with the shuffled own cells
    target: Literal["normal_x0", "flipped_correction"] = "normal_x0"  # official until 2025
    # (main_multi.py at 8317418, line 187): eps* whose x0-estimate is the normal latent;
    # flipped_correction: the sign change of 7fef283 (2025-05-13, main_multi.py line 187)

    def __post_init__(self) -> None:
        if not 0.0 <= self.self_source_share <= 1.0:
            raise ConfigError(
                f"training.self_source_share must be in [0, 1], got {self.self_source_share}"
            )
        if self.fill_source == "own" and self.synthesis.dtd_root is not None:
            raise ConfigError(
                f"training.synthesis.dtd_root is set ({self.synthesis.dtd_root}) but "
                "training.fill_source is 'own', which reads no texture; set "
                "training.fill_source: texture to fill anomalies from DTD"
            )


@dataclass(frozen=True)
class SamplerConfig:
    """Inference: DDIM from T_max with the adaptive denoising step (ADS) and fusion (SAFF)."""

    t_max: int = 650  # official, MVTec AD (VisA/MPDD: 500): noise level the input is taken to
    # official (utilize/utilize.py at 9de702b, lines 77-80): the input is noised at index
    # t_max - noise_offset, offset 0 on MVTec AD and MPDD (line 78), 1 on VisA (line 80)
    noise_offset: int = 0
    steps: int = 25  # official: DDIM steps from t_max down to clean
    # official: diffusers' "leading" DDIM spacing with steps_offset 1 over the first t_max
    # training steps (utilize.py line 84, ddim_scheduling.py lines 331-336): the steps are 625,
    # 599, ..., 1 (t_max 650, 25 steps), below the noising step, so the first ADS check already
    # compares two different x0. "linspace": steps from the noising step to 0 (the first check
    # has x0_in = x0_gen)
    spacing: Literal["leading", "linspace"] = "leading"
    tau: float = 0.45  # official, MVTec AD (MPDD 0.35, VisA 0.15): stop when s > tau
    min_step: int = 350  # official, MVTec AD (VisA 250): every sample stops once t < min_step
    # (>= 1, so that every sample has stopped by the last step, t = 0)
    score_topk: int = 10  # official: s = mean of the 10 largest values of A
    feature_level: int = -1  # official: the last feature level drives ADS
    feature_size: int | None = None  # official: ADS features at the decoded size; None = that
    # official: the ADS features are taken of the raw decodes in [-1, 1] (unclamped, without
    # the feature extractor's normalisation), which tau is calibrated for; "normalised": the
    # clamped [0, 1] decodes with the extractor's own normalisation (as the scoring does)
    ads_input: Literal["raw", "normalised"] = "raw"
    seed: int = 0  # choice: the noise eps comes from a generator seeded per call (deterministic)
    # choice: the ADS check decodes (and takes the features of) at most this many latents at a
    # time, and the final reconstruction is decoded in the same chunks (memory bound:
    # GLADModel.decode)
    decode_chunk: int = 8

    @property
    def noise_step(self) -> int:
        """The timestep index the input is noised to: t_max - noise_offset."""
        return self.t_max - self.noise_offset

    def __post_init__(self) -> None:
        if self.steps < 1 or self.score_topk < 1 or self.min_step < 1 or self.decode_chunk < 1:
            raise ConfigError(
                f"sampler.steps, sampler.score_topk, sampler.min_step and sampler.decode_chunk "
                f"must be >= 1, got {self.steps}, {self.score_topk}, {self.min_step} and "
                f"{self.decode_chunk}"
            )
        if not 0 <= self.noise_offset <= self.t_max:
            raise ConfigError(
                f"sampler.noise_offset must be in [0, t_max = {self.t_max}], got "
                f"{self.noise_offset}"
            )
        if self.steps == 1 and self.spacing == "leading":
            raise ConfigError(
                f"sampler.steps=1 with sampler.spacing 'leading' runs one DDIM step at t = 1 on "
                f"a latent noised at {self.noise_step}; use sampler.steps >= 2 or "
                "sampler.spacing 'linspace'"
            )


@dataclass(frozen=True)
class GLADScoringConfig(ScoringConfig):
    """Map smoothing and pooling (base fields) plus GLAD's input-vs-reconstruction discrepancy."""

    sigma: float = 6.0  # official: Gaussian sigma 6 at 256 px
    pooling: Literal["max", "topk_mean"] = "topk_mean"  # official: mean of the top 250 pixels
    topk_fraction: float = 250 / (256 * 256)  # official: 250 of 256 x 256 pixels, as a fraction
    feature_size: int | None = 256  # official: input and reconstruction compared at 256 px
    bidirectional: bool = False  # official: both NN directions only for transistor/pcb1/pcb4
    # official: None, the nearest neighbour among all positions; r: among the positions within r
    # feature cells (0 = the same position; choice for CPU presets, README); a list gives each
    # level of features.layers its own (null = all positions), finest first
    search_radius: int | tuple[int | None, ...] | None = None
    # choice: the map is (1 - w) x the map of search_radius + w x the map of the search over all
    # positions (0 = search_radius alone; no effect when search_radius is null)
    global_weight: float = 0.0
    # choice (tiny preset, README): a category whose training latents leave at least this share
    # of their variance at a fixed position (a stationary texture; methods/glad/stationarity.py)
    # is scored with stationary_search_radius instead of search_radius; null = off
    stationary_threshold: float | None = None
    stationary_search_radius: int | tuple[int | None, ...] | None = None  # null = all positions
    pixel_weight: float = 0.0  # official v: 0 on MVTec AD and MPDD, 2 on VisA
    foreground: bool = False  # official: Otsu object mask for object classes; off = whole image
    # official: per-category test settings of the multi-class script (object mask and both NN
    # directions for the categories its lists name; methods/glad/categories.py); "config": the
    # two settings above for every category
    per_category: Literal["official", "config"] = "official"

    def __post_init__(self) -> None:
        for name in ("search_radius", "stationary_search_radius"):
            value = getattr(self, name)
            radii = value if isinstance(value, tuple) else (value,)
            if not radii or any(r is not None and r < 0 for r in radii):
                raise ConfigError(
                    f"scoring.{name} must be null (all positions), >= 0, or a "
                    f"list of those per level, got {value}"
                )
        if self.stationary_threshold is not None and not 0.0 <= self.stationary_threshold <= 1.0:
            raise ConfigError(
                f"scoring.stationary_threshold must be null (off) or in [0, 1] (a "
                f"share of variance), got {self.stationary_threshold}"
            )
        if not 0.0 <= self.global_weight <= 1.0:
            raise ConfigError(f"scoring.global_weight must be in [0, 1], got {self.global_weight}")


@dataclass(frozen=True)
class GLADConfig(MethodConfig):
    """Everything that defines a GLAD model; defaults are the paper's MVTec AD setting."""

    data: DataDefaults = field(default_factory=lambda: DataDefaults(image_size=256, batch_size=32))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            name="adamw", lr=5e-6, weight_decay=1e-2, schedule="constant"
        )
    )  # paper/official
    scoring: GLADScoringConfig = field(default_factory=GLADScoringConfig)
    trainer: TrainerDefaults = field(
        default_factory=lambda: TrainerDefaults(
            max_steps=20_000, precision="16-mixed", gradient_clip_val=1.0
        )
    )  # paper: 20k steps, AMP
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    schedule: ScheduleConfig = field(
        default_factory=lambda: ScheduleConfig(
            num_train_timesteps=1000,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
        )
    )  # paper: SD v1.4's training schedule
    features: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            name="vit_base_patch8_224.dino",
            layers=(2, 5, 8, 11),
            weights="pretrained",
            timm_kwargs={"dynamic_img_size": True},
        )
    )  # paper: DINO ViT-B/8, blocks 3, 6, 9, 12
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        if self.denoiser.kind == "sd_unet" and self.autoencoder.kind != "sd_vae":
            raise ConfigError(
                f"denoiser.kind 'sd_unet' works in Stable Diffusion's 4-channel latent space and "
                f"needs autoencoder.kind 'sd_vae', got {self.autoencoder.kind!r}; use "
                "denoiser.kind 'unet2d' for pixel space"
            )
        if self.autoencoder.kind == "features":
            if self.scoring.pixel_weight:
                raise ConfigError(
                    f"scoring.pixel_weight must be 0 with autoencoder.kind 'features' (there is no "
                    f"decoded image to take the pixel term of), got {self.scoring.pixel_weight}"
                )
            if self.autoencoder.size is not None:
                raise ConfigError(
                    f"autoencoder.size must be null with autoencoder.kind "
                    f"'features' (the extractor reads the input size), got "
                    f"{self.autoencoder.size}"
                )
            if self.sampler.feature_size is not None or self.sampler.ads_input != "raw":
                raise ConfigError(
                    f"sampler.feature_size and sampler.ads_input do not apply with "
                    f"autoencoder.kind 'features' (ADS compares the latents' own level "
                    f"sampler.feature_level, nothing is decoded); leave them unset, got "
                    f"{self.sampler.feature_size} and {self.sampler.ads_input!r}"
                )
        levels = len(self.features.layers)
        for name in ("search_radius", "stationary_search_radius"):
            radius = getattr(self.scoring, name)
            if isinstance(radius, tuple) and len(radius) != levels:
                raise ConfigError(
                    f"scoring.{name} lists {len(radius)} radii for the {levels} levels of "
                    f"features.layers {list(self.features.layers)}"
                )
        if self.autoencoder.kind == "features":
            for name, level in (
                ("autoencoder.grid_level", self.autoencoder.grid_level),
                ("sampler.feature_level", self.sampler.feature_level),
            ):
                if not -levels <= level < levels:
                    raise ConfigError(
                        f"{name} {level} is not a level of features.layers "
                        f"{list(self.features.layers)}"
                    )
        T = self.schedule.num_train_timesteps
        if not 0 <= self.sampler.t_max < T:
            raise ConfigError(f"sampler.t_max must be in [0, {T}), got {self.sampler.t_max}")
        if self.sampler.steps > self.sampler.t_max + 1:
            raise ConfigError(
                f"sampler.steps ({self.sampler.steps}) cannot exceed t_max + 1 "
                f"({self.sampler.t_max + 1})"
            )
