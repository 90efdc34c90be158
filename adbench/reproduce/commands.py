"""The ``adbench reproduce`` command."""

from __future__ import annotations

import argparse
from typing import Any


def _reproduce(args: argparse.Namespace) -> int:
    from adbench.reproduce import reproduce

    trainer = {
        key: value
        for key, value in (
            ("accelerator", args.accelerator),
            ("devices", args.devices),
            ("precision", args.precision),
        )
        if value is not None
    }
    out = args.out or f"runs/reproduce-{args.method}"
    done = reproduce(
        args.method,
        args.data,
        out,
        seeds=args.seeds,
        random_weights=args.random_weights,
        trainer=trainer,
        progress=not args.no_progress,
    )
    print(done.markdown)
    print(f"written: {', '.join(str(f) for f in done.files)}")
    return 0


def _protocols(args: argparse.Namespace) -> int:
    from adbench.protocols import PROTOCOLS, get_protocol
    from adbench.protocols.table import protocols_markdown

    if not args.name:
        print(protocols_markdown(list(PROTOCOLS.values())))
        return 0
    protocol = get_protocol(args.name)
    print(f"{protocol.name}: {protocol.summary}")
    for rule, source in protocol.sources.items():
        print(f"  {rule}: {source}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``reproduce`` and ``protocols`` to the ``adbench`` parser."""
    from adbench.reproduce.plans import PLANS

    p = subparsers.add_parser("protocols", help="the evaluation protocols and their sources")
    p.add_argument("name", nargs="?", help="one protocol: its summary and the official lines")
    p.set_defaults(func=_protocols)

    p = subparsers.add_parser(
        "reproduce",
        help="run a paper preset under the paper's protocol and compare with its table",
    )
    p.add_argument("method", help=f"one of {', '.join(sorted(PLANS))}")
    p.add_argument("--data", required=True, help="FORMAT:ROOT, e.g. mvtec:/data/mvtec_ad")
    p.add_argument("--out", help="run directory (default: runs/reproduce-METHOD); resumable")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="mechanics mode: reduced size, a two-step budget, random weights (CPU, seconds)",
    )
    p.add_argument("--accelerator", help="Lightning accelerator (default: auto)")
    p.add_argument("--devices", help="Lightning devices (default: auto)")
    p.add_argument("--precision", help="Trainer precision (default: the preset's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_reproduce)
