"""FCN-SyncNet's numpy side (no torch): the input grid, the preparation of a clip's features for
the model, and the reading of its output (offset decode, confidence calibration).

What ``detect`` needs at run time lives here, so the estimator and the ONNX path never import
the training code (:mod:`avsync.training.fcn_data` builds training pairs on top of this).

A clip becomes a :class:`Track`: per-frame visual inputs on a regular 25 Hz grid (the 20 mouth
landmarks, levelled and size-normalised, minus the clip's neutral mouth shape, plus
mouth-interior darkness) and a 100 Hz log-mel spectrogram on the same time span (``HOPS`` = 4
audio hops per video frame, hop ``4j`` .. ``4j+3`` around frame ``j``).  Audio is sampled at
absolute (decoded) times, so container offsets are seen exactly as the media timestamps say.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

FPS = 25.0
HOPS = 4  # audio hops per video frame (100 Hz)
N_MEL = 40
N_LIP = 20
VIS_DIM = 2 * N_LIP + 1  # landmark coordinates + darkness


@dataclass
class Track:
    """One clip (or chunk) ready for the model."""

    t0: float  # time of frame 0, seconds
    vis: np.ndarray  # (T, VIS_DIM) float32, 0 where masked
    vmask: np.ndarray  # (T,) float32, 1 where a face was tracked
    aud: np.ndarray  # (HOPS * T, N_MEL) float32, 0 where masked
    amask: np.ndarray  # (HOPS * T,) float32, 1 where decoded audio exists
    group: str = ""
    name: str = ""

    def __len__(self) -> int:
        return int(self.vis.shape[0])


# --------------------------------------------------------------------------- raw features
def raw_from_features(features) -> dict:
    """The arrays of :class:`avsync.features.Features` that the model needs (extracted
    with ``trajectories=True``), as a plain dict (what the cache stores)."""
    V, A = features.visual, features.audio
    if V.lips is None or A.mel is None:
        raise UsageError("FCN-SyncNet needs features extracted with trajectories=True")
    return {
        "v_times": np.asarray(V.times, np.float64),
        "lips": np.asarray(V.lips, np.float32),
        "dark": np.asarray(V.mouth["dark"], np.float32),
        "a_t0": np.float64(A.t0),
        "a_rate": np.float64(A.rate),
        "mel": np.asarray(A.mel, np.float32),
    }


def track_from_raw(raw: dict, t_start: float | None = None, t_end: float | None = None,
                   name: str = "", group: str = "") -> Track | None:
    """Resample raw features to the model grid between ``t_start`` and ``t_end``
    (default: the video's span) and normalise them per clip.  None when shorter than 2 frames."""
    vt = raw["v_times"]
    if vt.size < 2:
        return None
    lo = vt[0] if t_start is None else max(t_start, vt[0])
    hi = vt[-1] if t_end is None else min(t_end, vt[-1])
    T = int(np.floor((hi - lo) * FPS)) + 1
    if T < 2:
        return None
    grid = lo + np.arange(T) / FPS
    # visual: nearest original frame (no blending across missing faces), masked where it
    # is more than 1.5 frame periods away or has no face
    lips = raw["lips"].reshape(len(vt), -1)
    dark = raw["dark"][:, None]
    v = np.concatenate([lips, dark], axis=1).astype(np.float64)
    near, vmask = nearest_frames(vt, grid, np.isfinite(v).all(1))
    vis = v[near]
    if vmask.sum() >= 2:
        vis = vis - np.median(vis[vmask], axis=0)  # the speaker's neutral mouth
        vis[:, -1] *= 4.0  # darkness to the same order as the coordinates
    vis[~vmask] = 0.0
    # audio: 100 Hz hops centred on the frame grid
    mel = raw["mel"]
    at = float(raw["a_t0"]) + np.arange(mel.shape[0]) / float(raw["a_rate"])
    ag = (grid[:, None] + (np.arange(HOPS)[None, :] - (HOPS - 1) / 2) / (FPS * HOPS)).reshape(-1)
    if mel.shape[0] >= 2:
        j = np.clip(np.round((ag - at[0]) * float(raw["a_rate"])).astype(np.int64), 0, mel.shape[0] - 1)
        amask = (ag >= at[0] - 0.006) & (ag <= at[-1] + 0.006)
        aud = mel[j].astype(np.float64)
    else:
        amask = np.zeros(ag.size, bool)
        aud = np.zeros((ag.size, N_MEL))
    aud = normalise_audio(aud, amask)
    return Track(t0=float(lo), vis=vis.astype(np.float32), vmask=vmask.astype(np.float32),
                 aud=aud.astype(np.float32), amask=amask.astype(np.float32), name=name, group=group)


def nearest_frames(times: np.ndarray, grid: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest of the frames at ``times`` for every ``grid`` time, mask): the mask is
    False where that frame is not ``ok`` or more than 1.5 frame periods away (a gap)."""
    idx = np.clip(np.searchsorted(times, grid), 1, len(times) - 1)
    near = np.where(np.abs(grid - times[idx - 1]) <= np.abs(times[idx] - grid), idx - 1, idx)
    period = np.median(np.diff(times)) if times.size > 1 else 1 / FPS
    return near, ok[near] & (np.abs(times[near] - grid) <= 1.5 * max(period, 1 / FPS))


def normalise_audio(aud: np.ndarray, amask: np.ndarray) -> np.ndarray:
    """log10 mel -> floor 6 decades under the clip's loudest band energy, minus the
    per-band mean, over one global standard deviation (the gain and the channel cancel)."""
    aud = np.array(aud, np.float64)
    m = amask.astype(bool)
    if m.sum() < 2:
        return np.zeros_like(aud)
    top = np.percentile(aud[m], 99)
    aud = np.maximum(aud, top - 6.0)
    aud = aud - aud[m].mean(0)
    aud = aud / max(aud[m].std(), 1e-3)
    aud[~m] = 0.0
    return aud


# --------------------------------------------------------------------------- outputs
def decode_offset(p: np.ndarray, K: int) -> tuple[float, float]:
    """(offset in frames, peak mass) of one distribution ``p`` over the offsets -K..K: the most
    likely offset refined by the probability-weighted mean of the peak and its neighbours, and
    the probability mass within one offset of the peak."""
    i = int(np.argmax(p))
    idx = [j for j in (i - 1, i, i + 1) if 0 <= j < p.size]
    w = p[idx]
    conf = float(w.sum())
    off = float(np.dot(w, np.asarray(idx) - K) / max(conf, 1e-12))
    return off, conf


def confidence_inputs(raw_conf: float, frames: float) -> np.ndarray:
    """What the confidence calibration reads: the peak's probability mass, as a logit.
    (The frame count is not used: the validation windows are mostly 1.2-s crops, and a
    fitted frame-count term extrapolated badly to 10-s clips.)"""
    c = min(max(raw_conf, 1e-4), 1 - 1e-4)
    return np.array([np.log(c / (1 - c))])


def apply_confidence(cal: dict | None, raw_conf: float, frames: float) -> float:
    """The calibrated confidence (the logistic map fitted at the end of training, stored in the
    weights file) of a peak mass ``raw_conf``; ``raw_conf`` itself when there is no calibration."""
    if not cal:
        return raw_conf
    x = confidence_inputs(raw_conf, frames)
    if len(cal["coef"]) != x.size:
        raise UsageError("the weights file's confidence calibration does not match this version of avsync")
    z = float(np.dot(cal["coef"], x) + cal["intercept"])
    return float(1 / (1 + np.exp(-z)))
