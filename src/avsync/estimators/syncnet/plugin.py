"""``syncnet``: the SyncNet v2 network with the public weights (``--weights`` or
``AVSYNC_SYNCNET_WEIGHTS``), reproducing the reference's offset, LSE-D and LSE-C
(``shared/spec/syncnet-v2.md``), as a whole-file method.

The pipeline, all in memory: decode on the reference's 25-fps timeline (:mod:`.prep`; with
``crop none`` and frames "jpeg", every picture through the reference's MJPEG round trip,
:mod:`avsync.media.jpeg`, so LSE-D / LSE-C are the public code's); find
the face tracks in small grey pictures (:func:`scan_faces`, on :mod:`avsync.features.faces`),
or take every picture as the crop (``crop none``); decode again in colour, cut each track's
224x224 crops and embed them in batches while decoding; embed the audio's MFCC windows
(:mod:`.mfcc`); score every track as the reference does (:mod:`.score`); choose the track with
the highest confidence; build the detect Report with :func:`avsync.timeline.build_report`.

This module stays light: torch (through :mod:`.score`) is imported only when a file is scored.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from ...errors import MissingWeights, UsageError
from ...features import faces as facemod
from ...features.prefetch import Prefetch
from ...media import open_media
from ...media.base import MediaInfo
from ...report import Report, Window
from ...timeline import DEFAULT_TOLERANCE, build_report, tolerance, window_spans
from ..base import Estimate, Estimator, LagProfile, register
from .prep import FPS, SAMPLES_PER_FRAME, Timeline25, require_windows, windows_count

#: 25-fps pictures (with their crops) decoded ahead of the network: ~45 MB of 720p colour
CROP_PREFETCH = 16

if TYPE_CHECKING:
    from .score import Scorer, SyncScore

WEIGHTS_ENV = "AVSYNC_SYNCNET_WEIGHTS"
CROPS = ("auto", "none")
FRAMES = ("jpeg", "lossless")
#: a timeline window needs at least this many 5-frame windows
MIN_TIMELINE_WINDOWS = 10
#: LSE-C at which the heuristic probability is 1/2 (not calibrated on real weights: see README)
CONF_MID = 3.0
CONF_SLOPE = 1.5
#: the scored audio never exceeds this (int16 units): digital silence or dither
SILENT_PEAK = 2


@dataclass(frozen=True)
class SyncNetOptions:
    weights: str | None = None
    crop: str = "auto"  # "auto": detect and track faces; "none": the pictures are face crops
    precision: str = "exact"  # "exact" (fp32), "fast" (bfloat16), "onnx" (ONNX Runtime fp32)
    #: crop none: "jpeg" (the reference's MJPEG round trip, avsync.media.jpeg) or "lossless"
    frames: str = "jpeg"
    detector: str = "hog"
    detect_every: int = 5
    debug_dir: str | None = None
    batch: int | None = None  # lip windows per batch (None: the precision's default)
    threads: int | None = None


@dataclass
class TrackResult:
    start_frame: int
    frames: int
    score: SyncScore
    detections: int = 0
    box: tuple[float, float, float, float] | None = None  # median face box (full-frame pixels)
    audio_peak: int = 0  # largest |sample| (int16) of the scored audio: 0 or 1 means silence

    def to_dict(self, t0: float) -> dict:
        s = self.score
        return {
            "start_s": round(t0 + self.start_frame / FPS, 3),
            "end_s": round(t0 + (self.start_frame + self.frames) / FPS, 3),
            "frames": self.frames,
            "windows": s.windows,
            "offset_frames": s.offset,
            "lse_d": round(s.min_dist, 5),
            "lse_c": round(s.confidence, 5),
            "box": None if self.box is None else [round(v, 1) for v in self.box],
        }


@dataclass
class SyncNetResult:
    info: MediaInfo
    t0: float  # time of the first picture
    frames: int  # 25-fps frames
    tracks: list[TrackResult]
    chosen: int | None
    coverage: float  # share of frames inside a face track (1.0 with crop none)
    crop: str
    timing: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    debug_png: str | None = None
    #: how the scored pictures were made (:func:`_pictures`)
    pictures: dict = field(default_factory=lambda: {"frames": "lossless"})

    @property
    def best(self) -> TrackResult | None:
        return None if self.chosen is None else self.tracks[self.chosen]


@register("syncnet")
class SyncNetEstimator(Estimator):
    """Whole-file method: decodes colour face crops at 25 fps itself (:func:`run_file`)."""

    cue = "lips"
    faces = True
    whole_file = True

    def estimate(self, features, t0=None, t1=None) -> Estimate:
        return Estimate.abstain("syncnet works on whole files (use avsync.detect)", cue="lips")

    def detect_file(self, path, options, progress=None):
        opts = SyncNetOptions(weights=resolve_weights(options.weights), crop=getattr(options, "crop", "auto"),
                              precision=getattr(options, "precision", "exact"),
                              frames=getattr(options, "syncnet_frames", "jpeg"),
                              debug_dir=getattr(options, "debug_dir", None))
        res = run_file(path, opts, progress)
        return to_report(res, options.tolerance, options.window_s, options.hop_s, options.timeline)


# -- weights and the scorer -----------------------------------------------------------------------
def resolve_weights(path: str | None) -> str:
    path = path or os.environ.get(WEIGHTS_ENV) or None
    if not path:
        raise MissingWeights(
            "method syncnet needs the public SyncNet v2 weights file syncnet_v2.model (never downloaded): "
            f"put it anywhere and pass --weights PATH or set {WEIGHTS_ENV}=PATH")
    if not os.path.isfile(path):
        raise MissingWeights(f"{path}: SyncNet weights file not found (pass --weights PATH or set {WEIGHTS_ENV})")
    return path


def require_torch() -> None:
    """:class:`UsageError` naming the extra to install when torch cannot be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("method syncnet needs torch: pip install 'avsync[syncnet]'") from None


@lru_cache(maxsize=4)  # one per precision: the benchmark interleaves them
def _scorer(path: str, mtime: float, precision: str, batch: int, threads: int | None) -> Scorer:
    from .score import Scorer

    return Scorer(path, precision=precision, batch=batch, threads=threads)


def get_scorer(options: SyncNetOptions) -> Scorer:
    path = resolve_weights(options.weights)
    require_torch()
    s = _scorer(os.path.abspath(path), os.path.getmtime(path), options.precision, options.batch, options.threads)
    s.lip_seconds = s.aud_seconds = 0.0
    s.lip_windows = s.aud_windows = 0
    return s


# -- the whole-file pipeline ----------------------------------------------------------------------
def run_file(path: str | os.PathLike, options: SyncNetOptions = SyncNetOptions(), progress=None) -> SyncNetResult:
    """Score one file as the reference would, without writing anything."""
    if options.crop not in CROPS:
        raise UsageError(f"unknown crop mode {options.crop!r}; choose from {', '.join(CROPS)}")
    if options.frames not in FRAMES:
        raise UsageError(f"unknown syncnet frames {options.frames!r}; choose from {', '.join(FRAMES)}")
    path = os.fspath(path)
    scorer = get_scorer(options)  # weights problems first, before any decoding
    t_start = time.perf_counter()
    timing: dict = {}
    if options.crop == "none":
        result = _run_none(path, scorer, options, progress, timing)
    else:
        result = _run_faces(path, scorer, options, progress, timing)
    timing["total_s"] = round(time.perf_counter() - t_start, 3)
    inf = scorer.lip_seconds + scorer.aud_seconds
    timing["inference_s"] = round(inf, 3)
    result.timing = timing
    result.figures = scorer.figures()
    media_s = result.frames / FPS
    if timing["total_s"] > 0:
        result.figures["realtime_factor"] = round(media_s / timing["total_s"], 2)
    return result


def _run_none(path, scorer, options, progress, timing) -> SyncNetResult:
    from .score import score_from_embeddings

    with open_media(path) as src:
        info = src.info
        # "jpeg": every decoded picture through the reference's MJPEG round trip, in order
        tl = Timeline25(src, colour="jpeg" if options.frames == "jpeg" else True, progress=progress)
        stream = scorer.lip_stream()
        keep = []
        # decoding (and the JPEG round trip) in a background thread while the network runs
        with Prefetch(((k, facemod.to_crop(img)) for k, img in tl), depth=CROP_PREFETCH) as feed:
            for k, c in feed:
                stream.add(c)
                if options.debug_dir and k % 25 == 0 and len(keep) < 8:
                    keep.append(c.copy())
        lip = stream.finish()
        audio = tl.audio()
    require_windows(tl.frames, audio.size, path)
    n = windows_count(tl.frames, audio.size)
    aud = scorer.embed_audio(audio, n)
    score = score_from_embeddings(lip[:n], aud)
    tr = TrackResult(0, tl.frames, score, audio_peak=_peak(audio[:(n + 5) * SAMPLES_PER_FRAME]))
    res = SyncNetResult(info=info, t0=float(tl.t0), frames=tl.frames, tracks=[tr], chosen=0, coverage=1.0,
                        crop="none", pictures=_pictures(options.frames))
    if options.debug_dir:
        res.debug_png = _debug_path(options.debug_dir, path)
        write_debug_png(res.debug_png, None, [], keep, f"{os.path.basename(path)}: crop none")
    return res


def _run_faces(path, scorer, options, progress, timing) -> SyncNetResult:
    from .score import score_from_embeddings

    t = time.perf_counter()
    with open_media(path) as src:
        src.require(audio=True, video=True)  # before the face pass, not after it
        scan = scan_faces(src, options.detector, options.detect_every)
    timing["faces_s"] = round(time.perf_counter() - t, 3)
    streams = {i: scorer.lip_stream() for i, tr in enumerate(scan.tracks)}
    mids = {i: tr.start + len(tr) // 2 for i, tr in enumerate(scan.tracks)}
    samples = {i: set(np.linspace(tr.start, tr.end - 1, 8).astype(int)) for i, tr in enumerate(scan.tracks)}
    debug_frames: dict[int, np.ndarray] = {}
    debug_crops: dict[int, list[np.ndarray]] = {i: [] for i in streams}
    with open_media(path) as src:
        info = src.info
        tl = Timeline25(src, colour=True, progress=progress)

        def cut():  # decoding and cropping, in a background thread while the network runs
            for k, img in tl:
                boxes = [(i, tr.box_at(k)) for i, tr in enumerate(scan.tracks)]
                yield k, img, [(i, facemod.crop(img, b, scan.detector)) for i, b in boxes if b is not None]

        with Prefetch(cut(), depth=CROP_PREFETCH) as feed:
            for k, img, crops in feed:
                for i, c in crops:
                    streams[i].add(c)
                    if options.debug_dir:
                        if k in samples[i]:
                            debug_crops[i].append(c)
                        if k == mids[i]:
                            debug_frames[i] = img
        audio = tl.audio()
    results: list[TrackResult] = []
    scored: list[int] = []  # the scan's track index of every result
    for i, tr in enumerate(scan.tracks):
        lip = streams[i].finish()
        seg = audio[tr.start * SAMPLES_PER_FRAME: tr.end * SAMPLES_PER_FRAME]
        n = windows_count(len(tr), seg.size)
        if n <= 0:
            continue
        score = score_from_embeddings(lip[:n], scorer.embed_audio(seg, n))
        score.start_frame = tr.start
        box = tuple(float(v) for v in np.median(tr.boxes, 0))
        results.append(TrackResult(tr.start, len(tr), score, tr.detections, box,
                                   _peak(seg[:(n + 5) * SAMPLES_PER_FRAME])))
        scored.append(i)
    chosen = None
    if results:
        chosen = int(np.argmax([r.score.confidence for r in results]))
    res = SyncNetResult(info=info, t0=float(tl.t0 or 0), frames=tl.frames, tracks=results, chosen=chosen,
                        coverage=scan.coverage, crop="auto")
    res.figures["shots"] = len(scan.shots) + 1
    if options.debug_dir:
        res.debug_png = _debug_path(options.debug_dir, path)
        if chosen is not None:
            i = scored[chosen]
            k = mids[i]
            boxes = [(tr.box_at(k), f"track {j}") for j, tr in enumerate(scan.tracks) if tr.box_at(k) is not None]
            title = (f"{os.path.basename(path)}: {len(results)} track(s), coverage {scan.coverage:.0%}, "
                     f"chosen {chosen}")
            write_debug_png(res.debug_png, debug_frames.get(i), boxes, debug_crops[i], title, scan.detector)
        else:
            write_debug_png(res.debug_png, None, [], [], f"{os.path.basename(path)}: no face track")
    return res


def _pictures(frames: str) -> dict:
    """What the JSON says about the scored pictures: lossless, or the JPEG round trip with the
    libavcodec that encoded it and the FFmpeg version whose command line it follows."""
    if frames != "jpeg":
        return {"frames": "lossless"}
    from ...media.jpeg import encoder_versions

    return {"frames": "jpeg", **encoder_versions()}


def _peak(samples: np.ndarray) -> int:
    return int(np.abs(samples.astype(np.int32)).max()) if samples.size else 0


def scan_faces(source, detector: str = "hog", detect_every: int = 5, analysis_side: int = 640,
               progress=None) -> facemod.FaceScan:
    """Pass 1 over ``source`` (a MediaSource): shots, detections and face tracks on the 25-fps
    timeline, from grey pictures at most ``analysis_side`` pixels (boxes in full-frame pixels)."""
    info = source.info
    tl = Timeline25(source, colour=False, max_side=analysis_side, progress=progress, audio=False)
    with Prefetch(iter(tl), depth=CROP_PREFETCH) as feed:  # decoding beside the detector
        return facemod.find_tracks(feed, (info.width, info.height), detector, detect_every)


# -- the debug picture ---------------------------------------------------------------------------
def write_debug_png(path: str, frame: np.ndarray | None, boxes: list[tuple[np.ndarray, str]],
                    crops: list[np.ndarray], title: str = "", detector: str = "hog") -> None:
    """One picture: the frame with every face box and its crop square, and a row of crops.
    Written to a temporary name and renamed."""
    import cv2

    rows = []
    if frame is not None:
        img = frame.copy()
        for box, label in boxes:
            b = [int(v) for v in box]
            cv2.rectangle(img, (b[0], b[1]), (b[2], b[3]), (0, 255, 0), 2)
            c = [int(v) for v in facemod.crop_box(box, detector)]
            cv2.rectangle(img, (c[0], c[1]), (c[2], c[3]), (0, 0, 255), 2)
            cv2.putText(img, label, (b[0], max(12, b[1] - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
        h = facemod.CROP * 2
        img = cv2.resize(img, (max(1, int(img.shape[1] * h / img.shape[0])), h))
        rows.append(img)
    if crops:
        strip = np.concatenate(crops[:8], 1)
        rows.append(strip)
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    canvas = np.full((sum(r.shape[0] for r in rows) + 24, width, 3), 255, np.uint8)
    cv2.putText(canvas, title[:120], (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    y = 24
    for r in rows:
        canvas[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part.png"
    if not cv2.imwrite(tmp, canvas):
        raise OSError(f"cannot write {path}")
    os.replace(tmp, path)


def _debug_path(folder: str, path: str) -> str:
    stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0] or "media"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return os.path.join(folder, f"{stem}.syncnet.png")


# -- the detect report ---------------------------------------------------------------------------
def conf_probability(lse_c: float) -> float:
    """A monotone map of SyncNet's confidence to 0..1 (heuristic, not calibrated)."""
    return float(1.0 / (1.0 + math.exp(-CONF_SLOPE * (lse_c - CONF_MID))))


def _timeline(res: SyncNetResult, window_s: float, hop_s: float) -> list[Window]:
    from .score import curve_score

    best = res.best
    if best is None:
        return []
    d = best.score.dists
    starts = res.t0 + (best.start_frame + np.arange(d.shape[0])) / FPS
    if not starts.size:
        return []
    spans = window_spans(float(starts[0]), float(starts[-1] + 5 / FPS), window_s, hop_s)
    out = []
    for a, b in spans:
        sel = (starts >= a - 1e-9) & (starts + 5 / FPS <= b + 1e-9)
        if sel.sum() < MIN_TIMELINE_WINDOWS:
            out.append(Window(a, b, None, 0.0))
            continue
        s = curve_score(d[sel])
        out.append(Window(a, b, s.offset * 1000.0 / FPS, conf_probability(s.confidence)))
    return out


def to_report(res: SyncNetResult, tolerance_name: str = DEFAULT_TOLERANCE, window_s: float = 5.0, hop_s: float = 1.0,
              timeline: bool = True) -> Report:
    from .score import VSHIFT

    info = res.info
    tol = tolerance(tolerance_name, info.video_fps)
    best = res.best
    syncnet: dict = {"crop": res.crop, "pictures": res.pictures, "face_coverage": round(res.coverage, 4), "frames_25fps": res.frames,
                     "tracks": [t.to_dict(res.t0) for t in res.tracks], "chosen_track": res.chosen,
                     "timing": res.timing, "figures": res.figures}
    if best is None:
        reason = "no face track long enough for SyncNet" if res.crop == "auto" else "too short for SyncNet"
        return build_report(info.to_dict(), "syncnet", Estimate.abstain(reason, cue="lips"), [], tol,
                            extra={"lse_d": None, "lse_c": None, "syncnet": syncnet})
    s = best.score
    lags = np.array([(VSHIFT - j) * 1000.0 / FPS for j in range(2 * VSHIFT + 1)])
    whole = Estimate(offset_ms=s.offset * 1000.0 / FPS, confidence=conf_probability(s.confidence),
                     profile=LagProfile(lag_ms=lags, value=s.curve.copy(), kind="distance"), cue="lips",
                     stats={"lse_d": s.min_dist, "lse_c": s.confidence})
    windows = _timeline(res, window_s, hop_s) if timeline else []
    syncnet.update({"offset_frames_25fps": s.offset, "min_dist": round(s.min_dist, 6),
                    "confidence": round(s.confidence, 6),
                    "framewise_confidence": [round(float(x), 4) for x in s.framewise_conf]})
    # silent audio: the numbers exist but say nothing about sync
    return build_report(info.to_dict(), "syncnet", whole, windows, tol,
                        veto="silent audio" if best.audio_peak <= SILENT_PEAK else None,
                        extra={"lse_d": round(s.min_dist, 6), "lse_c": round(s.confidence, 6), "syncnet": syncnet})
