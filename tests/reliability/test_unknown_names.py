"""Unknown names anywhere in the CLI: exit code 2, one line naming the name, a suggestion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from reliability_helpers import TOY, run_cli, toy_sweep


class Paths(NamedTuple):
    """Where a case's command points: the dataset, a finished run, a scratch folder."""

    root: Path
    run: Path
    tmp: Path

    @property
    def category(self) -> str:
        """The first category of the dataset."""
        return sorted(d.name for d in self.root.iterdir() if d.is_dir())[0]

    def sweep(self, **changes: Any) -> str:
        """Write `toy_sweep` with ``changes`` and return its path."""
        path = self.tmp / "sweep.yaml"
        path.write_text(yaml.safe_dump(toy_sweep(self.root, **changes)))
        return str(path)

    def run_command(self, *extra: str, **changes: Any) -> list[str]:
        """``adbench run`` of the toy sweep with ``changes`` into a fresh ``out``."""
        return [
            "run",
            self.sweep(**changes),
            "--out",
            str(self.tmp / "out"),
            "--plugin",
            TOY,
            *extra,
        ]


class Case(NamedTuple):
    """One unknown name: what the user types, what the error must say and suggest."""

    kind: str
    shows: str  # the command, as the reliability table shows it
    argv: Callable[[Paths], list[str]]
    says: str  # the start of the error, e.g. "unknown method"
    typed: str  # the unknown name (may be "{typo}")
    suggestion: str  # the name suggested (may be "{category}")


CASES: list[Case] = [
    Case(
        "method",
        "adbench fit gald --data synthetic:ROOT",
        lambda p: ["fit", "gald", "--data", f"synthetic:{p.root}"],
        "unknown method",
        "gald",
        "glad",
    ),
    Case(
        "preset",
        "adbench fit mddnet --preset tinyy ...",
        lambda p: ["fit", "mddnet", "--preset", "tinyy", "--data", f"synthetic:{p.root}"],
        "unknown preset",
        "tinyy",
        "tiny",
    ),
    Case(
        "dataset format (fit)",
        "adbench fit glad --data synthetc:ROOT",
        lambda p: ["fit", "glad", "--data", f"synthetc:{p.root}"],
        "unknown dataset format",
        "synthetc",
        "synthetic",
    ),
    Case(
        "dataset format (data check)",
        "adbench data check ROOT --format mvtecc",
        lambda p: ["data", "check", str(p.root), "--format", "mvtecc"],
        "unknown dataset format",
        "mvtecc",
        "mvtec",
    ),
    Case(
        "dataset format (data prepare)",
        "adbench data prepare ROOT --format realiad_",
        lambda p: [
            "data",
            "prepare",
            str(p.root),
            "--format",
            "realiad_",
            "--out",
            str(p.tmp / "c"),
        ],
        "unknown dataset format",
        "realiad_",
        "realiad",
    ),
    Case(
        "config key",
        "adbench fit mddnet --set optim.lrr=1 ...",
        lambda p: [
            "fit",
            "mddnet",
            "--preset",
            "tiny",
            "--set",
            "optim.lrr=1",
            "--data",
            f"synthetic:{p.root}",
        ],
        "unknown key",
        "optim.lrr",
        "optim.lr",
    ),
    Case(
        "category",
        "adbench fit mddnet --categories bottl ...",
        lambda p: [
            "fit",
            "mddnet",
            "--preset",
            "tiny",
            "--categories",
            p.category[:-1],
            "--data",
            f"synthetic:{p.root}",
        ],
        "unknown category",
        "{typo}",
        "{category}",
    ),
    Case(
        "sweep key (file)",
        "sweep file with trainer: {max_step: 2}",
        lambda p: p.run_command(trainer={"max_step": 2}),
        "unknown key",
        "trainer.max_step",
        "trainer.max_steps",
    ),
    Case(
        "sweep key (--set)",
        "adbench run SWEEP --set seedz=[1]",
        lambda p: p.run_command("--set", "seedz=[1]"),
        "unknown key",
        "seedz",
        "seeds",
    ),
    Case(
        "sweep method",
        "sweep file with methods: [{name: toyy}]",
        lambda p: p.run_command(methods=[{"name": "toyy"}]),
        "unknown method",
        "toyy",
        "toy",
    ),
    Case(
        "sweep dataset format",
        "sweep file with datasets: [{format: synthetik, ...}]",
        lambda p: p.run_command(datasets=[{"format": "synthetik", "root": str(p.root)}]),
        "unknown dataset format",
        "synthetik",
        "synthetic",
    ),
    Case(
        "launcher",
        "sweep file with launcher: {name: locall}",
        lambda p: p.run_command(launcher={"name": "locall"}),
        "unknown launcher",
        "locall",
        "local",
    ),
    Case(
        "metric (leaderboard)",
        "adbench leaderboard DIR --per-category I-AUROCC",
        lambda p: ["leaderboard", str(p.run), "--per-category", "I-AUROCC"],
        "unknown metric",
        "I-AUROCC",
        "I-AUROC",
    ),
    Case(
        "metric (plot)",
        "adbench plot scaling DIR --metric P-AUROCC",
        lambda p: [
            "plot",
            "scaling",
            str(p.run),
            "--metric",
            "P-AUROCC",
            "--output-dir",
            str(p.tmp / "plots"),
        ],
        "unknown metric",
        "P-AUROCC",
        "P-AUROC",
    ),
    Case(
        "metric (cost ranking)",
        "adbench leaderboard DIR --per-gpu-hour I-AUROCC",
        lambda p: ["leaderboard", str(p.run), "--per-gpu-hour", "I-AUROCC"],
        "unknown metric",
        "I-AUROCC",
        "I-AUROC",
    ),
    Case(
        "dataset (plot)",
        "adbench plot scaling DIR --dataset synthetik",
        lambda p: [
            "plot",
            "scaling",
            str(p.run),
            "--dataset",
            "synthetik",
            "--output-dir",
            str(p.tmp / "plots"),
        ],
        "unknown dataset",
        "synthetik",
        "synthetic",
    ),
    Case(
        "view pooling",
        "sweep file with view_pooling: maxx",
        lambda p: p.run_command(view_pooling="maxx"),
        "unknown view pooling",
        "maxx",
        "max",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_unknown_name_is_one_clear_line(
    case: Case,
    small_root: Path,
    finished_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    plugins,
) -> None:
    paths = Paths(small_root, finished_run, tmp_path)
    code, _, err = run_cli(capsys, *case.argv(paths))
    assert code == 2 and err.startswith("adbench: error: ") and err.count("\n") == 1
    values = {"typo": paths.category[:-1], "category": paths.category}
    assert case.says in err and f"'{case.typed.format(**values)}'" in err
    assert f"did you mean '{case.suggestion.format(**values)}'?" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "plots").exists()
