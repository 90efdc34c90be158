"""The ``local`` launcher: cells one after another on this machine, with a progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from adbench.runner import rundir
from adbench.runner.execute import FAILED, FINISHED, SKIPPED, Runtime, run_cell
from adbench.runner.schema import Cell


@dataclass(frozen=True)
class LocalLauncher:
    """Settings of the local launcher.

    Attributes:
        isolate: run every cell in a fresh worker process (True), never (False, single-device
            cells only) or only cells that use more than one device ("auto").
    """

    name: Literal["local"] = "local"
    isolate: bool | Literal["auto"] = "auto"


def launch(cells: list[Cell], out: Path, runtime: Runtime, config: LocalLauncher, *,
           fail_fast: bool = False, progress: bool = True) -> dict[str, str]:
    """Run ``cells`` in turn; finished cells are skipped, cells held by another runner left."""
    done = sum(rundir.is_finished(rundir.cell_dir(out, c.id)) for c in cells)
    statuses: dict[str, str] = {}
    failed = 0
    with tqdm(total=len(cells), initial=done, unit="cell", desc="cells",
              disable=not progress, dynamic_ncols=True) as bar:
        for cell in cells:
            if rundir.is_finished(rundir.cell_dir(out, cell.id)):
                statuses[cell.id] = SKIPPED
                continue
            bar.set_postfix_str(f"{cell.label} | {cell.dataset} | k={cell.k} | seed={cell.seed}"
                                + (f" | {failed} failed" if failed else ""))
            status = run_cell(out, cell, runtime, fail_fast=fail_fast)
            statuses[cell.id] = status
            failed += status == FAILED
            if status in (FINISHED, FAILED):
                bar.update(1)
    return statuses
