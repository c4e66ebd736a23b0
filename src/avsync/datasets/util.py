"""Small helpers shared by the dataset and classifier tools."""
from __future__ import annotations

import csv
import os
from contextlib import contextmanager

from ..errors import UsageError
from ..media.base import atomic_output
from ..progress import CountLine


@contextmanager
def atomic_file(dst: str, mode: str = "wb", suffix: str = "", **kw):
    """Open a temporary file next to ``dst`` for writing; on success it is renamed to ``dst``,
    on any error it is removed, so a half-written file never looks complete."""
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with atomic_output(dst, suffix=suffix) as tmp, open(tmp, mode, **kw) as fh:
        yield fh


def atomic_csv(dst: str, header: list[str], rows: list[list]) -> None:
    """Write a CSV to a temporary name next to ``dst``, then rename it."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{dst}: cannot write ({exc.strerror or exc})") from None
    try:
        with atomic_file(dst, "w", suffix=".csv", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
    except OSError as exc:
        raise UsageError(f"{dst}: cannot write ({exc.strerror or exc})") from None


def atomic_write_bytes(dst: str, data: bytes) -> None:
    with atomic_file(dst, "wb") as fh:
        fh.write(data)


def count_progress(label: str, enabled: bool) -> CountLine:
    """A progress callback (:mod:`avsync.progress`) drawing ``label done/total`` on stderr."""
    return CountLine(label, enabled)
