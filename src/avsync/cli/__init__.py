"""The ``avsync`` command line: a thin layer over :mod:`avsync.api`.

Entry point: :func:`avsync.cli.main.main` (console script ``avsync``, also ``python -m avsync``).
"""
from __future__ import annotations

__all__ = ["main"]


def main(argv=None) -> int:
    from .main import main as _main

    return _main(argv)
