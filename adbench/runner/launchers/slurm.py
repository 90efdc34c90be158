"""The ``slurm`` launcher: one submitit job per cell, submitted together as a job array.

Re-launching the same sweep resubmits only the cells that are unfinished, not held by a live
runner and whose recorded job is no longer pending or running (failed, timed out, cancelled).
For a multi-GPU cell, each node runs one task per GPU and Lightning reads the SLURM environment;
task 0 claims the cell and writes its files. ``cluster: local`` runs the jobs as local processes
through submitit's local executor (used by the tests).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from adbench.errors import MissingDependencyError
from adbench.runner import rundir
from adbench.runner.execute import (
    BUSY,
    FAILED,
    FINISHED,
    SKIPPED,
    CellFailed,
    Runtime,
    execute,
    run_cell,
)
from adbench.runner.schema import Cell

SUBMITTED, QUEUED = "submitted", "queued"
JOB = rundir.JOB
ACTIVE_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "CONFIGURING",
    "COMPLETING",
    "RESIZING",
    "SUSPENDED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "UNKNOWN",
}
KILLED_STATES = {
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "DEADLINE",
    "BOOT_FAIL",
}


@dataclass(frozen=True)
class SlurmLauncher:
    """Job settings (submitit's ``AutoExecutor`` parameters) shared by every cell's job.

    Attributes:
        partition: SLURM partition (``--partition``).
        gpus_per_node: GPUs per job; the cell's Trainer uses them through DDP.
        tasks_per_node: defaults to ``gpus_per_node`` (one task per GPU), or 1 on CPU.
        nodes: nodes per job (match the sweep's ``trainer.num_nodes``).
        cpus_per_task, mem_gb, timeout_min: resources per job.
        array_parallelism: how many jobs of the array run at once.
        account, qos, constraint: the matching ``sbatch`` options.
        additional: any other ``sbatch`` options (``{exclude: node12}``).
        setup: shell lines run before the job (``module load cuda``).
        folder: submitit's folder for scripts and logs (default ``DIR/slurm``).
        cluster: "slurm", or "local" / "debug" to run the jobs on this machine.
        wait: wait for the jobs with a progress bar; otherwise return once submitted.
        poll_s: seconds between checks while waiting.
    """

    name: Literal["slurm"] = "slurm"
    partition: str | None = None
    gpus_per_node: int = 1
    tasks_per_node: int | None = None
    nodes: int = 1
    cpus_per_task: int = 8
    mem_gb: float | None = None
    timeout_min: int = 24 * 60
    array_parallelism: int = 64
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    additional: dict[str, Any] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    folder: str = ""
    cluster: Literal["slurm", "local", "debug"] = "slurm"
    wait: bool = True
    poll_s: float = 30.0

    @property
    def tasks(self) -> int:
        """Tasks per node."""
        return self.tasks_per_node or max(1, self.gpus_per_node)


def _executor(config: SlurmLauncher, out: Path) -> Any:
    try:
        import submitit
    except ImportError as err:
        raise MissingDependencyError(
            "the slurm launcher needs submitit: pip install 'adbench-uad[slurm]'"
        ) from err
    folder = Path(config.folder) if config.folder else out / "slurm"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=config.cluster)
    parameters: dict[str, Any] = {
        "name": "adbench",
        "timeout_min": config.timeout_min,
        "nodes": config.nodes,
        "gpus_per_node": config.gpus_per_node,
        "tasks_per_node": config.tasks,
        "cpus_per_task": config.cpus_per_task,
        "slurm_array_parallelism": config.array_parallelism,
    }
    if config.mem_gb is not None:
        parameters["mem_gb"] = config.mem_gb
    slurm_options = {
        "partition": config.partition,
        "account": config.account,
        "qos": config.qos,
        "constraint": config.constraint,
    }
    parameters.update({f"slurm_{k}": v for k, v in slurm_options.items() if v is not None})
    if config.additional:
        parameters["slurm_additional_parameters"] = dict(config.additional)
    if config.setup:
        parameters["slurm_setup"] = list(config.setup)
    executor.update_parameters(**parameters)
    return executor


def run_job(out: str, cell_data: dict[str, Any], runtime_data: dict[str, Any]) -> str:
    """The function each job runs: claim and run one cell (task 0), or join its DDP (others)."""
    import submitit

    from adbench.runner.plugins import load_plugins

    cell, runtime = Cell.from_dict(cell_data), Runtime.from_dict(runtime_data)
    load_plugins(runtime.plugins)
    environment = submitit.JobEnvironment()
    if environment.num_tasks == 1:
        return run_cell(out, cell, runtime)
    runtime = dataclasses.replace(runtime, isolate=False)  # Lightning uses the SLURM tasks
    if environment.global_rank == 0:
        return run_cell(out, cell, runtime)
    folder = rundir.cell_dir(out, cell.id)
    if rundir.is_finished(folder):
        return SKIPPED
    execute(cell, folder, runtime)  # writes nothing on ranks > 0
    return FINISHED


def _job_active(folder: Path, config: SlurmLauncher) -> bool:
    """Whether the job recorded for a cell is still pending or running on the cluster."""
    path = folder / JOB
    if config.cluster != "slurm" or not path.is_file():
        return False
    import submitit

    record = rundir.read_json(path)
    job = submitit.SlurmJob(folder=record["folder"], job_id=record["job_id"])
    return job.state.split()[0] in ACTIVE_STATES


def launch(
    cells: list[Cell],
    out: Path,
    runtime: Runtime,
    config: SlurmLauncher,
    *,
    fail_fast: bool = False,
    progress: bool = True,
) -> dict[str, str]:
    """Submit every cell that needs running; wait for the jobs when ``config.wait``."""
    statuses: dict[str, str] = {}
    pending = []
    for cell in cells:
        folder = rundir.cell_dir(out, cell.id)
        if rundir.is_finished(folder):
            statuses[cell.id] = SKIPPED
        elif rundir.lock_holder(folder, runtime.stale_after) is not None:
            statuses[cell.id] = BUSY
        elif _job_active(folder, config):
            statuses[cell.id] = QUEUED
        else:
            pending.append(cell)
    if not pending:
        return statuses
    executor = _executor(config, out)
    remote = dataclasses.replace(runtime, progress=False).to_dict()  # a job's log is no terminal
    jobs = executor.map_array(
        run_job, [str(out)] * len(pending), [c.to_dict() for c in pending], [remote] * len(pending)
    )
    for cell, job in zip(pending, jobs, strict=True):
        rundir.write_json(
            rundir.cell_dir(out, cell.id) / JOB,
            {
                "job_id": job.job_id,
                "cluster": config.cluster,
                "folder": str(executor.folder),
                "submitted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            },
        )
        statuses[cell.id] = SUBMITTED
    if config.wait:
        statuses.update(_wait(out, pending, jobs, config, fail_fast, progress))
    return statuses


def _wait(
    out: Path,
    cells: list[Cell],
    jobs: list[Any],
    config: SlurmLauncher,
    fail_fast: bool,
    progress: bool,
) -> dict[str, str]:
    statuses: dict[str, str] = {}
    waiting = dict(zip([c.id for c in cells], zip(cells, jobs, strict=True), strict=True))
    with tqdm(total=len(cells), unit="job", desc="slurm jobs", disable=not progress) as bar:
        while waiting:
            for cell_id, (cell, job) in list(waiting.items()):
                if not job.done():
                    continue
                del waiting[cell_id]
                bar.update(1)
                statuses[cell_id] = _outcome(out, cell, job)
                if statuses[cell_id] == FAILED and fail_fast:
                    for _, other in waiting.values():
                        other.cancel(check=False)
                    raise CellFailed(
                        f"cell {cell.id} ({cell.label}) failed; see "
                        f"{rundir.cell_dir(out, cell.id) / rundir.ERROR}"
                    )
            if waiting:
                time.sleep(config.poll_s)
    return statuses


def _outcome(out: Path, cell: Cell, job: Any) -> str:
    folder = rundir.cell_dir(out, cell.id)
    if rundir.is_finished(folder):
        return FINISHED
    state = job.state.split()[0]
    if state in KILLED_STATES and not job.paths.result_pickle.exists():
        # killed by SLURM: no result is coming (job.result() would wait 15 s for one, per job)
        _job_error(
            folder,
            job,
            "JobKilled",
            f"job {job.job_id} ended {state} before its cell finished",
            (job.stderr() or "")[-4000:],
        )
        return FAILED
    try:
        status = job.result()
    except Exception as err:  # run_job raised, or the job died and left no result
        _job_error(folder, job, type(err).__name__, f"job {job.job_id} failed: {err}", str(err))
        return FAILED
    return status if status == BUSY else FAILED


def _job_error(folder: Path, job: Any, kind: str, message: str, text: str) -> None:
    """Write ``error.json`` for a job that died outside its cell (unless the cell wrote one)."""
    if not (folder / rundir.ERROR).is_file():
        rundir.write_json(
            folder / rundir.ERROR,
            {"type": kind, "message": message, "traceback": text, "stderr": str(job.paths.stderr)},
        )
