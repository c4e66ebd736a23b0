"""What the benchmarks know about the clips they score: each clip's own base offset
(``TRUTH.csv`` beside the clips) and the leave-speaker-out folds (``clip,fold,exclude``)."""
from __future__ import annotations

import csv
import os

TRUTH_NAME = "TRUTH.csv"
KNOWN_STATUSES = ("published", "audited", "corpus")


def read_truth(csv_path: str) -> dict[str, tuple[float | None, str]]:
    """``TRUTH.csv`` as {absolute clip path: (base offset ms or None, status)}."""
    from ..errors import UsageError

    folder = os.path.dirname(os.path.abspath(csv_path))
    out = {}
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                status = (row.get("status") or "").strip()
                value = (row.get("base_offset_ms") or "").strip()
                base = float(value) if status in KNOWN_STATUSES and value else None
                out[os.path.normpath(os.path.join(folder, row["file"]))] = (base, status or "unknown")
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"{csv_path}: not a readable truth table ({exc})") from None
    return out


def truth_for(clips, truth_csv: str | None = None) -> dict[str, tuple[float | None, str]]:
    """Each clip's (base, status): from ``truth_csv`` when given, else from the nearest
    ``TRUTH.csv`` in the clip's folder or above it (two levels); ``(None, "none")`` without one."""
    tables: dict[str, dict] = {}
    out = {}
    for _, p in clips:
        ap = os.path.normpath(os.path.abspath(p))
        candidates = [truth_csv] if truth_csv else [
            os.path.join(os.path.dirname(ap), *([".."] * up), TRUTH_NAME) for up in range(3)]
        found = (None, "none")
        for c in candidates:
            c = os.path.normpath(c)
            if not os.path.isfile(c):
                continue
            if c not in tables:
                tables[c] = read_truth(c)
            if ap in tables[c]:
                found = tables[c][ap]
                break
        out[p] = found
    return out


def read_folds(path: str) -> dict[int, tuple[set[str], tuple[str, ...]]]:
    """A folds CSV (``clip,fold,exclude``) as {fold: (clip names, training prefixes to leave out)}."""
    from ..errors import UsageError

    out: dict[int, tuple[set[str], set[str]]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                k = int(row["fold"])
                names, ex = out.setdefault(k, (set(), set()))
                names.add(row["clip"].strip())
                ex.update((row.get("exclude") or "").split())
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"{path}: not a folds table ({exc})") from None
    return {k: (n, tuple(sorted(e))) for k, (n, e) in out.items()}


def fold_path(out: str, fold: int) -> str:
    root, ext = os.path.splitext(out)
    return f"{root}_fold{fold}{ext or '.json'}"
