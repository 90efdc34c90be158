"""GLAD's two networks: the frozen autoencoder (codec) and the noise predictor (denoiser).

Paper preset: Stable Diffusion v1.4's VAE and text-conditioned UNet (diffusers classes and weight
format). Tiny preset: the frozen pretrained feature extractor as the encoder (`FeatureCodec`) and
a small unconditional diffusers `UNet2DModel`.

In mechanics mode (``random_weights=True``) the Stable Diffusion parts are built from the
published v1.4 configurations shipped in ``sd_v1_4/`` (UNet 859.5 M, VAE 83.7 M and CLIP text
encoder 123.1 M parameters) with random weights, and nothing is loaded.

The fixed prompt and the empty prompt are encoded once at build time. With per-category test
prompts (``denoiser.test_prompt: class_name``) the text encoder is kept (on the CPU, outside the
state dict) to encode each category's prompt the first time it is seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adbench.backbones import FeatureExtractor, levels_on_grid, load_diffusers_component
from adbench.errors import InvalidInputError, MissingDependencyError
from adbench.methods.glad.categories import base_name
from adbench.methods.glad.config import AutoencoderConfig, DenoiserConfig


class LatentCodec(nn.Module):
    """Images in [0, 1] <-> diffusion latents: ``z = s * E(2x - 1)``, ``x = (D(z / s) + 1) / 2``.

    ``vae=None`` is pixel space: E is the identity or, with ``patch_size`` p > 1, the lossless
    space-to-depth reshape (3, H, W) -> (3 p^2, H / p, W / p), and D its inverse.
    """

    def __init__(
        self, vae: nn.Module | None, scaling_factor: float, size: int | None, patch_size: int = 1
    ) -> None:
        super().__init__()
        self.vae = vae
        self.scaling_factor = scaling_factor
        self.size = size
        self.patch_size = patch_size

    def encode(
        self, images: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, C_z, h_z, w_z) latents.

        Args:
            images: (B, 3, H, W) in [0, 1].
            sample: draw from the VAE posterior (training, official) instead of its mean.
            generator: source of the posterior draw when ``sample``; None = torch's global
                generator.
        """
        x = images * 2 - 1
        if self.size is not None and x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=True)
        if self.vae is None:
            return F.pixel_unshuffle(x, self.patch_size) * self.scaling_factor
        posterior = self.vae.encode(x.to(self.vae.dtype)).latent_dist
        z = posterior.sample(generator) if sample else posterior.mode()
        return z.float() * self.scaling_factor

    def decode_raw(self, latents: Tensor) -> Tensor:
        """(B, C_z, h_z, w_z) -> the decoder's raw output (B, 3, H', W').

        About [-1, 1], unclamped, at the codec's working size.
        """
        z = latents / self.scaling_factor
        if self.vae is None:
            return F.pixel_shuffle(z, self.patch_size)
        return self.vae.decode(z.to(self.vae.dtype)).sample.float()

    def decode(self, latents: Tensor) -> Tensor:
        """(B, C_z, h_z, w_z) -> (B, 3, H', W') in [0, 1] at the codec's working size."""
        return ((self.decode_raw(latents) + 1) / 2).clamp(0, 1)


class FeatureCodec(nn.Module):
    """Images in [0, 1] -> a frozen pretrained extractor's feature levels as the diffusion latent.

    Every level is resized to the grid of level ``grid_level`` (area-average down, bilinear up:
    `adbench.backbones.levels_on_grid`), standardised per position over its channels (zero mean,
    unit variance, the unit-variance role SD's 0.18215 plays for its latents) and the levels are
    stacked: ``z = s * concat_l LN(resize(f_l))``.
    There is no decoder: in this space the input's and the reconstruction's features are the
    latents themselves, split back into levels by `levels`.

    Args:
        extractor: the frozen multi-level feature extractor (GLAD's ``features``).
        grid_level: index of the level whose grid the latent has.
        scaling_factor: s.
    """

    def __init__(self, extractor: FeatureExtractor, grid_level: int, scaling_factor: float) -> None:
        super().__init__()
        self.extractor = extractor
        self.grid_level = grid_level
        self.scaling_factor = scaling_factor

    def encode(
        self, images: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, sum C_l, h, w), the grid of level ``grid_level``.

        ``sample`` and ``generator`` are unused: the encoder is deterministic.
        """
        stacked = []
        for f in levels_on_grid(self.extractor(images), self.grid_level):
            channels_last = f.transpose(1, -1)  # (B, w, h, C): normalise over C per position
            stacked.append(F.layer_norm(channels_last, (f.shape[1],)).transpose(1, -1))
        return torch.cat(stacked, dim=1) * self.scaling_factor

    def levels(self, latents: Tensor) -> list[Tensor]:
        """(B, sum C_l, h, w) -> per level (B, C_l, h, w) (the scaling undone)."""
        return list((latents / self.scaling_factor).split(self.extractor.channels, dim=1))


class Denoiser(nn.Module):
    """eps_theta(x_t, t), optionally text-conditioned with classifier-free guidance.

    Args:
        unet: a diffusers `UNet2DModel` (``prompt=None``) or `UNet2DConditionModel`.
        prompt: (1, L, D) text embedding of the fixed (training) prompt, or None for an
            unconditional UNet.
        empty_prompt: (1, L, D) embedding of the empty prompt (the unconditional branch).
        guidance_scale: ``eps_u + g (eps_c - eps_u)`` at inference; 1 = the prompt branch only.
        class_prompts: per-category test prompts (``denoiser.test_prompt: class_name``), or None.
    """

    def __init__(
        self,
        unet: nn.Module,
        prompt: Tensor | None = None,
        empty_prompt: Tensor | None = None,
        guidance_scale: float = 1.0,
        class_prompts: ClassPrompts | None = None,
    ) -> None:
        super().__init__()
        if (prompt is None) != (empty_prompt is None):
            raise InvalidInputError(
                "give both prompt and empty_prompt embeddings, or neither; got "
                f"only {'prompt' if prompt is not None else 'empty_prompt'}"
            )
        self.unet = unet
        self.guidance_scale = guidance_scale
        self.class_prompts = class_prompts  # a plain object: its text encoder stays out of the
        # state dict and on the CPU
        self.register_buffer("prompt", prompt)
        self.register_buffer("empty_prompt", empty_prompt)

    def forward(
        self, x_t: Tensor, t: Tensor, guided: bool = False, context: Tensor | None = None
    ) -> Tensor:
        """Predict the noise (B, C, h, w) in ``x_t`` at timesteps t (B,).

        Args:
            x_t: noisy latents (B, C, h, w).
            t: timesteps (B,).
            guided: apply classifier-free guidance (inference); training uses the prompt only.
            context: (B, L, D) conditional embedding per image (its category's prompt) in place
                of the fixed prompt; None = the fixed prompt for every image.
        """
        if self.prompt is None:
            return self.unet(x_t, t).sample
        B = x_t.shape[0]
        cond = self.prompt.expand(B, -1, -1) if context is None else context.to(self.prompt)
        if not guided or self.guidance_scale == 1.0:
            return self.unet(x_t, t, encoder_hidden_states=cond).sample
        context = torch.cat([self.empty_prompt.expand(B, -1, -1), cond])
        eps_uncond, eps_cond = self.unet(
            torch.cat([x_t, x_t]), torch.cat([t, t]), encoder_hidden_states=context
        ).sample.chunk(2)
        return guide(eps_uncond, eps_cond, self.guidance_scale)


class PromptEncoder:
    """A frozen CLIP text encoder with its tokenizer: prompts -> (N, L, D) last hidden states.

    No attention mask is passed (as in Stable Diffusion v1.4 and the official code), so the
    padding tokens take part in the embedding.

    Args:
        encoder: a transformers `CLIPTextModel`.
        tokenize: N prompts -> (N, L) token ids.
    """

    def __init__(self, encoder: nn.Module, tokenize: Callable[[list[str]], Tensor]) -> None:
        self.encoder = encoder.eval().requires_grad_(False)
        self.tokenize = tokenize

    def __call__(self, prompts: list[str]) -> Tensor:
        """(N, L, D) embeddings of ``prompts``, on the encoder's device."""
        with torch.no_grad():
            return self.encoder(self.tokenize(prompts))[0]


class ClassPrompts:
    """Per-category prompt embeddings: each category's templated name, encoded once and cached.

    Args:
        encoder: the text encoder.
        template: the prompt with the field ``{category}``, e.g. "a photo of sks{category}".
    """

    def __init__(self, encoder: PromptEncoder, template: str) -> None:
        self.encoder = encoder
        self.template = template
        self.cache: dict[str, Tensor] = {}  # category name -> (L, D)

    def prompt(self, category: str) -> str:
        """The prompt of a category ('mvtec/metal_nut' -> 'a photo of sksmetal_nut')."""
        return self.template.format(category=base_name(category))

    def __call__(self, categories: Sequence[str]) -> Tensor:
        """(B, L, D): the embedding of each image's category prompt.

        Names not yet cached are encoded in one batch.
        """
        new = [name for name in dict.fromkeys(categories) if name not in self.cache]
        if new:
            self.cache.update(zip(new, self.encoder([self.prompt(n) for n in new]), strict=True))
        return torch.stack([self.cache[name] for name in categories])


def guide(eps_uncond: Tensor, eps_cond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance ``eps_u + scale (eps_c - eps_u)`` (Ho & Salimans, 2022)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


SD_CONFIGS = Path(__file__).with_name("sd_v1_4")  # unet.json, vae.json, text_encoder.json


def sd_config(part: str) -> dict:
    """The published Stable Diffusion v1.4 configuration of ``part``.

    ``part`` is "unet", "vae" or "text_encoder".
    """
    return json.loads((SD_CONFIGS / f"{part}.json").read_text())


def build_codec(
    config: AutoencoderConfig,
    random_weights: bool = False,
    extractor: FeatureExtractor | None = None,
) -> LatentCodec | FeatureCodec:
    """The frozen codec named by ``config``.

    The SD VAE for ``kind="sd_vae"``: loaded, or built from its configuration with random
    weights in mechanics mode; ``extractor`` itself for ``kind="features"``.
    """
    if config.kind == "features":
        if extractor is None:
            raise InvalidInputError(
                "autoencoder.kind 'features' encodes with the feature "
                "extractor; pass it as extractor (got None)"
            )
        return FeatureCodec(extractor, config.grid_level, config.scaling_factor)
    vae = None
    if config.kind == "sd_vae":
        from diffusers import AutoencoderKL

        vae = (
            AutoencoderKL.from_config(sd_config("vae"))
            if random_weights
            else load_diffusers_component(
                AutoencoderKL, config.weights, "vae", setting="autoencoder.weights"
            )
        )
    return LatentCodec(vae, config.scaling_factor, config.size, config.patch_size)


def build_denoiser(
    config: DenoiserConfig, image_size: int, channels: int, random_weights: bool = False
) -> Denoiser:
    """The denoiser named by ``config``.

    Args:
        config: the denoiser settings (``kind``, weights, prompts, UNet shape).
        image_size: side of the diffusion space (latent or pixel), for `UNet2DModel`.
        channels: channels of the diffusion space.
        random_weights: mechanics mode: the SD UNet and text encoder from their configurations.
    """
    if config.kind == "unet2d":
        from diffusers import UNet2DModel

        levels = len(config.block_out_channels)
        down = ["DownBlock2D"] * levels
        up = ["UpBlock2D"] * levels
        if config.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        unet = UNet2DModel(
            sample_size=image_size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            norm_num_groups=config.norm_num_groups,
        )
        return Denoiser(unet)
    from diffusers import UNet2DConditionModel

    if random_weights:
        unet = UNet2DConditionModel.from_config(sd_config("unet"))
    else:
        unet = load_diffusers_component(
            UNet2DConditionModel, config.weights, "unet", setting="denoiser.weights"
        )
    encoder = build_prompt_encoder(config.weights, random_weights)
    prompt, empty = encoder([config.prompt, ""]).split(1)
    class_prompts = (
        ClassPrompts(encoder, config.class_prompt) if config.test_prompt == "class_name" else None
    )
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return Denoiser(unet, prompt, empty, config.guidance_scale, class_prompts)


def _import_clip() -> tuple[type, type, type]:
    try:
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    except ImportError as err:
        raise MissingDependencyError(
            "GLAD's sd_unet denoiser encodes its prompt with the Stable Diffusion text encoder, "
            "which needs transformers: pip install 'adbench-uad[glad]'"
        ) from err
    return CLIPTextConfig, CLIPTextModel, CLIPTokenizer


def byte_tokens(prompts: list[str], bos: int, eos: int, length: int) -> Tensor:
    """Mechanics-mode token ids (N, length).

    Each prompt's UTF-8 bytes between the start and end tokens, padded with the end token (as
    CLIP pads).
    """
    rows = []
    for prompt in prompts:
        ids = [bos, *prompt.encode()[: length - 2], eos]
        rows.append(ids + [eos] * (length - len(ids)))
    return torch.tensor(rows)


def _clip_tokens(tokenizer: object, prompts: list[str]) -> Tensor:
    """CLIP token ids (N, 77), padded to the tokenizer's maximum length and truncated to it."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def build_prompt_encoder(weights: str, random_weights: bool = False) -> PromptEncoder:
    """The SD folder's frozen CLIP text encoder and tokenizer (``weights``: folder or hub id).

    In mechanics mode a randomly initialised SD v1.4 text encoder (from ``sd_v1_4/``) with
    `byte_tokens` (the tokenizer's vocabulary is not shipped): the shapes and the cost are real,
    the embeddings mean nothing.
    """
    clip_config, clip_model, clip_tokenizer = _import_clip()
    if random_weights:
        config = clip_config(**sd_config("text_encoder"))
        return PromptEncoder(
            clip_model(config),
            partial(
                byte_tokens,
                bos=config.bos_token_id,
                eos=config.eos_token_id,
                length=config.max_position_embeddings,
            ),
        )
    tokenizer = load_diffusers_component(
        clip_tokenizer, weights, "tokenizer", setting="denoiser.weights"
    )
    encoder = load_diffusers_component(
        clip_model, weights, "text_encoder", setting="denoiser.weights"
    )
    return PromptEncoder(encoder, partial(_clip_tokens, tokenizer))
