"""The ``adbench`` command: an argparse front end; each subcommand calls one public function."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Areas that contribute subcommands through ``add_commands(subparsers)``.
COMMAND_MODULES = ("adbench.data.commands", "adbench.runner.commands")


def _list(args: argparse.Namespace) -> int:
    from adbench.data import FORMATS
    from adbench.registry import get_method_spec, list_methods

    print("methods:")
    for name in list_methods():
        try:
            spec = get_method_spec(name)
        except Exception as err:  # show a broken plugin by name instead of hiding every method
            print(f"  {name:<28} (cannot be loaded: {err})")
            continue
        presets = ", ".join(spec.presets) or "-"
        print(f"  {name:<28} presets: {presets:<20} {spec.paper}")
    print("dataset formats:")
    for name in sorted(FORMATS):
        print(f"  {name}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from adbench.config import fill_num_classes, merge, parse_set, to_yaml, unflatten
    from adbench.data import CategorySubset, load_index
    from adbench.experiment import (
        Experiment,
        check_positive,
        run_experiment,
        split_trainer_settings,
    )
    from adbench.io import write_atomic
    from adbench.registry import get_method_spec, resolve_config

    fmt, sep, root = args.data.partition(":")
    if not sep:
        raise SystemExit(
            f"--data expects FORMAT:ROOT (e.g. synthetic:data/synthetic), got {args.data!r}"
        )
    categories = args.categories.split(",") if args.categories else None
    index = load_index(fmt, root, categories=categories)
    if args.k:
        index = CategorySubset(args.k, seed=args.subset_seed).apply(index)
    budget = {"max_epochs": check_positive("--max-epochs", args.max_epochs),
              "max_steps": check_positive("--max-steps", args.max_steps),
              "accelerator": args.accelerator, "devices": args.devices}
    overrides, trainer = split_trainer_settings(budget, get_method_spec(args.method).config)
    for key, value in (("data.image_size", check_positive("--image-size", args.image_size)),
                       ("data.batch_size", check_positive("--batch-size", args.batch_size))):
        if value is not None:
            overrides[key] = value
    if args.random_weights:
        overrides["random_weights"] = True
    overrides = merge(unflatten(overrides), parse_set(args.set or []))
    config = resolve_config(args.method, args.preset, overrides, files=tuple(args.config or ()))
    config = fill_num_classes(config, len(index.categories))
    out = Path(args.out)
    write_atomic(out / "config.yaml", to_yaml(config))
    experiment = Experiment(args.method, config, index, seed=args.seed,
                            image_size=config.data.image_size, batch_size=config.data.batch_size,
                            trainer=trainer, evaluation=args.mode,
                            aupro_fpr_limit=args.aupro_fpr_limit)
    frame = run_experiment(experiment, out, num_workers=args.workers).table.to_frame()
    write_atomic(out / "metrics.csv", frame.to_csv())
    print((frame * 100).round(1).to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``adbench`` argument parser (every area's subcommands included)."""
    from adbench import __version__

    parser = argparse.ArgumentParser(
        prog="adbench",
        description="Benchmark multi-class unsupervised visual anomaly detection.",
    )
    parser.add_argument("--version", action="version", version=f"adbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="methods (with presets and papers) and dataset formats")
    p.set_defaults(func=_list)

    p = sub.add_parser("fit", help="train one method on one dataset, then evaluate it")
    p.add_argument("method", help="registered method name (see `adbench list`)")
    p.add_argument("--data", required=True, help="FORMAT:ROOT, e.g. synthetic:data/synthetic")
    p.add_argument("--preset", default="paper", help="preset name (default: paper)")
    p.add_argument("--config", action="append", help="YAML file applied after the preset")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-4"
    )
    p.add_argument("--categories", help="comma-separated category names (default: all)")
    p.add_argument("--k", type=int, help="use a seeded subset of k categories")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--image-size", type=int, help="default: the method's data.image_size")
    p.add_argument("--batch-size", type=int, help="default: the method's data.batch_size")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-weights", action="store_true",
                   help="mechanics mode: the full architecture with random weights, no download")
    p.add_argument("--mode", choices=("streaming", "exact"), default="streaming")
    p.add_argument("--aupro-fpr-limit", type=float, default=0.3,
                   help="upper FPR limit of AUPRO (default 0.3, MVTec AD; MVTec AD 2 uses 0.05)")
    p.add_argument(
        "--out", default="runs/fit", help="run folder (config, logs, checkpoint, metrics)"
    )
    p.set_defaults(func=_fit)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adbench`` console script."""
    from adbench.errors import AdbenchError
    from adbench.quiet import quiet_third_party

    os.environ.setdefault("MPLBACKEND", "Agg")
    quiet_third_party()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except AdbenchError as err:
        print(f"adbench: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or quota is the machine's state, not a bug: no traceback
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"adbench: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
