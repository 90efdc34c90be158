"""GLAD: global and local adaptive diffusion reconstruction (Yao et al., ECCV 2024)."""

from __future__ import annotations

from pathlib import Path

from adbench.methods.glad.config import GLADConfig
from adbench.methods.glad.model import GLADModel
from adbench.methods.glad.module import GLAD
from adbench.registry import MethodSpec, presets_from_folder

SPEC = MethodSpec(
    name="glad",
    module=GLAD,
    config=GLADConfig,
    presets=presets_from_folder(Path(__file__).parent / "presets"),
    paper="Yao et al., GLAD: Towards Better Reconstruction with Global and Local Adaptive "
    "Diffusion Models for Unsupervised Anomaly Detection, ECCV 2024, arXiv:2406.07487",
)

__all__ = ["GLAD", "SPEC", "GLADConfig", "GLADModel"]
