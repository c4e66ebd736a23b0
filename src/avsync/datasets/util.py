"""Small helpers shared by the dataset and classifier tools."""
from __future__ import annotations

import csv
import os
import tempfile

from ..errors import UsageError


def atomic_csv(dst: str, header: list[str], rows: list[list]) -> None:
    """Write a CSV to a temporary name next to ``dst``, then rename it."""
    folder = os.path.dirname(os.path.abspath(dst))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=folder)
    except OSError as exc:
        raise UsageError(f"{dst}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(dst: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def count_progress(label: str, enabled: bool):
    """``progress(done, total)`` drawing ``label done/total`` on stderr."""
    import sys

    def cb(done: int, total: int) -> None:
        if not enabled:
            return
        try:
            sys.stderr.write(f"\r{label} {done}/{total}")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    return cb
