"""Where and how a run was measured: the software and hardware environment and peak memory.

`environment` is written as ``environment.json`` beside every result; `PeakMemory` measures a
run's peak CPU and GPU memory (``result.json``'s ``memory`` section).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import re
import resource
import socket
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "adbench-uad",
    "torch",
    "torchvision",
    "lightning",
    "timm",
    "torchmetrics",
    "anomalib",
    "diffusers",
    "pot",
    "numpy",
    "pandas",
)


def environment() -> dict[str, Any]:
    """Versions, interpreter, platform, CPU and GPUs of this process (``environment.json``)."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "packages": _versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "gpus": gpus,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class PeakMemory:
    """Peak CPU resident memory and peak GPU memory of this process over a ``with`` block.

    On Linux the resident-set high-water mark is reset at the start (``/proc/self/clear_refs``),
    so the peak belongs to the block; elsewhere it is the process's lifetime peak (``rss_scope``
    says which). ``start_rss_mb`` is the resident memory when the block starts, so a cell's own
    growth is ``peak_rss_mb - start_rss_mb``. GPU numbers are those of the current CUDA device.
    """

    def __init__(self) -> None:
        self.cpu_scope = "process"
        self.peak_rss_mb: float | None = None
        self.start_rss_mb: float | None = None
        self.peak_gpu_mb: float | None = None
        self.peak_gpu_reserved_mb: float | None = None

    def __enter__(self) -> PeakMemory:
        import torch

        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
            self.cpu_scope = "block"
        self.start_rss_mb = _current_rss_mb()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        self.peak_rss_mb = _peak_rss_mb()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            self.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
            self.peak_gpu_reserved_mb = torch.cuda.max_memory_reserved() / 2**20

    def as_dict(self) -> dict[str, Any]:
        """The measured numbers (MiB)."""
        return {
            "peak_rss_mb": self.peak_rss_mb,
            "start_rss_mb": self.start_rss_mb,
            "peak_gpu_mb": self.peak_gpu_mb,
            "peak_gpu_reserved_mb": self.peak_gpu_reserved_mb,
            "rss_scope": self.cpu_scope,
        }


def _current_rss_mb() -> float | None:
    with contextlib.suppress(OSError):
        match = re.search(r"VmRSS:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    return None


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
