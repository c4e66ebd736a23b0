"""Offset steps: the timeline cut into pieces of constant offset, or a linear drift.

An edit, an ad insertion or a bad splice makes the offset *jump* at one point; a frame-rate
conform makes it *drift*.  :func:`segment_windows` reads the confident windows of a timeline
(their centres, offsets and confidences) and chooses between three models by penalised cost:

- ``constant``: one offset for the whole file;
- ``steps``: pieces of constant offset separated by change points, found by exact optimal
  partitioning (dynamic programming over the windows, a penalty per change, a minimum piece
  length and a minimum step size);
- ``drift``: one straight line through the offsets (explains a conform better than a staircase).

The windows overlap (a 5-s window every second), so neighbouring residuals are not independent:
the cost is divided by the overlap factor before the penalty (a BIC-like ``log n`` per change)
is applied.  A change point found between two windows is refined, when a ``probe`` is given,
by comparing on short sub-windows how well the two offsets fit (the estimator's lag profile read
at both): the boundary is where the evidence flips.  Each piece is then re-measured on its own
span when a ``measure`` is given (the estimator over the piece: a calibrated confidence).

Only :mod:`avsync.report` is imported: the probes are plain callables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .report import MIN_CONFIDENCE, Change, Segment

#: windows below this confidence take no part (timeline.MIN_CONFIDENCE: they are not judged either)
MIN_WINDOW_CONFIDENCE = MIN_CONFIDENCE
#: fewest confident windows a timeline needs before steps are looked for
MIN_POINTS = 6
#: a step smaller than this many ms (or 3 noise sigmas, whichever is larger) is not a change
MIN_STEP_MS = 20.0
#: BIC-like penalty per change point, in units of log(effective number of windows)
PENALTY_PER_CHANGE = 3.0
#: the noise of window offsets is never taken below this (ms): sub-frame jitter is not a step
MIN_SIGMA_MS = 4.0
#: sub-windows of the boundary refinement: length (s) and hop (s)
REFINE_LEN_S = 2.5
REFINE_HOP_S = 0.25

#: probe(t0, t1) -> (lag_ms, value, kind) or None: the estimator's lag profile over a span
Probe = Callable[[float, float], "tuple[np.ndarray, np.ndarray, str] | None"]
#: measure(t0, t1) -> (offset_ms or None, confidence): the estimator over a span
Measure = Callable[[float, float], "tuple[float | None, float]"]


@dataclass
class Segmentation:
    """The chosen model (``constant`` | ``steps`` | ``drift``), its pieces and change points."""

    model: str
    segments: list[Segment]
    changes: list[Change]
    sigma_ms: float


def _running_median(y: np.ndarray, half: int = 3) -> np.ndarray:
    n = y.size
    return np.array([np.median(y[max(0, i - half): min(n, i + half + 1)]) for i in range(n)])


def _wmedian(y: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(y)
    cw = np.cumsum(w[order])
    return float(y[order][np.searchsorted(cw, 0.5 * cw[-1])])


def _partition(y: np.ndarray, w: np.ndarray, beta: float, min_size: int, scale: float) -> list[int]:
    """Exact optimal partitioning: the start indices of the pieces (first is 0) minimising
    sum(weighted SSR) / scale + beta * changes, every piece at least ``min_size`` points."""
    n = y.size
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwy = np.concatenate([[0.0], np.cumsum(w * y)])
    cwyy = np.concatenate([[0.0], np.cumsum(w * y * y)])
    best = np.full(n + 1, np.inf)
    best[0] = -beta
    back = np.zeros(n + 1, int)
    for j in range(min_size, n + 1):
        i = np.arange(0, j - min_size + 1)
        i = i[np.isfinite(best[i])]
        if i.size == 0:
            continue
        sw = cw[j] - cw[i]
        swy = cwy[j] - cwy[i]
        ssr = (cwyy[j] - cwyy[i]) - swy * swy / sw
        cost = best[i] + np.maximum(ssr, 0.0) / scale + beta
        k = int(np.argmin(cost))
        best[j], back[j] = cost[k], i[k]
    starts, j = [], n
    while j > 0:
        starts.append(int(back[j]))
        j = back[j]
    return sorted(starts)


def _ssr_line(t: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    tm, ym = np.average(t, weights=w), np.average(y, weights=w)
    stt = np.sum(w * (t - tm) ** 2)
    slope = np.sum(w * (t - tm) * (y - ym)) / stt if stt > 0 else 0.0
    return float(np.sum(w * (y - ym - slope * (t - tm)) ** 2))


def _ssr_pieces(y: np.ndarray, w: np.ndarray, starts: list[int]) -> float:
    bounds = list(starts) + [y.size]
    total = 0.0
    for a, b in zip(bounds[:-1], bounds[1:]):
        m = np.average(y[a:b], weights=w[a:b])
        total += float(np.sum(w[a:b] * (y[a:b] - m) ** 2))
    return total


def _merge_small_steps(y: np.ndarray, w: np.ndarray, starts: list[int], min_step: float) -> list[int]:
    """Join neighbouring pieces whose offsets differ by less than ``min_step``, smallest first."""
    starts = list(starts)
    while len(starts) > 1:
        bounds = starts + [y.size]
        levels = [_wmedian(y[a:b], w[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        steps = np.abs(np.diff(levels))
        k = int(np.argmin(steps))
        if steps[k] >= min_step:
            break
        del starts[k + 1]
    return starts


def _refine(probe: Probe, lo: float, hi: float, a_ms: float, b_ms: float) -> tuple[float, float] | None:
    """The boundary between offsets ``a_ms`` (before) and ``b_ms`` (after) in [lo, hi]: where the
    sub-windows' evidence (lag profile at a minus at b, z-scored) flips; and how clean the flip is
    (share of sub-windows on the side they should be).  None when the profiles say nothing."""
    half = REFINE_LEN_S / 2
    centres = np.arange(lo, hi + 1e-9, REFINE_HOP_S)
    cs, score = [], []
    for c in centres:
        got = probe(c - half, c + half)
        if got is None:
            continue
        lag, val, kind = got
        lag, val = np.asarray(lag, float), np.asarray(val, float)
        ok = np.isfinite(lag) & np.isfinite(val)
        if ok.sum() < 5:
            continue
        lag, val = lag[ok], val[ok]
        z = (val - val.mean()) / (val.std() + 1e-9)
        if kind == "distance":
            z = -z
        va, vb = np.interp(a_ms, lag, z), np.interp(b_ms, lag, z)
        cs.append(c)
        score.append(va - vb)
    if len(cs) < 4:
        return None
    cs, s = np.array(cs), np.array(score)
    # gain of a split after sub-window k: evidence for a before it, for b after it
    before = np.cumsum(s)[:-1]
    after = np.sum(s) - before
    gain = before - after
    k = int(np.argmax(gain))
    if gain[k] <= 0:
        return None
    agree = float(np.mean(np.concatenate([s[: k + 1] > 0, s[k + 1:] < 0])))
    return 0.5 * (cs[k] + cs[k + 1]), agree


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def segment_windows(windows, window_s: float | None = None, hop_s: float | None = None,
                    fps: float | None = None, probe: Probe | None = None,
                    measure: Measure | None = None) -> Segmentation | None:
    """Segment a timeline (:class:`avsync.report.Window` list).  None when too few confident
    windows.  ``window_s``/``hop_s`` (default: read from the windows) set the overlap factor and
    the shortest piece; ``fps`` the frame used for the step size floor."""
    all_w = [w for w in windows if w.offset_ms is not None and np.isfinite(w.offset_ms)]
    good = [w for w in all_w if w.confidence >= MIN_WINDOW_CONFIDENCE]
    if len(good) < MIN_POINTS:
        return None
    start = min(w.start_s for w in windows)
    end = max(w.end_s for w in windows)
    if window_s is None:
        window_s = float(np.median([w.end_s - w.start_s for w in windows]))
    if hop_s is None:
        st = np.sort([w.start_s for w in windows])
        d = np.diff(st)
        hop_s = float(np.median(d[d > 0])) if (d > 0).any() else window_s
    overlap = max(1.0, window_s / max(hop_s, 1e-6))
    t = np.array([(w.start_s + w.end_s) / 2 for w in good])
    y = np.array([w.offset_ms for w in good], float)
    c = np.array([w.confidence for w in good], float)
    # isolated wrong peaks (a neighbouring syllable) are not pieces: drop the points far from
    # their neighbourhood's median
    resid = y - _running_median(y)
    mad = 1.4826 * float(np.median(np.abs(resid)))
    keep = np.abs(resid) <= max(5.0 * mad, 3.0 * MIN_SIGMA_MS, 60.0)
    t, y, c = t[keep], y[keep], c[keep]
    n = y.size
    if n < MIN_POINTS:
        return None
    sigma = max(1.4826 * float(np.median(np.abs(y - _running_median(y)))), MIN_SIGMA_MS)
    n_eff = max(2.0, n / overlap)
    beta = PENALTY_PER_CHANGE * math.log(n_eff) + 2.0
    scale = sigma**2 * float(np.mean(c)) * overlap
    min_size = max(3, int(math.ceil(0.8 * window_s / max(hop_s, 1e-6))))
    frame_ms = 1000.0 / (fps or 25.0)
    min_step = max(MIN_STEP_MS, 3.0 * sigma, 0.5 * frame_ms)
    starts = [0]
    if n >= 2 * min_size:
        starts = _partition(y, c, beta, min_size, scale)
        starts = _merge_small_steps(y, c, starts, min_step)
    # the three models by penalised cost (a slope is one parameter: half a change's penalty)
    costs = {"constant": _ssr_pieces(y, c, [0]) / scale}
    if len(starts) > 1:
        costs["steps"] = _ssr_pieces(y, c, starts) / scale + beta * (len(starts) - 1)
    if t[-1] - t[0] >= 2 * window_s:
        costs["drift"] = _ssr_line(t, y, c) / scale + 0.5 * beta
    model = min(costs, key=costs.get)
    if model != "steps":
        starts = [0]

    bounds = starts + [n]
    pieces = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    levels = [_wmedian(y[a:b], c[a:b]) for a, b in pieces]
    # boundaries in time: coarse (between the windows' centres), refined by the probe
    times, flips = [], []
    for k in range(1, len(pieces)):
        i_last, i_first = pieces[k - 1][1] - 1, pieces[k][0]
        coarse = 0.5 * (t[i_last] + t[i_first])
        lo = max(start, t[i_last] - window_s / 2)
        hi = min(end, t[i_first] + window_s / 2)
        got = _refine(probe, lo, hi, levels[k - 1], levels[k]) if probe is not None else None
        times.append(float(got[0] if got else coarse))
        flips.append(got[1] if got else None)
    edges = [start] + times + [end]
    segments: list[Segment] = []
    for k, (a, b) in enumerate(pieces):
        s0, s1 = edges[k], edges[k + 1]
        inside = np.abs(y[a:b] - levels[k]) <= frame_ms
        agree = float(np.average(inside, weights=c[a:b]))
        off, conf = levels[k], float(np.median(c[a:b])) * agree
        if measure is not None and len(pieces) > 1 and s1 - s0 >= 2.0:
            m_off, m_conf = measure(s0 + 0.25, s1 - 0.25)
            # the piece measured as a whole: kept when it agrees with its windows
            if m_off is not None and abs(m_off - levels[k]) <= frame_ms:
                off, conf = float(m_off), max(float(m_conf), conf)
        segments.append(Segment(round(float(s0), 3), round(float(s1), 3), float(off), float(conf), int(b - a)))
    changes: list[Change] = []
    for k in range(1, len(segments)):
        a, b = pieces[k - 1], pieces[k]
        na, nb = (a[1] - a[0]) / overlap, (b[1] - b[0]) / overlap
        step = abs(segments[k].offset_ms - segments[k - 1].offset_ms)
        z = step / (sigma * math.sqrt(1.0 / max(na, 1.0) + 1.0 / max(nb, 1.0)))
        conf = min(segments[k - 1].confidence, segments[k].confidence) * _normal_cdf(z - 3.0)
        if flips[k - 1] is not None:
            conf *= flips[k - 1]
        changes.append(Change(round(float(times[k - 1]), 3), segments[k - 1].offset_ms, segments[k].offset_ms,
                              float(conf)))
    return Segmentation(model, segments, changes, sigma)


#: known frame-rate conforms: (name, the audio's speed relative to the picture it was made for)
CONFORMS = (
    ("1000/1001", 1000 / 1001),  # 24 <-> 23.976, 30 <-> 29.97 fps (NTSC pull-down)
    ("1001/1000", 1001 / 1000),
    ("24->25 fps", 24 / 25),  # PAL speed-up
    ("25->24 fps", 25 / 24),
    ("23.976->25 fps", 24000 / 1001 / 25),
    ("25->23.976 fps", 25 / (24000 / 1001)),
)


def match_conform(ms_per_min: float, r2: float, min_r2: float = 0.6) -> dict | None:
    """The conform a drift of ``ms_per_min`` matches (within 15 %, at least 8 ms/min), or None.

    A conform that plays the audio at ``ratio`` times the speed it was made for makes the
    offset change by (ratio - 1) * 60000 ms per minute (> 0: the audio gets ahead).  The fix
    plays it at ``speed`` = 1 / ratio."""
    if r2 < min_r2 or not math.isfinite(ms_per_min):
        return None
    for name, ratio in CONFORMS:
        expected = (ratio - 1.0) * 60000.0
        if abs(ms_per_min - expected) <= max(0.15 * abs(expected), 8.0):
            return {"name": name, "expected_ms_per_min": round(expected, 3), "speed": round(1.0 / ratio, 9)}
    return None
