"""MDD-Net: memory-augmented dual-decoder reverse distillation (Xing et al., arXiv 2504.14884)."""

from __future__ import annotations

from pathlib import Path

from adbench.registry import MethodSpec, presets_from_folder

from .config import MDDNetConfig
from .model import MDDNetModel
from .module import MDDNet

SPEC = MethodSpec(
    name="mddnet",
    module=MDDNet,
    config=MDDNetConfig,
    presets=presets_from_folder(Path(__file__).parent / "presets"),
    paper="Xing et al., Memory-Augmented Dual-Decoder Networks for Multi-Class Unsupervised "
    "Anomaly Detection, arXiv:2504.14884 (2025)",
)

__all__ = ["SPEC", "MDDNet", "MDDNetConfig", "MDDNetModel"]
