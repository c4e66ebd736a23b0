"""Tolerance presets, verdicts, sliding-window timelines, drift, and the one report builder
(every method, whole-file or windowed, turns its estimates into a :class:`Report` here)."""
from __future__ import annotations

import numpy as np

from .errors import UsageError
from .report import MIN_CONFIDENCE, Drift, Report, Tolerance, Window

#: what a report says of a sparse-event estimate (``--method events``): the counts, the match
#: score against its runner-up and chance, and the matched (picture, sound) times in seconds
EVENT_EVIDENCE = ("visual_events", "audio_events", "matched", "score", "runner_up", "null_z", "periodic", "pairs")


PRESETS = {
    "ebu-r37": (40.0, 60.0),
    "bt1359-detect": (45.0, 125.0),
    "bt1359-accept": (90.0, 185.0),
    "atsc": (15.0, 45.0),
}
TOLERANCE_NAMES = [*PRESETS, "frame"]
#: the preset every entry point uses unless told otherwise
DEFAULT_TOLERANCE = "ebu-r37"

#: below this confidence a measured offset is reported but not judged (defined in report)


def tolerance(name: str, fps: float | None = None) -> Tolerance:
    if name == "frame":
        f = 1000.0 / (fps or 25.0)
        return Tolerance("frame", round(f, 3), round(f, 3))
    if name not in PRESETS:
        raise UsageError(f"unknown tolerance {name!r}; choose from {', '.join(TOLERANCE_NAMES)}")
    lead, lag = PRESETS[name]
    return Tolerance(name, lead, lag)


def verdict(offset_ms: float | None, confidence: float, tol: Tolerance) -> str:
    if offset_ms is None or confidence < MIN_CONFIDENCE:
        return "not_assessable"
    return "in_sync" if tol.accepts(offset_ms) else "out_of_sync"


def window_spans(start: float, end: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Sliding windows over [start, end]; one window for media shorter than 1.5 windows."""
    length = end - start
    if length <= 1.5 * window_s:
        return [(start, end)]
    n = int(np.floor((length - window_s) / hop_s)) + 1
    spans = [(start + i * hop_s, start + i * hop_s + window_s) for i in range(n)]
    if end - spans[-1][1] > 0.5 * hop_s:
        spans.append((end - window_s, end))
    return spans


def fit_drift(times_s, offsets_ms, weights=None, min_points: int = 3, min_span_s: float = 10.0) -> Drift | None:
    """Weighted least-squares line through (window centre, offset); None when too short."""
    t = np.asarray(times_s, np.float64)
    y = np.asarray(offsets_ms, np.float64)
    w = np.ones_like(t) if weights is None else np.asarray(weights, np.float64)
    ok = np.isfinite(t) & np.isfinite(y) & (w > 0)
    t, y, w = t[ok], y[ok], w[ok]
    if t.size < min_points or t.max() - t.min() < min_span_s:
        return None
    tm = np.average(t, weights=w)
    ym = np.average(y, weights=w)
    stt = np.sum(w * (t - tm) ** 2)
    if stt <= 0:
        return None
    slope = np.sum(w * (t - tm) * (y - ym)) / stt
    icpt = ym - slope * tm
    res = y - (icpt + slope * t)
    sst = np.sum(w * (y - ym) ** 2)
    r2 = 1.0 - np.sum(w * res**2) / sst if sst > 0 else 0.0
    return Drift(ms_per_min=float(slope * 60.0), r2=float(max(0.0, r2)), intercept_ms=float(icpt))


def build_report(media: dict, method: str, whole, windows: list[Window], tol: Tolerance,
                 veto: str | None = None, extra: dict | None = None, probe=None, measure=None,
                 window_s: float | None = None, hop_s: float | None = None,
                 warnings: list[str] | None = None) -> Report:
    """The report from a whole-file estimate (an ``Estimate``) and its timeline windows: the
    verdict against ``tol``, the drift through the assessable windows, the pieces of constant
    offset (:mod:`avsync.segmentation`; ``probe`` / ``measure`` refine them with the estimator),
    the reason.  ``veto`` makes the verdict ``not_assessable`` with that reason although an offset
    was measured (e.g. silence)."""
    from .segmentation import match_conform, segment_windows

    drift = None
    ok = [w for w in windows if w.offset_ms is not None]
    if len(ok) >= 3:
        drift = fit_drift([(w.start_s + w.end_s) / 2 for w in ok], [w.offset_ms for w in ok],
                          [max(w.confidence, 1e-3) for w in ok])
    seg = segment_windows(windows, window_s, hop_s, media.get("video_fps"), probe, measure) if windows else None
    if drift is not None and seg is not None and seg.model == "drift":
        conform = match_conform(drift.ms_per_min, drift.r2)
        if conform is not None:
            drift = Drift(drift.ms_per_min, drift.r2, drift.intercept_ms, conform)
    v = verdict(whole.offset_ms, whole.confidence, tol)
    reason = whole.reason
    if v == "not_assessable" and whole.offset_ms is not None:
        reason = "low confidence"
    segments = seg.segments if seg is not None and seg.model == "steps" else []
    if seg is not None and seg.model != "steps" and seg.segments:
        segments = seg.segments  # one piece: the whole timeline
    changes = seg.changes if seg is not None else []
    if len(segments) > 1:
        judged = [g for g in segments if g.confidence >= MIN_CONFIDENCE]
        if any(not tol.accepts(g.offset_ms) for g in judged):
            v = "out_of_sync"
        elif judged and len(judged) == len(segments):
            v = "in_sync"
        reason = f"{len(segments)} offsets: the offset steps at " + ", ".join(f"{c.time_s:.1f} s" for c in changes)
    if veto is not None:
        v, reason = "not_assessable", veto
    extra = dict(extra or {})
    if "pairs" in (whole.stats or {}):  # sparse-event methods: the evidence behind the offset
        extra.setdefault("events", {k: whole.stats[k] for k in EVENT_EVIDENCE if k in whole.stats})
    return Report(media=media, method=method, offset_ms=whole.offset_ms, confidence=whole.confidence,
                  verdict=v, tolerance=tol, windows=windows, drift=drift, profile=whole.profile,
                  reason=reason, cue=whole.cue, stats=whole.stats, extra=extra,
                  segments=segments, changes=changes, offset_model=seg.model if seg is not None else None,
                  warnings=list(warnings or []))
