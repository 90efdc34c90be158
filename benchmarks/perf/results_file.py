"""How every benchmark describes its machine and writes its results: ``<out>.json`` and
``<out>.md``, each stamped with the commit measured, the time and the machine's load average (a
loaded machine gives pessimistic and noisy timings, so the load is part of the result)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from adbench.io import write_atomic
from adbench.provenance import environment

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def machine() -> str:
    """``<CPU> (<n> cores, <t> threads), torch <version>, <GPUs or "no GPU">``."""
    env = environment()
    return (
        f"{env['cpu']} ({env['cpu_count']} cores, {torch.get_num_threads()} threads), "
        f"torch {torch.__version__}, {', '.join(env['gpus']) or 'no GPU'}"
    )


def provenance() -> dict[str, Any]:
    """Commit (and whether the tree had uncommitted changes), UTC time, load average, machine."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(status),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }


def describe(stamp: dict[str, Any]) -> str:
    """One line: ``commit 1a2b3c4d, 2026-12-05T14:00:00+00:00, load average 1.0/0.8/0.5, ...``."""
    commit = stamp["commit"][:10] + (" with uncommitted changes" if stamp["dirty"] else "")
    load = "/".join(f"{value:.2f}" for value in stamp["load_average"])
    return (
        f"commit {commit}, {stamp['measured_at']}, load average {load} (1/5/15 min), "
        f"{stamp['machine']}"
    )


def write_results(out: Path, data: dict[str, Any], markdown: str) -> None:
    """Write ``out``.json (``data`` plus ``provenance``) and ``out``.md (the stamp line, then
    ``markdown``), atomically.

    Args:
        out: path without suffix, e.g. ``benchmarks/results/metrics``.
        data: the JSON-safe results.
        markdown: the human-readable table(s).
    """
    stamp = provenance()
    write_atomic(
        out.with_suffix(".json"), json.dumps({**data, "provenance": stamp}, indent=1) + "\n"
    )
    write_atomic(out.with_suffix(".md"), f"Measured at {describe(stamp)}.\n\n{markdown.strip()}\n")


def write_tables(
    out: Path, title: str, tables: dict[str, list[dict[str, Any]]], floatfmt: str = ".3g"
) -> None:
    """Print and write (`write_results`) rows as Markdown tables under a header naming the
    machine.

    The JSON holds ``header`` and each table's rows under its key (e.g. ``rows``); with several
    tables, each non-empty one gets its key as a ``###`` heading in the Markdown.
    """
    import pandas as pd

    header = f"{title}, measured {datetime.date.today()} on {machine()}."
    parts = [header]
    for key, rows in tables.items():
        if rows:
            table = pd.DataFrame(rows).to_markdown(index=False, floatfmt=floatfmt)
            parts.append(f"### {key}\n\n{table}" if len(tables) > 1 else table)
    text = "\n\n".join(parts)
    print(f"\n{text}")
    write_results(out, {"header": header, **tables}, text)
