"""``adbench reproduce``: a paper preset under the paper's protocol, compared with its table.

`reproduce` runs the method's plan (`adbench.reproduce.plans`) as a sweep into ``out`` (so a
re-run resumes and finished seeds are kept), then writes ``reproduction.md`` and
``reproduction.csv``: measured vs published per metric with the seed spread, the protocol card,
and every setting that was not the paper's. With ``random_weights`` it runs the mechanics mode
(reduced size, a two-step budget, no weights needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from adbench.errors import ConfigError
from adbench.io import write_atomic
from adbench.reproduce.plans import PLANS, Reproduction, check_format, get_plan
from adbench.reproduce.report import comparison, config_changes, deviations, markdown

REPORT_MD = "reproduction.md"
REPORT_CSV = "reproduction.csv"

__all__ = ["PLANS", "REPORT_CSV", "REPORT_MD", "Reproduced", "reproduce"]


@dataclass(frozen=True)
class Reproduced:
    """What `reproduce` wrote.

    Attributes:
        table: one row per metric (`adbench.reproduce.report.REPORT_COLUMNS`), values in %.
        markdown: the report page.
        files: ``reproduction.md`` and ``reproduction.csv``.
    """

    table: pd.DataFrame
    markdown: str
    files: tuple[Path, ...]


def reproduce(
    method: str,
    data: str,
    out: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    random_weights: bool = False,
    trainer: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Reproduced:
    """Run ``method``'s reproduction plan on ``data`` (``FORMAT:ROOT``) into ``out``.

    Args:
        method: a method with a plan (`adbench.reproduce.PLANS`).
        data: ``FORMAT:ROOT`` of the dataset (all its categories, as the papers).
        out: the run directory (resumable).
        seeds: the seeds to run (their spread is reported).
        random_weights: the mechanics mode (reduced size, a tiny budget, random weights).
        trainer: further Trainer settings (``accelerator``, ``devices``, ``precision`` ...).
        progress: show the progress bar.
    """
    from adbench.registry import get_method_spec
    from adbench.runner import run_sweep

    plan = get_plan(method)
    data_format, sep, root = data.partition(":")
    if not sep or not root:
        raise ConfigError(f"--data expects FORMAT:ROOT (e.g. mvtec:/data/mvtec), got {data!r}")
    preset = check_format(plan, data_format, get_method_spec(method).presets)
    sweep = {
        "name": f"reproduce {method}",
        "methods": [
            {
                "name": method,
                "preset": preset,
                "label": plan.published,
                "set": dict(plan.mechanics) if random_weights else {},
                "random_weights": random_weights,
            }
        ],
        "datasets": [{"format": data_format, "root": root}],
        "seeds": list(seeds),
        "protocol": plan.protocol,
        "checkpoints": False,
        "trainer": {**(dict(plan.mechanics_trainer) if random_weights else {}), **(trainer or {})},
    }
    report = run_sweep(sweep, out, progress=progress, report=False)
    results = _finished_results(Path(out), [c.id for c in report.cells])
    return write_report(plan, preset, results, Path(out))


def write_report(
    plan: Reproduction, preset: str, results: Sequence[Mapping[str, Any]], out: Path
) -> Reproduced:
    """Compare ``results`` (``result.json`` contents, one per seed) with the published row."""
    from adbench.config import to_dict
    from adbench.experiment import layer_config

    if not results:
        raise ConfigError(
            f"no finished cell in {out}: nothing to report (see the cells' error.json)"
        )
    first = results[0]
    published_row = published(plan, first["dataset"], int(first["k"]))
    paper_config = to_dict(layer_config(plan.method, preset=preset)[0])
    used_config = _cell_config(out, first)
    changes = config_changes(_without_counts(paper_config), _without_counts(used_config))
    table = comparison(results, {} if published_row is None else published_row["metrics"])
    page = markdown(
        plan, preset, table, deviations(plan, results, changes, published_row), published_row
    )
    files = (out / REPORT_MD, out / REPORT_CSV)
    write_atomic(files[0], page)
    write_atomic(files[1], table.to_csv(index=False))
    return Reproduced(table, page, files)


def published(plan: Reproduction, dataset: str, k: int) -> dict[str, Any] | None:
    """The published row of ``plan`` on ``dataset`` under its protocol: same k, else the largest."""
    from adbench.runner.reference import load_reference

    rows = load_reference()
    rows = rows[
        (rows["method"] == plan.published)
        & (rows["dataset"] == dataset)
        & (rows["protocol"] == plan.protocol)
    ]
    if rows.empty:
        return None
    chosen_k = k if (rows["k"] == k).any() else int(rows["k"].max())
    chosen = rows[rows["k"] == chosen_k]
    return {
        "k": chosen_k,
        "metrics": {
            m: float(v) * 100 for m, v in zip(chosen["metric"], chosen["value"], strict=True)
        },
        "source": str(chosen["source"].iloc[0]) if "source" in chosen.columns else "",
    }


def _finished_results(out: Path, cell_ids: Sequence[str]) -> list[dict[str, Any]]:
    from adbench.runner import rundir

    found = [rundir.read_result(rundir.cell_dir(out, cell_id)) for cell_id in cell_ids]
    return [r for r in found if r is not None]


def _cell_config(out: Path, result: Mapping[str, Any]) -> dict[str, Any]:
    import yaml

    from adbench.runner import rundir

    record = yaml.safe_load((rundir.cell_dir(out, result["cell_id"]) / "config.yaml").read_text())
    return record["method"]["config"]


def _without_counts(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without values filled from the data (``num_classes``)."""
    return {k: v for k, v in config.items() if k != "num_classes"}
