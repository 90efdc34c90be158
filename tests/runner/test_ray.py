"""The ray launcher against real Ray: a local instance it starts, and a cluster started with
``ray start --head`` that it joins (``address: auto``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from runner_helpers import CHILD_ENV, import_or_skip, make_sweep

from adbench.runner import load_results, plan, run_sweep
from adbench.runner.rundir import ERROR, LOCK, RESULT, cell_dir

ray = import_or_skip("ray")  # CI installs Ray (extra dev): there a missing Ray fails

RAY = str(Path(sys.executable).with_name("ray"))
RAY_CELL = {"name": "ray", "num_gpus_per_cell": 0, "num_cpus_per_cell": 1}


def _frame(out: Path):
    table = load_results(out).drop(columns="protocol")
    return table.sort_values(["cell_id", "category", "metric"]).reset_index(drop=True)


@pytest.fixture
def stale_cluster_address(monkeypatch) -> Iterator[None]:
    """Ray's temporary directory holding the address of a cluster that is gone, as a killed
    ``ray start`` leaves it: ``address: null`` must start its own instance, not connect there."""
    temp = tempfile.mkdtemp(prefix="ray")  # short: the local instance's sockets go there
    (Path(temp) / "ray").mkdir()
    (Path(temp) / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")
    monkeypatch.setenv("RAY_TMPDIR", temp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_cells_equal_the_local_launchers(tmp_path, tiny_root, toy, stale_cluster_address):
    sweep = make_sweep(tiny_root, categories=[1, 2, 4])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in Ray's workers (num_cpus_per_cell 1): the same float sums
    try:
        local = run_sweep(sweep, tmp_path / "local", progress=False, report=False)
    finally:
        torch.set_num_threads(threads)
    remote = run_sweep(
        {**sweep, "launcher": RAY_CELL}, tmp_path / "ray", progress=False, report=False
    )
    assert (
        set(remote.statuses.values()) == {"finished"}
        and remote.statuses.keys() == local.statuses.keys()
    )
    assert not ray.is_initialized()  # the instance the launcher started is shut down
    assert _frame(tmp_path / "ray").equals(_frame(tmp_path / "local"))
    for cell in remote.cells:
        metrics = [
            json.loads((cell_dir(tmp_path / name, cell.id) / RESULT).read_text())["metrics"]
            for name in ("local", "ray")
        ]
        assert metrics[0] == metrics[1]


def _kill_worker_when_running(folder: Path, killed: list[int]) -> threading.Thread:
    """SIGKILL the process that holds ``folder``'s lock, one second into its cell."""

    def kill() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                pid = json.loads((folder / LOCK).read_text())["pid"]
            except (OSError, ValueError):
                time.sleep(0.02)
                continue
            time.sleep(1.0)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.parametrize("max_retries", [0, 1])
def test_a_worker_killed_mid_cell_is_retried_or_recorded(tmp_path, tiny_root, toy, max_retries):
    sweep = make_sweep(
        tiny_root,
        categories=[2],
        launcher={**RAY_CELL, "max_retries": max_retries},
        methods=[
            {"name": "toy", "preset": "tiny"},
            {"name": "toy", "preset": "tiny", "set": {"step_sleep_s": 1.5}, "label": "slow"},
        ],
    )
    _, (quick, slow) = plan(sweep)
    killed: list[int] = []
    killer = _kill_worker_when_running(cell_dir(tmp_path, slow.id), killed)
    first = run_sweep(sweep, tmp_path, progress=False, report=False)
    killer.join()
    assert len(killed) == 1 and killed[0] != os.getpid()
    expected = "finished" if max_retries else "failed"
    assert first.statuses == {quick.id: "finished", slow.id: expected}
    folder = cell_dir(tmp_path, slow.id)
    if max_retries:  # the retried task broke the dead worker's lock and ran the cell
        assert (folder / RESULT).is_file() and not (folder / LOCK).exists()
        return
    error = json.loads((folder / ERROR).read_text())
    assert error["type"] == "WorkerCrashedError"
    assert error["message"].startswith("the Ray task of this cell ended without a result after 0")
    finished = cell_dir(tmp_path, quick.id) / RESULT
    before = finished.read_bytes(), finished.stat().st_mtime_ns

    second = run_sweep(sweep, tmp_path, progress=False, report=False)
    assert second.statuses == {quick.id: "skipped", slow.id: "finished"}
    assert (finished.read_bytes(), finished.stat().st_mtime_ns) == before
    assert (folder / RESULT).is_file() and not (folder / ERROR).exists()
    assert set(load_results(tmp_path)["cell_id"]) == {quick.id, slow.id}


@pytest.fixture
def ray_head(tmp_path) -> Iterator[dict[str, str]]:
    """A one-node cluster started as ``ray start --head``; yields the environment that reaches
    it (token authentication on, its own token), and stops only the processes it started. Its
    files go to a fresh temporary directory (short: Ray's sockets live there), so the cluster
    leaves no address behind in Ray's default directory."""
    env = {**CHILD_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    log = (tmp_path / "ray_head.log").open("w")
    temp_dir = tempfile.mkdtemp(prefix="ray")
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--num-cpus",
            "2",
            "--num-gpus",
            "0",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
            "--temp-dir",
            temp_dir,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until_up(env, head, tmp_path / "ray_head.log")
        yield env
    finally:
        os.killpg(head.pid, signal.SIGINT)  # `ray start --block` stops its processes on SIGINT
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _cluster_up(env: dict[str, str]) -> bool:
    try:
        return (
            subprocess.run([RAY, "status"], env=env, capture_output=True, timeout=30).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


def _wait_until_up(env: dict[str, str], head: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while not _cluster_up(env):
        if head.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"ray start --head did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(1)


DRIVER = """
import json, sys
from adbench.runner import run_sweep
print(json.dumps(run_sweep(json.loads(sys.argv[1]), sys.argv[2], progress=False,
                           report=False).statuses))
"""


@pytest.mark.slow
def test_address_auto_joins_a_running_cluster_and_leaves_it_up(tmp_path, tiny_root, toy, ray_head):
    sweep = make_sweep(tiny_root, categories=[1, 2], launcher={**RAY_CELL, "address": "auto"})
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(sweep), str(tmp_path)],
        env=ray_head,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    _, cells = plan(sweep)
    assert json.loads(driver.stdout.splitlines()[-1]) == {c.id: "finished" for c in cells}
    assert all((cell_dir(tmp_path, c.id) / RESULT).is_file() for c in cells)
    assert _cluster_up(ray_head)  # the launcher disconnected without stopping the cluster


def test_address_auto_without_a_cluster_says_so(tmp_path, tiny_root, toy, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    sweep = make_sweep(tiny_root, categories=[1], launcher={**RAY_CELL, "address": "auto"})
    with pytest.raises(ConnectionError, match="Could not find any running Ray instance"):
        run_sweep(sweep, tmp_path / "out", progress=False, report=False)
    assert not ray.is_initialized()
