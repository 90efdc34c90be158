"""anomalib's models as adbench methods (entry points ``anomalib.<model>`` -> the specs below).

Each runs anomalib's *torch* model (not its Lightning module or Engine) on adbench's `Batch`,
with adbench's backbone weights, metrics and runner, under the unified multi-class protocol (one
model over every category's normal images; category ids are never used). Only models that are
category-agnostic by construction are registered.
"""

from __future__ import annotations

from pathlib import Path

from adbench.baselines.dinomaly import AnomalibDinomaly, DinomalyConfig
from adbench.baselines.inp_former import AnomalibInpFormer, InpFormerConfig
from adbench.baselines.padim import AnomalibPadim, PadimConfig
from adbench.baselines.patchcore import AnomalibPatchCore, PatchCoreConfig
from adbench.baselines.reverse_distillation import (
    AnomalibReverseDistillation,
    ReverseDistillationConfig,
)
from adbench.baselines.stfpm import AnomalibSTFPM, STFPMConfig
from adbench.registry import MethodSpec, presets_from_folder

PRESETS = Path(__file__).parent / "presets"

PATCHCORE = MethodSpec(
    name="anomalib.patchcore",
    module=AnomalibPatchCore,
    config=PatchCoreConfig,
    presets=presets_from_folder(PRESETS / "patchcore"),
    paper="Roth et al., Towards Total Recall in Industrial Anomaly Detection, CVPR 2022, "
    "arXiv:2106.08265 (implementation: anomalib)",
)

PADIM = MethodSpec(
    name="anomalib.padim",
    module=AnomalibPadim,
    config=PadimConfig,
    presets=presets_from_folder(PRESETS / "padim"),
    paper="Defard et al., PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection "
    "and Localization, ICPR 2021, arXiv:2011.08785 (implementation: anomalib)",
)

REVERSE_DISTILLATION = MethodSpec(
    name="anomalib.reverse_distillation",
    module=AnomalibReverseDistillation,
    config=ReverseDistillationConfig,
    presets=presets_from_folder(PRESETS / "reverse_distillation"),
    paper="Deng & Li, Anomaly Detection via Reverse Distillation from One-Class Embedding, "
    "CVPR 2022, arXiv:2201.10703 (implementation: anomalib)",
)

STFPM = MethodSpec(
    name="anomalib.stfpm",
    module=AnomalibSTFPM,
    config=STFPMConfig,
    presets=presets_from_folder(PRESETS / "stfpm"),
    paper="Wang et al., Student-Teacher Feature Pyramid Matching for Anomaly Detection, "
    "BMVC 2021, arXiv:2103.04257 (implementation: anomalib)",
)

DINOMALY = MethodSpec(
    name="anomalib.dinomaly",
    module=AnomalibDinomaly,
    config=DinomalyConfig,
    presets=presets_from_folder(PRESETS / "dinomaly"),
    paper="Guo et al., Dinomaly: The Less Is More Philosophy in Multi-Class Unsupervised Anomaly "
    "Detection, CVPR 2025, arXiv:2405.14325 (implementation: anomalib)",
)

INP_FORMER = MethodSpec(
    name="anomalib.inp_former",
    module=AnomalibInpFormer,
    config=InpFormerConfig,
    presets=presets_from_folder(PRESETS / "inp_former"),
    paper="Luo et al., Exploring Intrinsic Normal Prototypes within a Single Image for Universal "
    "Anomaly Detection, CVPR 2025, arXiv:2503.02424 (implementation: anomalib)",
)

__all__ = [
    "DINOMALY",
    "INP_FORMER",
    "PADIM",
    "PATCHCORE",
    "REVERSE_DISTILLATION",
    "STFPM",
    "AnomalibDinomaly",
    "AnomalibInpFormer",
    "AnomalibPadim",
    "AnomalibPatchCore",
    "AnomalibReverseDistillation",
    "AnomalibSTFPM",
    "DinomalyConfig",
    "InpFormerConfig",
    "PadimConfig",
    "PatchCoreConfig",
    "ReverseDistillationConfig",
    "STFPMConfig",
]
