"""The ``ray`` launcher (optional extra ``adbench-uad[ray]``): cells in parallel over Ray's GPUs.

Each cell is a Ray task that asks for ``num_gpus_per_cell`` GPUs; Ray places the tasks on the
free GPUs of a node or cluster and sets ``CUDA_VISIBLE_DEVICES`` for each, and the cell runs
with the same locks and files as under the local launcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from adbench.errors import MissingDependencyError
from adbench.runner import rundir
from adbench.runner.execute import FAILED, FINISHED, SKIPPED, CellFailed, Runtime, run_cell
from adbench.runner.schema import Cell


@dataclass(frozen=True)
class RayLauncher:
    """Settings of the Ray launcher.

    Attributes:
        address: Ray cluster to join ("auto" for a running one); None starts Ray locally.
        num_gpus_per_cell: GPUs each cell reserves (fractions share a GPU).
        num_cpus_per_cell: CPUs each cell reserves.
        max_retries: Ray retries of a cell whose worker process died.
    """

    name: Literal["ray"] = "ray"
    address: str | None = None
    num_gpus_per_cell: float = 1.0
    num_cpus_per_cell: float = 1.0
    max_retries: int = 0


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise MissingDependencyError(
            "the ray launcher needs Ray: pip install 'adbench-uad[ray]' (or use launcher: local / "
            "slurm)") from err
    return ray


def _run(out: str, cell_data: dict[str, Any], runtime_data: dict[str, Any]) -> str:
    from adbench.runner.plugins import load_plugins

    runtime = Runtime.from_dict(runtime_data)
    load_plugins(runtime.plugins)
    return run_cell(out, Cell.from_dict(cell_data), runtime)


def launch(cells: list[Cell], out: Path, runtime: Runtime, config: RayLauncher, *,
           fail_fast: bool = False, progress: bool = True) -> dict[str, str]:
    """Run the unfinished cells as Ray tasks and wait for all of them."""
    ray = _import_ray()
    statuses = {c.id: SKIPPED for c in cells if rundir.is_finished(rundir.cell_dir(out, c.id))}
    pending = [c for c in cells if c.id not in statuses]
    if not pending:
        return statuses
    ray.init(address=config.address, ignore_reinit_error=True, log_to_driver=progress)
    task = ray.remote(num_gpus=config.num_gpus_per_cell, num_cpus=config.num_cpus_per_cell,
                      max_retries=config.max_retries)(_run)
    refs = {task.remote(str(out), c.to_dict(), runtime.to_dict()): c for c in pending}
    with tqdm(total=len(cells), initial=len(statuses), unit="cell", desc="cells",
              disable=not progress) as bar:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            cell = refs.pop(ready[0])
            try:
                statuses[cell.id] = ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the worker died before recording
                rundir.write_json(rundir.cell_dir(out, cell.id) / rundir.ERROR, {
                    "type": type(err).__name__, "message": str(err), "traceback": str(err)})
                statuses[cell.id] = FAILED
            bar.update(statuses[cell.id] in (FINISHED, FAILED))
            if statuses[cell.id] == FAILED and fail_fast:
                for ref in refs:
                    ray.cancel(ref)
                raise CellFailed(f"cell {cell.id} ({cell.label}) failed; see "
                                 f"{rundir.cell_dir(out, cell.id) / rundir.ERROR}")
    return statuses
