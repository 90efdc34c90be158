"""Launchers: how a sweep's cells get run. Each wraps an existing engine, none is a scheduler.

- ``local``: cells one after another in this process; a multi-device cell runs in a worker
  process where Lightning starts its DDP ranks.
- ``slurm``: one submitit job per cell, submitted as a job array; re-launching resubmits only
  unfinished cells whose job is no longer queued or running.
- ``ray`` (optional extra): cells in parallel over the GPUs of a node or cluster.

Every launcher function has the signature
``launch(cells, out, runtime, config, *, fail_fast, progress) -> {cell_id: status}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from adbench.config import from_dict
from adbench.errors import ConfigError, UnknownNameError, unknown_name
from adbench.runner.launchers import local, ray, slurm

LAUNCHERS: dict[str, tuple[type, Callable[..., dict[str, str]]]] = {
    "local": (local.LocalLauncher, local.launch),
    "slurm": (slurm.SlurmLauncher, slurm.launch),
    "ray": (ray.RayLauncher, ray.launch),
}


def parse_launcher(data: Any, context: str = "sweep") -> Any:
    """Validate a ``launcher: {name: ..., ...}`` mapping into that launcher's config dataclass."""
    if any(isinstance(data, cls) for cls, _ in LAUNCHERS.values()):
        return data
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, Mapping) or "name" not in data:
        raise ConfigError(
            f"{context}: launcher must be a mapping with a name "
            f"({', '.join(LAUNCHERS)}), got {data!r}"
        )
    name = data["name"]
    if name not in LAUNCHERS:
        raise UnknownNameError(f"{context}: {unknown_name('launcher', str(name), LAUNCHERS)}")
    return from_dict(LAUNCHERS[name][0], data, context=f"{context}: launcher")


def get_launcher(config: Any) -> Callable[..., dict[str, str]]:
    """The launch function for a parsed launcher config."""
    return LAUNCHERS[config.name][1]
