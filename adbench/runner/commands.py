"""``adbench run``, ``adbench leaderboard``, ``adbench plot scaling`` and ``adbench plot ranks``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _run(args: argparse.Namespace) -> int:
    from adbench.config import parse_set
    from adbench.runner import dry_run, run_sweep

    overrides = parse_set(args.set or [])
    out = Path(args.out) if args.out else Path("runs") / Path(args.sweep).stem
    if args.dry_run:
        print(dry_run(args.sweep, out, overrides, args.plugin or ()))
        return 0
    report = run_sweep(
        args.sweep,
        out,
        overrides=overrides,
        plugins=args.plugin or (),
        fail_fast=args.fail_fast,
        progress=not args.no_progress,
        verbose=args.verbose,
        report=not args.no_report,
    )
    print(report.summary())
    for path in report.files:
        if path.name == "leaderboard.md":
            print("\n" + path.read_text())
    plots = [str(p) for p in report.files if p.name != "leaderboard.md"]
    if plots:
        print("scaling plots: " + ", ".join(plots))
    return 1 if report.failed else 0


def _leaderboard(args: argparse.Namespace) -> int:
    from adbench.io import write_atomic
    from adbench.runner import leaderboard

    text = leaderboard(
        args.dir,
        fmt=args.format,
        k=args.k,
        per_category=args.per_category,
        digits=args.digits,
        cost=args.cost,
        per_gpu_hour=args.per_gpu_hour,
        reference=args.reference,
        stats=args.stats,
        split_protocols=args.split_protocols,
    )
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _plot_scaling(args: argparse.Namespace) -> int:
    from adbench.runner import plot_scaling

    paths = plot_scaling(
        args.dir,
        metric=args.metric,
        dataset=args.dataset,
        save_dir=args.output_dir,
        formats=args.format,
    )
    print("\n".join(map(str, paths)))
    return 0


def _plot_ranks(args: argparse.Namespace) -> int:
    from adbench.runner.plots import plot_ranks

    paths = plot_ranks(args.dir, metric=args.metric, save_dir=args.output_dir, formats=args.format)
    print("\n".join(map(str, paths)))
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``run``, ``leaderboard`` and ``plot scaling`` to the ``adbench`` parser."""
    p = subparsers.add_parser("run", help="run a sweep (methods x datasets x k x seeds)")
    p.add_argument("sweep", help="sweep YAML, e.g. benchmarks/quickstart.yaml")
    p.add_argument("--out", help="run directory (default: runs/<sweep file name>)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a sweep key, e.g. trainer.max_epochs=1 (repeatable)",
    )
    p.add_argument(
        "--plugin",
        action="append",
        metavar="FILE_OR_MODULE",
        help="import a Python file or module that registers methods (repeatable)",
    )
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their status")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print each cell's log messages (Lightning's, the method's), which "
        "always go to its run.log",
    )
    p.add_argument(
        "--no-report", action="store_true", help="do not write leaderboard.md and the scaling plots"
    )
    p.set_defaults(func=_run)

    p = subparsers.add_parser("leaderboard", help="tables of a run directory (md, latex, csv)")
    p.add_argument("dir", help="run directory of `adbench run`")
    p.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    p.add_argument("--k", type=int, help="category count to tabulate (default: the largest)")
    p.add_argument(
        "--per-category",
        nargs="*",
        default=["I-AUROC", "P-AUROC"],
        metavar="METRIC",
        help="metrics with a per-category breakdown (default: I-AUROC P-AUROC)",
    )
    p.add_argument("--digits", type=int, default=1, help="decimals of the percentages")
    p.add_argument(
        "--cost",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cost columns train h, img/s, peak GB, params M (default: on in md, "
        "off in latex and csv)",
    )
    p.add_argument(
        "--per-gpu-hour",
        nargs="?",
        const="I-AUROC",
        metavar="METRIC",
        help="rank methods by METRIC (default I-AUROC) in %% per GPU-hour of training "
        "(per device-hour for CPU runs) instead of the usual tables",
    )
    p.add_argument("--output", help="write to this file instead of printing")
    p.add_argument(
        "--reference",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="also show the published reference rows (a YAML file or folder; "
        "default: the rows shipped with adbench), marked '(published)', never "
        "ranked",
    )
    p.add_argument(
        "--stats",
        action="store_true",
        help="95%% bootstrap intervals, paired Wilcoxon tests of the leader, the "
        "degradation slope per doubling of k and the average ranks",
    )
    p.add_argument(
        "--split-protocols",
        action="store_true",
        help="rank cells measured under different evaluation protocols (see "
        "protocol.yaml) in separate tables instead of refusing",
    )
    p.set_defaults(func=_leaderboard)

    p = subparsers.add_parser("plot", help="figures of a run directory")
    plots = p.add_subparsers(dest="plot", metavar="PLOT", required=True)
    q = plots.add_parser("scaling", help="metric and cost vs number of categories k")
    q.add_argument("dir", help="run directory of `adbench run`")
    q.add_argument(
        "--metric",
        default="I-AUROC",
        help="a metric (I-AUROC, S-AUROC, ...) or a cost column (train h, img/s, "
        "peak GB, params M)",
    )
    q.add_argument("--dataset", help="only this dataset (default: all)")
    q.add_argument("--output-dir", help="default: DIR/plots")
    q.add_argument("--format", nargs="+", choices=("png", "svg"), default=["png", "svg"])
    q.set_defaults(func=_plot_scaling)
    q = plots.add_parser("ranks", help="critical-difference diagram of the average ranks")
    q.add_argument("dir", help="run directory of `adbench run`")
    q.add_argument("--metric", default="I-AUROC")
    q.add_argument("--output-dir", help="default: DIR/plots")
    q.add_argument("--format", nargs="+", choices=("png", "svg"), default=["png", "svg"])
    q.set_defaults(func=_plot_ranks)
