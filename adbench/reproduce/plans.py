"""Reproduction plans: which preset, protocol and published rows reproduce a method's paper.

A plan names the registered method, its name in the published rows
(``adbench/runner/published/*.yaml``), the evaluation protocol of the paper's official code, the
preset per dataset format and the reduced settings of the mechanics mode (``--random-weights``:
the whole path on a CPU in seconds, numbers meaningless).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adbench.errors import ConfigError, unknown_name

ANY_FORMAT = "*"


@dataclass(frozen=True)
class Reproduction:
    """How one method's published numbers are reproduced.

    Attributes:
        method: the registered method name.
        published: the method's name in the published rows.
        protocol: the evaluation protocol of the paper's official code.
        presets: dataset format -> preset (``"*"``: any other format).
        mechanics: config overrides of the mechanics mode (smaller images).
        mechanics_trainer: Trainer settings of the mechanics mode (a tiny budget).
    """

    method: str
    published: str
    protocol: str
    presets: Mapping[str, str]
    mechanics: Mapping[str, Any] = field(default_factory=dict)
    mechanics_trainer: Mapping[str, Any] = field(
        default_factory=lambda: {"max_steps": 2, "max_epochs": None}
    )

    def preset(self, data_format: str) -> str:
        """The preset for a dataset format."""
        return self.presets.get(data_format, self.presets[ANY_FORMAT])


# mechanics of the DINOv2 reconstruction baselines: 64 px resized, a 56 px crop (4 x 4 patches),
# the ViT-S encoder of the same family (the ViT-B alone takes half a minute to initialise on a CPU)
_DINO_MECHANICS = {
    "data.image_size": 64,
    "crop_size": 56,
    "data.batch_size": 2,
    "backbone.name": "vit_small_patch14_reg4_dinov2.lvd142m",
}

PLANS: dict[str, Reproduction] = {
    plan.method: plan
    for plan in (
        Reproduction(
            method="anomalib.dinomaly",
            published="Dinomaly",
            protocol="dinomaly",
            presets={"realiad": "paper-realiad", ANY_FORMAT: "paper"},
            mechanics=_DINO_MECHANICS,
        ),
        Reproduction(
            method="anomalib.inp_former",
            published="INP-Former",
            protocol="dinomaly",  # INP-Former's paper numbers: Dinomaly's rules (its README)
            presets={ANY_FORMAT: "paper"},
            mechanics=_DINO_MECHANICS,
        ),
        Reproduction(
            method="glad",
            published="GLAD",
            protocol="glad",
            presets={"visa": "paper-visa", "mpdd": "paper-mpdd", ANY_FORMAT: "paper"},
            mechanics={"data.image_size": 64, "data.batch_size": 2},
        ),
    )
}


def get_plan(method: str) -> Reproduction:
    """The plan of ``method``; an error lists the methods that have one."""
    if method not in PLANS:
        raise unknown_name("reproduction plan for method", method, sorted(PLANS))
    return PLANS[method]


def check_format(plan: Reproduction, data_format: str, presets: Mapping[str, Any]) -> str:
    """The preset for ``data_format``, checked against the method's ``presets``."""
    preset = plan.preset(data_format)
    if preset not in presets:
        raise ConfigError(
            f"the reproduction plan of {plan.method} names preset '{preset}' for "
            f"{data_format}, which the method does not have ({', '.join(sorted(presets))})"
        )
    return preset
