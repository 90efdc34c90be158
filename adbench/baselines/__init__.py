"""Baselines registered as adbench methods: anomalib's models and the naive mean-image floor.

Each anomalib baseline (``anomalib.patchcore``, ``anomalib.padim``, ...) runs anomalib's *torch*
model (not its Lightning module or Engine) on adbench's `Batch`, with adbench's backbone weights,
metrics and runner, under the unified multi-class protocol (one model over every category's normal
images; category ids are never used). Only models that are category-agnostic by construction are
registered. Each module defines its own ``SPEC``, named by its own ``adbench.methods`` entry point,
so importing this package, or creating one baseline, imports no other baseline.
"""

from __future__ import annotations

from pathlib import Path

PRESETS = Path(__file__).parent / "presets"
"""The folder of each baseline's ``<name>/<preset>.yaml`` presets."""
