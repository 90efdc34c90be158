"""Method labels that say what ran: the paper's design or a CPU variant.

A preset declares what it runs with its top-level ``variant`` key
(`adbench.registry.MethodSpec.variant`): the paper's design (the default, also when the preset
only shrinks the sizes or the budget) or ``cpu-variant``, a redesign of the method for the CPU.
`with_variants` appends `variant_label` to the method label of every row measured with a CPU
variant, so that each table and figure made from the rows names it. The declaration is read from
the installed method's preset of the row's registry ``name`` and ``preset``; a method that cannot
be loaded (not installed, a missing extra, a preset it no longer has) keeps its label, with a
logged warning.
"""

from __future__ import annotations

import logging

import pandas as pd

from adbench.errors import AdbenchError
from adbench.registry import CPU_VARIANT, get_method_spec

CPU_LABEL = "CPU variant"
_log = logging.getLogger(__name__)


def preset_variant(name: str, preset: str) -> str | None:
    """The declared variant of method ``name``'s ``preset``; None when it cannot be read."""
    try:
        return get_method_spec(name).variant(preset)
    except AdbenchError as err:
        _log.warning("no variant label for method '%s', preset '%s': %s", name, preset, err)
        return None


def variant_label(label: str, preset: str) -> str:
    """``label`` marked as a CPU variant: ``glad (tiny: CPU variant)``.

    The preset is left out when the label already ends with it (``glad:tiny (CPU variant)``).
    """
    if label.endswith(f":{preset}"):
        return f"{label} ({CPU_LABEL})"
    return f"{label} ({preset}: {CPU_LABEL})"


def with_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the ``method`` label of each CPU variant's rows marked (`variant_label`).

    Args:
        frame: a `load_results` or `load_cells` table (``method``, ``name`` and ``preset``
            columns); a table without ``name`` or ``preset`` is returned as it is.
    """
    if not {"method", "name", "preset"} <= set(frame.columns):
        return frame
    keys = list(zip(frame["method"], frame["name"], frame["preset"], strict=True))
    labels = {}
    for label, name, preset in dict.fromkeys(keys):
        known = isinstance(name, str) and isinstance(preset, str)
        cpu = known and preset_variant(name, preset) == CPU_VARIANT
        labels[label, name, preset] = variant_label(str(label), preset) if cpu else label
    return frame.assign(method=[labels[key] for key in keys])
