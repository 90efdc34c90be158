"""Each baseline's entry point names its own module: creating one imports no other baseline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import adbench
adbench.create({name!r}, "tiny")
print(json.dumps(sorted(m for m in sys.modules if m.startswith("adbench.baselines"))))
"""


@pytest.mark.parametrize(
    ("name", "modules"),
    [
        ("anomalib.patchcore", ["adbench.baselines.adapter", "adbench.baselines.patchcore"]),
        ("anomalib.stfpm", ["adbench.baselines.adapter", "adbench.baselines.stfpm"]),
        ("naive", ["adbench.baselines.naive"]),
    ],
)
def test_creating_a_baseline_imports_only_its_own_module(name, modules):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(name=name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    assert imported == ["adbench.baselines", *modules]
