"""The ``local`` launcher: cells one after another on this machine, with one progress bar.

The bar counts cells and names the running one with its epoch and step
(`adbench.runner.progress.CellProgress`).
"""

from __future__ import annotations

import dataclasses
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


def launch(
    cells: list[Cell],
    out: Path,
    runtime: Runtime,
    config: LocalLauncher,
    *,
    fail_fast: bool = False,
    progress: bool = True,
) -> dict[str, str]:
    """Run ``cells`` in turn; finished cells are skipped, cells held by another runner left."""
    from adbench.runner.progress import CellProgress, describe_cell

    done = sum(rundir.is_finished(rundir.cell_dir(out, c.id)) for c in cells)
    statuses: dict[str, str] = {}
    failed = 0
    with tqdm(
        total=len(cells),
        initial=done,
        unit="cell",
        desc="cells",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for cell in cells:
            if rundir.is_finished(rundir.cell_dir(out, cell.id)):
                statuses[cell.id] = SKIPPED
                continue
            prefix = describe_cell(cell) + (f" | {failed} failed" if failed else "")
            bar.set_postfix_str(prefix)
            shown = (
                dataclasses.replace(runtime, callbacks=(CellProgress(bar, prefix),))
                if progress
                else runtime
            )
            status = run_cell(out, cell, shown, fail_fast=fail_fast)
            statuses[cell.id] = status
            failed += status == FAILED
            if status in (FINISHED, FAILED):
                bar.update(1)
    return statuses
