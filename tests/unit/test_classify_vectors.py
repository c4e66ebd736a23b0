"""Per-second cues relative to the file: a section whose offset differs from the rest stands out."""
from __future__ import annotations

import numpy as np

from avsync.classify import vectors
from avsync.classify.vectors import EVENT_NAMES, RICH_NAMES

#: the names up to the short-window cues (the columns _relative and _short see)
BASE = RICH_NAMES[: len(RICH_NAMES) - len(EVENT_NAMES)]


def _X(offsets_s, conf=0.5, silent=()):
    X = np.zeros((len(offsets_s), len(BASE) - 12), np.float32)
    col = {n: i for i, n in enumerate(RICH_NAMES)}
    X[:, col["core_ok"]] = 1.0
    X[:, col["core_offset"]] = offsets_s
    X[:, col["core_conf"]] = conf
    X[:, col["level_db"]] = -20.0
    for i in silent:
        X[i, col["zero_frac"]] = 1.0
        X[i, col["core_ok"]] = 0.0
    return X


def test_relative_offset_marks_the_odd_section():
    off = [0.04, 0.04, 0.05, -0.36, -0.36, -0.36, 0.04, 0.03]
    rel = vectors._relative(_X(off))
    names = BASE[-12:-7]
    r = dict(zip(names, rel.T))
    assert np.all(r["core_rel_abs"][3:6] > 0.35) and np.all(r["core_rel_abs"][[0, 1, 2, 6, 7]] < 0.02)
    assert np.allclose(r["core_rel_x_conf"], r["core_rel_abs"] * 0.5)


def test_short_window_cues():
    off = np.array([40, 40, 50, np.nan, -360, -350, 40, 30], np.float32)
    arr = {"core_short_offset_ms": off, "core_short_conf": np.full(8, 0.6, np.float32)}
    X = _X(np.zeros(8), silent=(3,))
    S = vectors._short(arr, X)
    r = dict(zip(BASE[-7:], S.T))
    assert r["short_ok"].tolist() == [1, 1, 1, 0, 1, 1, 1, 1]
    assert np.all(r["short_rel_abs"][[4, 5]] > 0.35) and np.all(r["short_rel_abs"][[0, 1, 2, 6, 7]] < 0.02)
    assert r["short_offset"][4] == np.float32(-0.36)
    # files written before the short window existed: zeros
    assert not vectors._short({}, X).any()
