"""The benchmark runner: sweep files -> cells -> launchers -> run directories -> results.

``run_sweep`` is the one entry point; ``load_results`` / ``load_cells`` read a run directory,
``leaderboard`` and ``plot_scaling`` turn it into tables and figures.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adbench.config import to_yaml
from adbench.io import write_atomic
from adbench.runner import rundir
from adbench.runner.datasets import prepare_datasets
from adbench.runner.execute import BUSY, FAILED, FINISHED, CellFailed, Runtime
from adbench.runner.leaderboard import leaderboard
from adbench.runner.plots import plot_scaling
from adbench.runner.plugins import load_plugins, resolve_plugins
from adbench.runner.schema import Cell, Sweep
from adbench.runner.store import ResultStore, load_cells, load_results
from adbench.runner.sweep import describe, expand, load_sweep

__all__ = [
    "Cell",
    "CellFailed",
    "ResultStore",
    "Sweep",
    "SweepReport",
    "dry_run",
    "expand",
    "leaderboard",
    "load_cells",
    "load_results",
    "load_sweep",
    "plan",
    "plot_scaling",
    "run_sweep",
]


@dataclass(frozen=True)
class SweepReport:
    """What a `run_sweep` call did.

    Attributes:
        out: the run directory.
        cells: every cell of the sweep.
        statuses: cell id -> "finished", "skipped" (already done), "failed", "busy" (held by
            another runner), or "submitted"/"queued" (cluster jobs not waited for).
        files: the leaderboard and plot files written.
    """

    out: Path
    cells: tuple[Cell, ...]
    statuses: dict[str, str]
    files: tuple[Path, ...] = ()

    @property
    def failed(self) -> list[Cell]:
        """Cells whose attempt failed in this run (see their ``error.json``)."""
        return [c for c in self.cells if self.statuses.get(c.id) == FAILED]

    def summary(self) -> str:
        """One paragraph: counts per status and each failed cell with its error."""
        counts = Counter(self.statuses.values())
        text = [
            f"{len(self.cells)} cells in {self.out}: "
            + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        ]
        for cell in self.failed:
            error = rundir.error_text(rundir.cell_dir(self.out, cell.id))
            text.append(
                f"  failed {cell.id} ({cell.label}, {cell.dataset}, k={cell.k}, "
                f"seed={cell.seed}): {error}"
            )
        return "\n".join(text)


def plan(
    source: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    plugins: Sequence[str] = (),
) -> tuple[Sweep, list[Cell]]:
    """Validate a sweep, import its plugins, generate missing synthetic data and expand it."""
    sweep = load_sweep(source, overrides)
    sweep = dataclasses.replace(sweep, plugins=resolve_plugins([*sweep.plugins, *plugins]))
    load_plugins(sweep.plugins)
    prepare_datasets(sweep)
    return sweep, expand(sweep)


def run_sweep(
    source: str | Path | Mapping[str, Any],
    out: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    plugins: Sequence[str] = (),
    fail_fast: bool = False,
    progress: bool = True,
    verbose: bool = False,
    report: bool = True,
) -> SweepReport:
    """Run every unfinished cell of a sweep into ``out`` and collect the results.

    Safe to re-run and to run concurrently on the same ``out``: finished cells are skipped,
    cells held by a live runner are left to it, and an interrupted cell is run again.

    Args:
        source: sweep YAML path or mapping (see ``benchmarks/quickstart.yaml``).
        out: the run directory.
        overrides: dotted keys patched over the sweep (``{"trainer.max_epochs": 1}``).
        plugins: Python files or modules to import first (they register methods).
        fail_fast: stop at the first failing cell (raises `CellFailed`).
        progress: show the bar of cells, with the running cell's epoch and step.
        verbose: show each cell's log messages (Lightning's, the method's) on the terminal too;
            they always go to the cell's ``run.log``.
        report: write ``leaderboard.md`` and the scaling plots when cells have finished.
    """
    from adbench.runner.launchers import get_launcher

    sweep, cells = plan(source, overrides, plugins)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "sweep.yaml", to_yaml(sweep))
    runtime = Runtime(
        num_workers=sweep.num_workers,
        checkpoints=sweep.checkpoints,
        plugins=sweep.plugins,
        progress=progress,
        verbose=verbose,
        isolate=getattr(sweep.launcher, "isolate", "auto"),
    )
    store = ResultStore(out)
    try:
        statuses = get_launcher(sweep.launcher)(
            cells, out, runtime, sweep.launcher, fail_fast=fail_fast, progress=progress
        )
    except BaseException:
        store.refresh()  # a failed export is only logged: the sweep's own error is raised
        raise
    store.write()
    files: list[Path] = []
    if report and (store.results()["category"] == "mean").any():
        files.append(out / "leaderboard.md")
        write_atomic(files[0], leaderboard(out, split_protocols=True))
        files += plot_scaling(out, metric="I-AUROC")
    return SweepReport(out, tuple(cells), statuses, tuple(files))


def dry_run(
    source: str | Path | Mapping[str, Any],
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    plugins: Sequence[str] = (),
) -> str:
    """The cell listing of a sweep (with each cell's status in ``out`` when given).

    A status is one of "new", "finished", "failed", "incomplete" (see `load_cells`) or "busy"
    (unfinished and held by a live runner, which `run_sweep` leaves to it).
    """
    _, cells = plan(source, overrides, plugins)
    listing = describe(cells).splitlines()
    if out is None:
        return "\n".join(listing)
    status = (
        {row.cell_id: row.status for row in load_cells(out).itertuples()}
        if rundir.cells_dir(out).is_dir()
        else {}
    )
    lines = [listing[0] + "  status"]
    lines += [
        f"{line}  {_dry_status(out, cell.id, status)}"
        for line, cell in zip(listing[1:], cells, strict=True)
    ]
    return "\n".join(lines)


def _dry_status(out: str | Path, cell_id: str, statuses: dict[str, str]) -> str:
    status = statuses.get(cell_id, "new")
    if status != FINISHED and rundir.lock_holder(rundir.cell_dir(out, cell_id)) is not None:
        return BUSY
    return status
