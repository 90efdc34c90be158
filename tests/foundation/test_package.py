"""The package as users get it: a wheel of our own distribution name, and a runner without
import cycles."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]


def _entry_points() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    return sorted(project["project"]["entry-points"]["adbench.methods"])


def test_the_distribution_has_a_name_of_its_own():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    import adbench

    # PyPI's "adbench" is the tabular anomaly-detection benchmark, another project
    assert project["name"] == adbench.DISTRIBUTION == "adbench-uad"
    assert f"pip install {adbench.DISTRIBUTION}" in (REPO / "README.md").read_text()


@pytest.mark.slow
def test_a_wheel_installs_in_a_fresh_venv_and_finds_every_method(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
    )
    (wheel,) = wheels.glob("adbench_uad-*.whl")
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        check=True,
    )
    # the dependencies come from this environment, without its own (editable) adbench
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("adbench", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(f"{deps}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import adbench, adbench.data.synthetic.products; print(adbench.__file__)",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert where.startswith(str(site))
    listing = subprocess.run(
        [str(fresh / "bin" / "adbench"), "list"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert "cannot be loaded" not in listing
    methods = [line.split()[0] for line in listing.split("dataset formats:")[0].splitlines()[1:]]
    assert methods == _entry_points()


def _runner_imports(path: Path) -> set[str]:
    """Modules of ``adbench.runner`` that ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n.startswith("adbench.runner")}
    return found


def test_the_runner_has_no_import_cycles():
    root = REPO / "adbench" / "runner"
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {
        name: {m for m in _runner_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    assert graph["adbench.runner.schema"] == set()  # the schema imports nothing of the runner

    def visit(name: str, stack: tuple[str, ...]) -> None:
        for child in graph[name]:
            if child in stack:
                raise AssertionError(" -> ".join((*stack[stack.index(child) :], child)))
            if child != "adbench.runner":  # the package's API module imports its parts
                visit(child, (*stack, child))

    for name in graph:
        if name != "adbench.runner":
            visit(name, (name,))
