"""Worker entry point: ``python -m adbench.runner.worker CELL_DIR`` runs the cell written there.

The runner holds the cell's lock and has written ``cell.json`` and ``runtime.json``. Under DDP,
Lightning starts the other ranks by re-running this same command line, so every rank builds the
same data and method; only global rank 0 writes files. Exit code 0 on success, 1 on failure
(with ``error.json``). With ``runtime.progress``, rank 0 shows the cell's epoch and step in a bar
of its own, drawn over the runner's bar of cells while the cell runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

from adbench.quiet import quiet_third_party, show_messages
from adbench.runner import rundir
from adbench.runner.execute import RUNTIME, Runtime, execute, global_rank, record_error
from adbench.runner.schema import Cell


def main(argv: list[str] | None = None) -> int:
    """Run the cell in ``argv[0]`` (a cell directory)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m adbench.runner.worker CELL_DIR", file=sys.stderr)
        return 2
    quiet_third_party()
    show_messages()
    folder = Path(args[0])
    cell = Cell.from_dict(rundir.read_json(folder / rundir.CELL))
    runtime = Runtime.from_dict(rundir.read_json(folder / RUNTIME))
    with contextlib.ExitStack() as stack:
        if runtime.progress and global_rank() == 0:
            from tqdm import tqdm

            from adbench.runner.progress import CellProgress, describe_cell

            bar = stack.enter_context(
                tqdm(bar_format="{desc}{postfix}", desc="cell", leave=False, dynamic_ncols=True)
            )
            runtime = dataclasses.replace(
                runtime, callbacks=(CellProgress(bar, describe_cell(cell)),)
            )
        try:
            execute(cell, folder, runtime)
        except Exception as err:
            if global_rank() == 0:
                record_error(folder, err)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
