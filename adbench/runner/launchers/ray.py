"""The ``ray`` launcher (optional extra ``adbench-uad[ray]``): cells in parallel over Ray's GPUs.

Each cell is a Ray task that asks for ``num_gpus_per_cell`` GPUs; Ray places the tasks on the
free GPUs of a node or cluster and sets ``CUDA_VISIBLE_DEVICES`` for each, and the cell runs
with the same locks and files as under the local launcher. A worker that dies mid-cell leaves a
lock whose owner is dead, which the retried task (``max_retries``) or a later run breaks; a cell
whose retries are spent is recorded as failed. A Ray instance the launcher started is shut down
when the sweep ends; a cluster it joined (``address``) or a session the caller opened stays up.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
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
        address: Ray cluster to join ("auto": the one running here, or "host:port"); None starts
            a new local Ray instance for the sweep, even when a cluster is running.
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
            "slurm)"
        ) from err
    return ray


def _run(out: str, cell_data: dict[str, Any], runtime_data: dict[str, Any]) -> str:
    from adbench.runner.plugins import load_plugins

    runtime = Runtime.from_dict(runtime_data)
    load_plugins(runtime.plugins)
    return run_cell(out, Cell.from_dict(cell_data), runtime)


@contextlib.contextmanager
def _session(ray: Any, config: RayLauncher, progress: bool) -> Iterator[None]:
    """Connect to Ray for the sweep, unless the caller already did; shut down what was opened."""
    if ray.is_initialized():
        yield
        return
    if config.address is None:  # "local": never the cluster a past `ray start` recorded
        ray.init(address="local", include_dashboard=False, log_to_driver=progress)
    else:
        ray.init(address=config.address, log_to_driver=progress)
    try:
        yield
    finally:
        ray.shutdown()


def launch(
    cells: list[Cell],
    out: Path,
    runtime: Runtime,
    config: RayLauncher,
    *,
    fail_fast: bool = False,
    progress: bool = True,
) -> dict[str, str]:
    """Run the unfinished cells as Ray tasks and wait for all of them."""
    ray = _import_ray()
    statuses = {c.id: SKIPPED for c in cells if rundir.is_finished(rundir.cell_dir(out, c.id))}
    pending = [c for c in cells if c.id not in statuses]
    if not pending:
        return statuses
    with _session(ray, config, progress):
        task = ray.remote(
            num_gpus=config.num_gpus_per_cell,
            num_cpus=config.num_cpus_per_cell,
            max_retries=config.max_retries,
        )(_run)
        remote = dataclasses.replace(runtime, progress=False).to_dict()  # the bar is this one
        refs = {task.remote(str(out), c.to_dict(), remote): c for c in pending}
        with tqdm(
            total=len(cells), initial=len(statuses), unit="cell", desc="cells", disable=not progress
        ) as bar:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                cell = refs.pop(ready[0])
                try:
                    statuses[cell.id] = ray.get(ready[0])
                except ray.exceptions.RayError as err:  # the worker died before recording
                    rundir.write_json(
                        rundir.cell_dir(out, cell.id) / rundir.ERROR,
                        {
                            "type": type(err).__name__,
                            "message": f"the Ray task of this cell ended without a result after "
                            f"{config.max_retries} retries: {str(err).splitlines()[0]}",
                            "traceback": str(err),
                        },
                    )
                    statuses[cell.id] = FAILED
                bar.update(statuses[cell.id] in (FINISHED, FAILED))
                if statuses[cell.id] == FAILED and fail_fast:
                    for ref in refs:
                        ray.cancel(ref)
                    raise CellFailed(
                        f"cell {cell.id} ({cell.label}) failed; see "
                        f"{rundir.cell_dir(out, cell.id) / rundir.ERROR}"
                    )
    return statuses
