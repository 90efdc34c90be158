"""Reverse distillation (Deng & Li, CVPR 2022, arXiv:2201.10703) on MDD-Net's RD building blocks."""

from __future__ import annotations

from pathlib import Path

from adbench.registry import MethodSpec, presets_from_folder

from .config import RDConfig
from .model import RDModel
from .module import RD

SPEC = MethodSpec(
    name="rd",
    module=RD,
    config=RDConfig,
    presets=presets_from_folder(Path(__file__).parent / "presets"),
    paper="Deng & Li, Anomaly Detection via Reverse Distillation from One-Class Embedding, "
    "CVPR 2022, arXiv:2201.10703",
)

__all__ = ["RD", "SPEC", "RDConfig", "RDModel"]
