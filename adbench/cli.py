"""The ``adbench`` command: an argparse front end; each subcommand calls one public function."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from adbench.errors import ConfigError

# Areas that contribute subcommands through ``add_commands(subparsers)``.
COMMAND_MODULES = ("adbench.data.commands", "adbench.runner.commands", "adbench.reproduce.commands")


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


def _positive(option: str, value: int | None) -> int | None:
    """``value`` unless it is given and < 1 (an error naming the option)."""
    if value is not None and value < 1:
        raise ConfigError(f"{option} must be >= 1, got {value}")
    return value


def _fit(args: argparse.Namespace) -> int:
    import yaml

    from adbench.config import parse_set
    from adbench.data import CategorySubset, load_index
    from adbench.experiment import resolve, run_experiment
    from adbench.io import write_atomic

    fmt, sep, root = args.data.partition(":")
    if not sep:
        raise ConfigError(
            f"--data expects FORMAT:ROOT (e.g. synthetic:data/synthetic), got {args.data!r}"
        )
    categories = args.categories.split(",") if args.categories else None
    index = load_index(fmt, root, categories=categories)
    if args.k:
        index = CategorySubset(args.k, seed=args.subset_seed).apply(index)
    settings = {
        "max_epochs": _positive("--max-epochs", args.max_epochs),
        "max_steps": _positive("--max-steps", args.max_steps),
        "image_size": _positive("--image-size", args.image_size),
        "batch_size": _positive("--batch-size", args.batch_size),
        "accelerator": args.accelerator,
        "devices": args.devices,
    }
    experiment = resolve(
        args.method,
        index,
        preset=args.preset,
        files=args.config or (),
        settings=settings,
        overrides=parse_set(args.set or []),
        random_weights=args.random_weights,
        seed=args.seed,
        protocol=args.protocol,
        evaluation=args.mode,
        aupro_fpr_limit=args.aupro_fpr_limit,
    )
    out = Path(args.out)
    record = {
        **experiment.to_record(),
        "dataset": {"format": fmt, "root": root},
        "k": len(index.categories),
    }
    write_atomic(out / "config.yaml", yaml.safe_dump(record, sort_keys=False))
    frame = run_experiment(experiment, out, num_workers=args.workers).table.to_frame()
    print((frame * 100).round(1).to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``adbench`` argument parser (every area's subcommands included)."""
    from adbench import __version__
    from adbench.protocols import AUPRO_FPR_LIMIT, DEFAULT_PROTOCOL, EVALUATION_MODES, PROTOCOLS

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
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="mechanics mode: the full architecture with random weights, no download",
    )
    p.add_argument(
        "--protocol",
        default=DEFAULT_PROTOCOL,
        help=f"evaluation protocol: {', '.join(PROTOCOLS)} (default {DEFAULT_PROTOCOL}; "
        "see docs/reproduce.md)",
    )
    p.add_argument("--mode", choices=EVALUATION_MODES, help="metric mode (default: the protocol's)")
    p.add_argument(
        "--aupro-fpr-limit",
        type=float,
        help=f"upper FPR limit of AUPRO (default: the protocol's, {AUPRO_FPR_LIMIT} for MVTec "
        "AD; MVTec AD 2 uses 0.05)",
    )
    p.add_argument(
        "--out", default="runs/fit", help="run folder (config, logs, checkpoint, metrics)"
    )
    p.set_defaults(func=_fit)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def _interrupted() -> int:
    """Ctrl-C (SIGINT): one line, exit code 130 (128 + SIGINT), as shells report it."""
    print("adbench: interrupted", file=sys.stderr)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adbench`` console script."""
    from adbench.errors import AdbenchError
    from adbench.quiet import quiet_third_party, show_messages

    os.environ.setdefault("MPLBACKEND", "Agg")
    quiet_third_party()
    show_messages()
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
    except KeyboardInterrupt:
        return _interrupted()
    except SystemExit as exit_:  # Lightning turns Ctrl-C during fit/predict into sys.exit(1)
        if isinstance(exit_.__context__, KeyboardInterrupt):
            return _interrupted()
        raise
    except OSError as err:  # a full disk or quota is the machine's state, not a bug: no traceback
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"adbench: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
