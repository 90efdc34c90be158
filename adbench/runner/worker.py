"""Worker entry point: ``python -m adbench.runner.worker CELL_DIR`` runs the cell written there.

The runner holds the cell's lock and has written ``cell.json`` and ``runtime.json``. Under DDP,
Lightning starts the other ranks by re-running this same command line, so every rank builds the
same data and method; only global rank 0 writes files. Exit code 0 on success, 1 on failure
(with ``error.json``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from adbench.runner import rundir
from adbench.runner.execute import RUNTIME, Runtime, execute, global_rank, record_error
from adbench.runner.schema import Cell


def main(argv: list[str] | None = None) -> int:
    """Run the cell in ``argv[0]`` (a cell directory)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m adbench.runner.worker CELL_DIR", file=sys.stderr)
        return 2
    folder = Path(args[0])
    cell = Cell.from_dict(rundir.read_json(folder / rundir.CELL))
    runtime = Runtime.from_dict(rundir.read_json(folder / RUNTIME))
    try:
        execute(cell, folder, runtime)
    except Exception as err:
        if global_rank() == 0:
            record_error(folder, err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
