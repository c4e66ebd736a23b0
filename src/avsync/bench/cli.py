"""`avsync bench ...` sub-commands (registered by avsync.cli.main)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``bench`` command to the top-level parser's subparsers."""
    p = subparsers.add_parser("bench", help="accuracy and speed benchmarks on real clips")
    sub = p.add_subparsers(dest="bench_command", required=True)
    s = sub.add_parser("shift", help="shift benchmark (benchmarks.md 1-2) over folders of real clips")
    s.add_argument("dirs", nargs="+", metavar="MEDIA_DIR")
    s.add_argument("--method", default="auto")
    s.add_argument("--out", help="write every measurement as JSON Lines here")
    s.set_defaults(func=run_shift)


def run_shift(args: argparse.Namespace) -> int:
    from .shift import main

    return main(args)
