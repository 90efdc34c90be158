"""Baselines from other libraries, registered as adbench methods.

`adbench.baselines.anomalib` wraps anomalib's torch models (PatchCore, PaDiM, Reverse
Distillation, STFPM) so they train and score through adbench's data layer, metrics and runner under
the unified multi-class protocol. They are registered through the ``adbench.methods`` entry points
(``anomalib.patchcore``, ...), so importing this package imports nothing heavy.
"""

from __future__ import annotations
