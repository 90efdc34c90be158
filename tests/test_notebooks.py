"""The notebooks: each .ipynb matches its jupytext source, and each source runs top to bottom.

The analysis notebooks read ``ADBENCH_RESULTS``; here it points at a results directory made by a
tiny sweep inside the test, so the test does not depend on the results shipped with the
repository.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbclient
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))
NAMES = [path.stem for path in SOURCES]
FIGURES = {"quickstart", "leaderboard_analysis", "category_scaling"}  # notebooks that draw


def _cells(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_every_notebook_has_a_source_and_a_generated_ipynb():
    assert {"quickstart", "leaderboard_analysis", "category_scaling", "custom_method"} <= set(NAMES)
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_is_in_sync_with_its_source(name):
    source = jupytext.read(NOTEBOOKS / f"{name}.py")
    generated = jupytext.read(NOTEBOOKS / f"{name}.ipynb")
    assert _cells(generated) == _cells(source), (
        f"notebooks/{name}.ipynb is out of date: run `jupytext --to ipynb notebooks/{name}.py`"
    )
    # the round trip .py -> .ipynb -> .py gives the source back; the kernelspec is left out of
    # the text header because YAML cannot dump nbformat's dict type once anomalib is imported
    generated.metadata.pop("kernelspec", None)
    text = jupytext.writes(generated, fmt="py:percent")
    assert _cells(jupytext.reads(text, fmt="py:percent")) == _cells(source)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    """Two methods x k in {1, 2} x two seeds on two synthetic categories, a few steps each."""
    import adbench

    work = tmp_path_factory.mktemp("notebook_results")
    sweep = {
        "name": "notebooks",
        "methods": [{"name": "mddnet"}, {"name": "anomalib.padim"}],
        "preset": "tiny",
        "datasets": [
            {
                "format": "synthetic",
                "root": str(work / "synthetic"),
                "synthetic": {
                    "n_categories": 2,
                    "image_size": 64,
                    "n_train": 8,
                    "n_test": 6,
                    "seed": 0,
                },
            }
        ],
        "categories": [1, 2],
        "seeds": [0, 1],
        "image_size": 64,
        "trainer": {"max_steps": 2, "accelerator": "cpu", "devices": 1},
        "checkpoints": False,
        "launcher": {"name": "local"},
    }
    report = adbench.run_sweep(sweep, work / "results", progress=False, report=False)
    assert not report.failed, report.summary()
    return report.out


def _execute(name: str) -> list:
    """Run notebook ``name`` top to bottom in a fresh kernel; return every cell output."""
    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.get("output_type") == "error"]
    if name in FIGURES:
        assert any("image/png" in output.get("data", {}) for output in outputs), "no figure shown"
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, results_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ADBENCH_RESULTS", str(results_dir))
    monkeypatch.setenv("ADBENCH_WORK", str(tmp_path))
    monkeypatch.setenv("ADBENCH_STEPS", "2")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the notebooks choose the inline backend
    _execute(name)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "shipped"),
    [("leaderboard_analysis", "quickstart_results"), ("category_scaling", "scaling_results")],
)
def test_analysis_notebook_opens_the_shipped_results(name, shipped, monkeypatch):
    """Without ADBENCH_RESULTS the analysis notebooks read the shipped results: the quickstart
    (one seed, every registered method) and the category-scaling study (k = 4..64, 3 seeds)."""
    monkeypatch.delenv("ADBENCH_RESULTS", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    outputs = _execute(name)
    printed = "".join(output.get("text", "") for output in outputs)
    assert f"examples/{shipped}" in printed
