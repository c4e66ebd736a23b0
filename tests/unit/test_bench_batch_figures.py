"""bench batch: media minutes, per-input answers and their comparison across worker counts."""
from __future__ import annotations

from avsync.bench import batch as B


def _row(name, off, conf, dur, status="ok"):
    rep = {"offset_ms": off, "confidence": conf, "media": {"duration_s": dur}} if status == "ok" else None
    return {"input": f"/tmp/x/{name}", "status": status, "report": rep}


def test_media_minutes_skip_error_rows():
    rows = [_row("a.mkv", 10.0, 0.9, 30.0), _row("b.mkv", 0, 0, 90.0), _row("bad.mp4", None, None, None, "error")]
    assert B._media_minutes(rows) == 2.0


def test_identical_and_differing_answers():
    one = B._answers([_row("a.mkv", 10.0, 0.9, 3.0), _row("bad.mp4", None, None, None, "error")])
    two = B._answers([_row("bad.mp4", None, None, None, "error"), _row("a.mkv", 10.0, 0.9, 3.0)])
    assert B._compare(one, two).startswith("identical for all 2 inputs")
    three = B._answers([_row("a.mkv", 10.5, 0.9, 3.0), _row("bad.mp4", None, None, None, "error")])
    assert B._compare(one, three) == "1 of 2 inputs differ: a.mkv"
    assert B._compare(one, {}).startswith("2 of 2 inputs differ")
