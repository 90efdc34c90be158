"""DPDiff-AD: dual prototype-conditioned feature diffusion (Feng et al., arXiv 2605.24402)."""

from __future__ import annotations

from pathlib import Path

from adbench.registry import MethodSpec, presets_from_folder

from .config import DPDiffADConfig
from .module import DPDiffAD

SPEC = MethodSpec(
    name="dpdiff_ad",
    module=DPDiffAD,
    config=DPDiffADConfig,
    presets=presets_from_folder(Path(__file__).parent / "presets"),
    paper="Feng et al., Dual Prototype-Conditioned Diffusion Model for Scalable Multi-Class "
    "Unsupervised Anomaly Detection in Large Category Spaces, arXiv:2605.24402 (2026)",
)

__all__ = ["SPEC", "DPDiffAD", "DPDiffADConfig"]
