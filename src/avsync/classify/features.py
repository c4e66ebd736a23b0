"""Per-sample features of the segment classifiers (``avsync features``).

One decode of the file (the core's :func:`avsync.media.open_media`) gives (with the core
engine's own features, :class:`avsync.features.FeatureBuilder`, from the same pictures):

* ``motion`` per frame: mean optical-flow magnitude (OpenCV Farneback on grey frames
  scaled to ``FLOW_WIDTH`` pixels wide), and ``motion_per_s`` per 1-s segment;
* ``rms`` at 100 Hz: RMS energy of each 25-ms STFT frame (Parseval over the spectrum);
* ``mfcc`` at 100 Hz: 13 coefficients (40 mel bands, 20 Hz-8 kHz, log, DCT-II);
* ``flatness`` and ``zero_frac`` at 100 Hz: spectral flatness and the share of
  digitally silent samples (a removed or blanked track reads as exact zeros);
* ``flux`` at 100 Hz: half-wave rectified log-spectral flux (onset strength);
* ``frames_5fps``: grey frames resized to 64x64 at 5 frames per second;
* ``lag_profile`` per segment: the correlation of picture motion with audio onsets
  and loudness over +-1 s of lag in a 3-s window around the segment, computed with the
  core estimator's :func:`avsync.estimators.xcorr.lagged_pearson`;
* ``core_*``: the core engine's estimate (offset, confidence, lag profile) in a 3-s
  window around every segment and over the whole file, and ``core_short_*`` (offset,
  confidence) in a 1.5-s window (sharper in time, noisier);
* ``ev_*``: the sparse-event estimator's (``--method events``: visual impacts matched to
  audio onsets) estimate in the same 3-s window around every segment and over the whole
  file, from the same decoded features (the events are found once per file): offset
  (NaN when it abstains), confidence (0 when it abstains), ``null_z``, matched events,
  margin over the runner-up lag (NaN when no matching was done: too few events), and
  the counts of visual and audio events in the window (see :func:`event_cues`).

Everything is saved in one compressed NPZ per sample (or a folder of ``.npy`` files).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np

from ..errors import AvsyncError, NoVideo, TooShort
from ..progress import Progress

FLOW_WIDTH = 128
HOP = 160  # 10 ms at 16 kHz
WIN = 400  # 25 ms
NFFT = 512
SR = 16000
N_MFCC = 13
N_MELS = 40
FRAME_RATE_GREY = 5.0
GREY_SIZE = 64
LAG_MAX_S = 1.0
LAG_WINDOW_S = 3.0
LAG_STEP_S = 0.04  # the stored profile's resolution
VERSION = 4  # 4: the ev_* cues of the events estimator
#: the core estimator's profile is stored on this lag grid (ms)
CORE_LAGS_MS = np.arange(-1000.0, 1000.0 + 1e-9, 40.0)
CORE_WINDOW_S = 3.0
#: a second, shorter window: sharper in time (a fault of 1-3 s inside a clip), noisier
CORE_SHORT_WINDOW_S = 1.5


def _mel_filters() -> np.ndarray:
    from ..features.audio import mel_filterbank

    return mel_filterbank(N_MELS, NFFT, SR, 20.0, SR / 2, min_width=1e-9, dtype=np.float64)


def audio_arrays(samples: np.ndarray, t0: float) -> dict[str, np.ndarray]:
    """STFT-based audio features of 16-kHz mono ``samples`` starting at ``t0`` s."""
    from ..features.audio import mfcc_from_power

    x = np.asarray(samples, np.float32)
    n = 1 + max(0, (x.size - WIN) // HOP) if x.size >= WIN else 0
    if n == 0:
        empty = np.zeros(0, np.float32)
        return {"audio_t0": np.float64(t0), "rms": empty, "flatness": empty, "zero_frac": empty, "flux": empty,
                "mfcc": np.zeros((0, N_MFCC), np.float32)}
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n)[:, None]
    frames = x[idx]
    win = np.hanning(WIN).astype(np.float32)
    spec = np.fft.rfft(frames * win, NFFT, axis=1)
    power = (np.abs(spec) ** 2).astype(np.float64)
    # Parseval: mean square of the windowed frame, normalised by the window's energy
    rms = np.sqrt(power.sum(1) * 2 / NFFT / (win.astype(np.float64) ** 2).sum())
    band = power[:, 3:]  # above ~90 Hz
    flat = np.exp(np.mean(np.log(band + 1e-12), 1)) / (np.mean(band, 1) + 1e-12)
    mfcc = mfcc_from_power(power, _mel_filters(), N_MFCC, log_offset=1e-10)
    zero = np.mean(np.abs(frames) < 1e-4, axis=1)
    lb = np.log(power @ _mel_filters().T + 1e-8)
    flux = np.concatenate([[0.0], np.maximum(np.diff(lb, axis=0), 0).mean(1)])
    return {"audio_t0": np.float64(t0 + WIN / 2 / SR), "rms": rms.astype(np.float32),
            "flatness": flat.astype(np.float32), "zero_frac": zero.astype(np.float32),
            "flux": flux.astype(np.float32), "mfcc": mfcc.astype(np.float32)}


def _segments(t_start: float, t_end: float) -> np.ndarray:
    """Start times of the 1-s segments: whole seconds, plus a last part of >= 0.5 s."""
    dur = t_end - t_start
    n = int(np.floor(dur + 1e-6))
    if dur - n >= 0.5 or n == 0:
        n += 1
    return t_start + np.arange(n, dtype=np.float64)


def lag_profiles(arr: dict, seg_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of picture motion with audio (onsets and loudness) over +-LAG_MAX_S,
    in a LAG_WINDOW_S window centred on each segment (clamped to the media).  Profile
    value at lag L: the audio leads by L (the contract's sign).  NaN where undefined."""
    from ..estimators.xcorr import highpass, lagged_pearson, to_grid

    lags = np.arange(-LAG_MAX_S, LAG_MAX_S + 1e-9, 0.01)
    out = np.full((seg_t.size, lags.size), np.nan, np.float32)
    ft, motion = arr["frame_t"], arr["motion"]
    rms = arr["rms"]
    if rms.size < 50 or ft.size < 4:
        return lags, out
    t_lo = max(float(ft[0]), float(arr["audio_t0"]))
    t_hi = min(float(ft[-1]), float(arr["audio_t0"]) + rms.size / 100.0)
    fps = float(arr["fps"])
    for i, s in enumerate(seg_t):
        c = s + 0.5
        w0 = max(t_lo, c - LAG_WINDOW_S / 2)
        w1 = min(t_hi, w0 + LAG_WINDOW_S)
        w0 = max(t_lo, w1 - LAG_WINDOW_S)
        if w1 - w0 < 0.8:
            continue
        # audio over a wider span, so every lag compares the same picture stretch
        grid = np.arange(w0, w1, 0.01)
        agrid = np.arange(w0 - LAG_MAX_S, w1 + LAG_MAX_S, 0.01)
        at = arr["audio_t0"] + np.arange(rms.size) / 100.0
        mv = to_grid(ft, motion.astype(np.float64), grid, 3.0 / max(fps, 1.0))
        mv = highpass(mv, 51, edge=0)
        if not np.isfinite(mv).any() or np.nanstd(mv) < 1e-6:
            continue
        profs = []
        for sig in (arr["flux"], np.log(rms.astype(np.float64) + 1e-4)):
            ag = highpass(to_grid(at, sig.astype(np.float64), agrid, 0.05), 51, edge=0)
            if not np.isfinite(ag).any() or np.nanstd(ag) < 1e-6:
                continue
            # v on its own grid padded to the audio grid: v[n] vs a[n - L]
            pad = int(round(LAG_MAX_S / 0.01))
            v = np.concatenate([np.full(pad, np.nan), mv, np.full(agrid.size - mv.size - pad, np.nan)])
            r = lagged_pearson(v, ag, pad, min_overlap=40)
            profs.append(r)
        if profs:
            with np.errstate(all="ignore"):
                out[i] = np.nanmean(np.stack(profs), 0)[: lags.size]
    return lags, out


def core_cues(feats, seg_t: np.ndarray) -> dict[str, np.ndarray]:
    """The core engine's estimate (``auto``: lips when a face is tracked, else motion) in a
    CORE_WINDOW_S window around every segment and over the whole file: offset, confidence
    and the lag profile (correlation; distances are negated so higher is better).  ``feats``:
    the file's :class:`avsync.features.Features`, None when it has no usable audio (the cues
    stay empty)."""
    from ..api import choose_method
    from ..estimators.base import EstimatorOptions
    from ..estimators.registry import get_estimator

    S = seg_t.size
    out = {"core_offset_ms": np.full(S, np.nan, np.float32), "core_conf": np.zeros(S, np.float32),
           "core_profile": np.full((S, CORE_LAGS_MS.size), np.nan, np.float32),
           "core_whole": np.asarray([np.nan, 0.0], np.float32), "core_lips": np.bool_(False),
           "core_short_offset_ms": np.full(S, np.nan, np.float32), "core_short_conf": np.zeros(S, np.float32)}
    if feats is None:
        return out
    name = choose_method("auto", feats)
    out["core_lips"] = np.bool_(name == "lips")
    est = get_estimator(name, EstimatorOptions(max_lag_ms=1000.0))
    lo = max(float(feats.visual.times[0]), float(feats.audio.t0))
    hi = min(float(feats.visual.times[-1]), float(feats.audio.times[-1]))

    def put(e):
        prof = np.full(CORE_LAGS_MS.size, np.nan, np.float32)
        if e.profile is not None and len(e.profile.lag_ms):
            val = np.asarray(e.profile.value, np.float64)
            if e.profile.kind == "distance":
                val = -val
            prof = np.interp(CORE_LAGS_MS, np.asarray(e.profile.lag_ms, np.float64), val,
                             left=np.nan, right=np.nan).astype(np.float32)
        return (np.nan if e.offset_ms is None else float(e.offset_ms)), float(e.confidence), prof

    w = put(est.estimate(feats))
    out["core_whole"] = np.asarray(w[:2], np.float32)

    def window(s: float, width: float) -> tuple[float, float] | None:
        c = s + 0.5
        w0 = max(lo, c - width / 2)
        w1 = min(hi, w0 + width)
        w0 = max(lo, w1 - width)
        return (w0, w1) if w1 - w0 >= min(0.6, width) else None

    for i, s in enumerate(seg_t):
        span = window(s, CORE_WINDOW_S)
        if span is not None:
            off, conf, prof = put(est.estimate(feats, *span))
            out["core_offset_ms"][i], out["core_conf"][i], out["core_profile"][i] = off, conf, prof
        span = window(s, CORE_SHORT_WINDOW_S)
        if span is not None:
            off, conf, _ = put(est.estimate(feats, *span))
            out["core_short_offset_ms"][i], out["core_short_conf"][i] = off, conf
    return out


#: the per-window statistics of the events estimator kept per segment (NaN where unknown)
EVENT_STATS = ("null_z", "matched", "margin", "visual_events", "audio_events")


def event_cues(feats, seg_t: np.ndarray) -> dict[str, np.ndarray]:
    """The events estimator (:mod:`avsync.estimators.events`) in a CORE_WINDOW_S window
    around every segment and over the whole file, from the file's features (None: no usable
    audio; the cues stay empty).  Arrays: ``ev_offset_ms`` (S; NaN when it abstains),
    ``ev_conf`` (S; 0 when it abstains), ``ev_stats`` (S, len(EVENT_STATS); NaN where the
    estimator did not get that far, e.g. ``null_z``/``margin`` with fewer than 4 events on a
    side), and ``ev_whole`` (offset, confidence, then EVENT_STATS over the whole file)."""
    from ..estimators.base import EstimatorOptions
    from ..estimators.registry import get_estimator

    S = seg_t.size
    out = {"ev_offset_ms": np.full(S, np.nan, np.float32), "ev_conf": np.zeros(S, np.float32),
           "ev_stats": np.full((S, len(EVENT_STATS)), np.nan, np.float32),
           "ev_whole": np.asarray([np.nan, 0.0] + [np.nan] * len(EVENT_STATS), np.float32)}
    if feats is None:
        return out
    lo = max(float(feats.visual.times[0]), float(feats.audio.t0))
    hi = min(float(feats.visual.times[-1]), float(feats.audio.times[-1]))
    spans = []
    for s in seg_t:
        c = s + 0.5
        w0 = max(lo, c - CORE_WINDOW_S / 2)
        w1 = min(hi, w0 + CORE_WINDOW_S)
        w0 = max(lo, w1 - CORE_WINDOW_S)
        spans.append((w0, w1) if w1 - w0 >= 0.6 else None)
    est = get_estimator("events", EstimatorOptions(max_lag_ms=1000.0))
    whole, per = est.estimate_windows(feats, spans)

    def row(e) -> list[float]:
        st = e.stats or {}
        return ([np.nan if e.offset_ms is None else float(e.offset_ms), float(e.confidence)]
                + [float(st[k]) if k in st else np.nan for k in EVENT_STATS])

    out["ev_whole"] = np.asarray(row(whole), np.float32)
    for i, e in enumerate(per):
        if e is None:
            continue
        r = row(e)
        out["ev_offset_ms"][i], out["ev_conf"][i] = r[0], r[1]
        out["ev_stats"][i] = r[2:]
    return out


def extract(path: str, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """All arrays of one media file (see the module docstring), from one decode."""
    import cv2

    from ..features import FeatureBuilder
    from ..features.prefetch import PREFETCH_DEPTH, Prefetch
    from ..media import open_media
    from ..media.base import AudioChunk, DecodeOptions

    with open_media(path) as src:
        info = src.info
        if not info.has_video:
            raise NoVideo("no video stream", path)
        # 640-px grey pictures for the core engine's features (core_*), 320-px ones for the flow
        opts = DecodeOptions(max_side=640, extra_sides=(320,))
        core = FeatureBuilder(info, path, faces="auto") if info.has_audio else None
        times, motion, grey_t, grey = [], [], [], []
        audio_parts, audio_t0 = [], None
        prev = None
        next_grey = None
        with Prefetch(src.decode(opts), depth=PREFETCH_DEPTH) as feed:
            for item in feed:
                if core is not None:
                    try:
                        core.add(item)
                    except AvsyncError:
                        core = None  # the cues stay empty
                if isinstance(item, AudioChunk):
                    if audio_t0 is None:
                        audio_t0 = item.t
                    audio_parts.append(item.samples)
                    continue
                img = item.extra[0]
                h, w = img.shape
                small = cv2.resize(img, (FLOW_WIDTH, max(8, int(round(h * FLOW_WIDTH / w)))),
                                   interpolation=cv2.INTER_AREA)
                if prev is None:
                    m = 0.0
                else:
                    flow = cv2.calcOpticalFlowFarneback(prev, small, None, 0.5, 2, 9, 2, 5, 1.1, 0)
                    m = float(np.mean(np.hypot(flow[..., 0], flow[..., 1])))
                prev = small
                times.append(item.t)
                motion.append(m)
                if next_grey is None or item.t >= next_grey - 1e-6:
                    grey.append(cv2.resize(img, (GREY_SIZE, GREY_SIZE), interpolation=cv2.INTER_AREA))
                    grey_t.append(item.t)
                    next_grey = (item.t if next_grey is None else next_grey) + 1 / FRAME_RATE_GREY
                if progress is not None and len(times) % 25 == 0:
                    progress("decode", item.t, info.duration_s or 0.0)
    feats = None
    if core is not None:
        try:
            feats = core.finish()
        except AvsyncError:
            pass  # no usable audio (a removed or undecodable track): the cues stay empty
    if len(times) < 2:
        raise NoVideo("fewer than 2 decodable video frames", path)
    ft = np.asarray(times)
    order = np.argsort(ft, kind="stable")
    ft = ft[order]
    motion_a = np.asarray(motion, np.float32)[order]
    # a frame's flow is relative to the previous DECODED frame; decode order == display order
    # for the streams we read (B-frames are reordered by the decoder)
    t_start = float(ft[0])
    t_end = float(ft[-1]) + 1.0 / max(info.video_fps or 25.0, 1.0)
    if t_end - t_start < 0.5:
        raise TooShort(f"only {t_end - t_start:.2f} s of video (a segment is 1 s)", path)
    has_audio = bool(audio_parts)
    samples = np.concatenate(audio_parts) if has_audio else np.zeros(0, np.float32)
    arr: dict[str, np.ndarray] = {
        "version": np.int32(VERSION),
        "fps": np.float64(info.video_fps or 25.0),
        "duration_s": np.float64(t_end - t_start),
        "t_start": np.float64(t_start),
        "t_end": np.float64(t_end),
        "frame_t": ft,
        "motion": motion_a,
        "has_audio": np.bool_(has_audio),
        "frames_5fps": np.asarray(grey, np.uint8),
        "frames_5fps_t": np.asarray(grey_t),
    }
    arr.update(audio_arrays(samples, audio_t0 if audio_t0 is not None else t_start))
    seg = _segments(t_start, t_end)
    arr["seg_t"] = seg
    arr["motion_per_s"] = np.asarray([np.mean(motion_a[(ft >= s) & (ft < s + 1)]) if np.any((ft >= s) & (ft < s + 1))
                                      else 0.0 for s in seg], np.float32)
    lags, prof = lag_profiles(arr, seg)
    step = int(round(LAG_STEP_S / 0.01))
    arr["lag_s"] = lags[::step].astype(np.float32)
    arr["lag_profile"] = prof[:, ::step]
    arr["lag_profile_full"] = prof
    arr.update(core_cues(feats, seg))
    arr.update(event_cues(feats, seg))
    return arr


def save(arr: dict, dst: str, npy: bool = False) -> str:
    """Write ``dst`` (``.npz``, compressed) or a folder ``dst`` of ``.npy`` files, atomically."""
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    if npy:
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=folder)
        try:
            for k, v in arr.items():
                np.save(os.path.join(tmp, k + ".npy"), np.asarray(v))
            if os.path.isdir(dst):
                shutil.rmtree(dst)
            os.replace(tmp, dst)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dst
    from ..datasets.util import atomic_file

    with atomic_file(dst, "wb", suffix=".npz") as fh:
        np.savez_compressed(fh, **arr)
    return dst


def load(path: str) -> dict[str, np.ndarray]:
    if os.path.isdir(path):
        return {f[:-4]: np.load(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".npy")}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def feature_path(out_dir: str, sample_id: str, npy: bool = False) -> str:
    return os.path.join(out_dir, sample_id + ("" if npy else ".npz"))


@dataclass
class FeatureRun:
    written: int
    skipped: int
    failed: list[tuple[str, str]]


def _job(args):
    path, dst, npy = args
    try:
        save(extract(path), dst, npy)
        return path, None
    except AvsyncError as exc:
        return path, str(exc)
    except Exception as exc:
        return path, f"{path}: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def extract_many(items: list[tuple[str, str]], out_dir: str, npy: bool = False, workers: int = 1,
                 progress: Progress | None = None, force: bool = False) -> FeatureRun:
    """Features of every ``(sample_id, media_path)``; existing outputs are kept (resumable)."""
    os.makedirs(out_dir, exist_ok=True)
    jobs, skipped = [], 0
    for sid, path in items:
        dst = feature_path(out_dir, sid, npy)
        if not force and os.path.exists(dst):
            skipped += 1
            continue
        jobs.append((path, dst, npy))
    failed = []
    done = skipped
    total = len(items)
    if progress is not None:
        progress("features", done, total)
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for path, err in pool.imap_unordered(_job, jobs):
                done += 1
                if err:
                    failed.append((path, err))
                if progress is not None:
                    progress("features", done, total)
    else:
        for j in jobs:
            path, err = _job(j)
            done += 1
            if err:
                failed.append((path, err))
            if progress is not None:
                progress("features", done, total)
    return FeatureRun(len(jobs) - len(failed), skipped, failed)
