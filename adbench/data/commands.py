"""``adbench data synth|check|prepare``: each subcommand calls one public function."""

from __future__ import annotations

import argparse

from adbench.data.formats import FORMATS


def _synth(args: argparse.Namespace) -> int:
    from adbench.data.formats import make_synthetic

    root = make_synthetic(
        args.root,
        n_categories=args.categories,
        seed=args.seed,
        image_size=args.image_size,
        n_train=args.n_train,
        n_test=args.n_test,
        overwrite=args.overwrite,
    )
    print(f"synthetic dataset: {root} ({args.categories} categories, {args.image_size} px)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from adbench.data.check import check_dataset

    report = check_dataset(
        args.root,
        args.format,
        categories=args.only.split(",") if args.only else None,
        decode=not args.no_decode,
        workers=args.workers,
    )
    print(report)
    return 0 if report.ok else 1


def _prepare(args: argparse.Namespace) -> int:
    from adbench.data.cache import prepare_cache

    result = prepare_cache(
        args.root,
        args.format,
        out=args.out,
        size=args.size,
        workers=args.workers,
        categories=args.only.split(",") if args.only else None,
    )
    print(
        f"cache {result.out}: {result.total} files ({result.written} written, {result.reused} "
        f"kept from an earlier run) in {result.seconds:.1f} s"
    )
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data synth``, ``data check`` and ``data prepare`` to the ``adbench`` parser."""
    data = subparsers.add_parser("data", help="make, validate or cache datasets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("synth", help="write the built-in synthetic dataset (MVTec layout)")
    p.add_argument("root", help="output folder")
    p.add_argument("--categories", type=int, default=8, help="number of categories (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--n-train", type=int, default=20, help="training images per category")
    p.add_argument("--n-test", type=int, default=20, help="test images per category")
    p.add_argument("--overwrite", action="store_true", help="replace a synthetic set at ROOT")
    p.set_defaults(func=_synth)

    formats = ", ".join(sorted(FORMATS))  # checked by load_index, which suggests the closest
    p = sub.add_parser("check", help="validate a dataset root and summarise it per category")
    p.add_argument("root")
    p.add_argument("--format", required=True, help=f"dataset format: {formats}")
    p.add_argument("--only", help="comma-separated categories to check (default: all)")
    p.add_argument("--no-decode", action="store_true", help="skip decoding every file")
    p.add_argument("--workers", type=int, default=4, help="decoding threads")
    p.set_defaults(func=_check)

    p = sub.add_parser("prepare", help="build (or resume) a resized cache of a huge dataset")
    p.add_argument("root")
    p.add_argument("--format", required=True, help=f"dataset format: {formats}")
    p.add_argument("--out", help="cache folder (default: <root>_adbench_cache/<size>px)")
    p.add_argument("--size", type=int, default=256, help="cached image side (default 256)")
    p.add_argument("--workers", type=int, help="worker processes (default: all CPUs)")
    p.add_argument("--only", help="comma-separated categories to cache (default: all)")
    p.set_defaults(func=_prepare)
