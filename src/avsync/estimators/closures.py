"""Articulatory events: lip closures against the quiet-then-burst of high-band audio.

At /p/, /b/ and /m/ the lips close; while they are closed almost no energy above 1 kHz
leaves the mouth, and it comes back within a few tens of ms of the lips parting.  So
every closure seen in the picture (the inner lip gap falls to the speaker's resting
level between two openings) predicts a pattern in the sound: quiet for the closure's
duration, then a rise at its release.  Matching each closure against the 1-5 kHz and
2-6 kHz log energy over candidate lags gives, per event, a score curve; unlike the
syllable rhythm that continuous correlation follows, the events are sparse and
irregular, so their sum has one sharp peak at the true lag.

A bootstrap over events says how much that peak rests on a few of them: the estimate
abstains when there are too few closures or when resampled event sets disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Estimate, Estimator, LagProfile, register

#: lag search step (s): the evidence is sampled at the audio band rate (200 Hz)
LAG_STEP_S = 0.005
#: at least this many closures, and this share of bootstrap resamples within AGREE_S of
#: the peak, or the estimate abstains
MIN_EVENTS = 5
MIN_AGREEMENT = 0.85
AGREE_S = 0.04
BOOTSTRAP = 200
#: the best lag's mean z-score must reach MIN_PEAK, and the best peak more than AGREE_S away
#: must stay below MAX_RUNNER_UP of it (periodic closures fit several lags equally)
MIN_PEAK = 0.3
MAX_RUNNER_UP = 0.8
#: an event's gap must at least fall to this share of the openings around it
MAX_DEPTH_RATIO = 0.5
#: band energy that varies less than this (dB, standard deviation) is silence or a steady tone
MIN_AUDIO_SPREAD_DB = 1.0
#: audio after the release that counts as the burst; audio ignored at each end of the closure
BURST_S = 0.04
MARGIN_S = 0.01
#: per-event scores are z-scored over lags and clipped, so no event dominates
Z_CLIP = 3.0


@dataclass(frozen=True)
class Closure:
    """One lip closure: when the lips met (``close``) and parted (``release``), seconds."""

    close: float
    release: float


def find_closures(times: np.ndarray, gap: np.ndarray, level: float = 0.4, prominence: float = 0.25,
                  max_frames: int = 15, reach: int = 6) -> list[Closure]:
    """Closures in a per-frame inner-lip gap (any unit; NaN where no face).

    A closure is a run of frames at most ``level`` of the way from the clip's resting gap
    (10th percentile) to its open gap (90th), no longer than ``max_frames``, with the mouth
    opening by at least ``prominence`` of that range within ``reach`` frames before and
    after.  Its edges are where the gap crosses half-way between the closure's minimum and
    the neighbouring openings (linear interpolation between frames)."""
    t = np.asarray(times, np.float64)
    g = np.asarray(gap, np.float64)
    ok = np.isfinite(g)
    if ok.sum() < 10:
        return []
    p10, p90 = np.percentile(g[ok], [10, 90])
    span = p90 - p10
    if not span > 0:
        return []
    low = p10 + level * span
    below = ok & (g <= low)
    out: list[Closure] = []
    n = g.size
    i = 0
    while i < n:
        if not below[i]:
            i += 1
            continue
        a = i
        while i + 1 < n and below[i + 1]:
            i += 1
        b = i
        i += 1
        if b - a + 1 > max_frames or a == 0 or b == n - 1:
            continue
        pre, post = g[max(0, a - reach):a], g[b + 1:b + 1 + reach]
        if not (np.isfinite(pre).all() and np.isfinite(post).all()):
            continue
        k0 = a + int(np.argmin(g[a:b + 1]))
        vmin = g[k0]
        if pre.max() - vmin < prominence * span or post.max() - vmin < prominence * span:
            continue
        if vmin > MAX_DEPTH_RATIO * min(pre.max(), post.max()):
            continue
        release = _crossing(t, g, k0, vmin + 0.5 * (post.max() - vmin), +1)
        close = _crossing(t, g, k0, vmin + 0.5 * (pre.max() - vmin), -1)
        if release is not None and close is not None and release > close:
            out.append(Closure(close, release))
    return out


def _crossing(t: np.ndarray, g: np.ndarray, k: int, level: float, step: int) -> float | None:
    """Time where ``g`` first rises through ``level`` walking from frame ``k`` by ``step``."""
    n = g.size
    while 0 <= k + step < n and g[k + step] < level:
        k += step
    j = k + step
    if not (0 <= j < n) or not np.isfinite(g[j]) or g[j] == g[k]:
        return None
    frac = (level - g[k]) / (g[j] - g[k])
    return float(t[k] + frac * (t[j] - t[k]))


def event_scores(events: list[Closure], t0: float, rate: float, bands: np.ndarray,
                 lags_s: np.ndarray) -> np.ndarray:
    """(events, lags) scores: the band energy (dB, averaged over bands) in the ``BURST_S``
    after the release minus its level during the closure, with the audio taken ``lag``
    seconds after the picture.  ``bands`` is (n_bands, n) log energy sampled at ``rate``
    from time ``t0``.  Entries whose closure or burst falls outside the audio are NaN."""
    bands = np.atleast_2d(np.asarray(bands, np.float64))
    n = bands.shape[1]
    cs = np.concatenate([np.zeros((bands.shape[0], 1)), np.cumsum(bands, axis=1)], axis=1)

    def mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ia = np.round((a - t0) * rate).astype(np.int64)
        ib = np.maximum(np.round((b - t0) * rate).astype(np.int64), ia + 1)
        bad = (ia < 0) | (ib > n)
        ia, ib = np.clip(ia, 0, n - 1), np.clip(ib, 1, n)
        m = ((cs[:, ib] - cs[:, ia]) / np.maximum(ib - ia, 1)).mean(0)
        m[bad] = np.nan
        return m

    lags = np.asarray(lags_s, np.float64)
    out = np.full((len(events), lags.size), np.nan)
    for i, ev in enumerate(events):
        q0 = ev.close + lags + MARGIN_S
        q1 = np.maximum(ev.release + lags - MARGIN_S, q0 + 1.0 / rate)
        burst = mean(ev.release + lags, ev.release + lags + BURST_S)
        out[i] = burst - mean(q0, q1)
    return out


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each event's curve as clipped z-scores over the lags where it was measured, 0 (no
    evidence either way) where it was not; events measured at under half the lags are
    dropped."""
    s = np.asarray(scores, np.float64)
    keep = np.isfinite(s).mean(axis=1) >= 0.5 if s.size else np.zeros(0, bool)
    s = s[keep]
    if not s.size:
        return s.reshape(0, scores.shape[1])
    with np.errstate(invalid="ignore"):
        z = (s - np.nanmean(s, axis=1, keepdims=True)) / (np.nanstd(s, axis=1, keepdims=True) + 1e-6)
    return np.nan_to_num(np.clip(z, -Z_CLIP, Z_CLIP), nan=0.0)


def bootstrap_agreement(z: np.ndarray, lags_s: np.ndarray, best: int, draws: int = BOOTSTRAP,
                        seed: int = 0) -> float:
    """Share of event resamples (with replacement) whose peak lies within ``AGREE_S`` of
    ``lags_s[best]``."""
    if not len(z):
        return 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(z), size=(draws, len(z)))
    peaks = lags_s[np.argmax(z[idx].mean(axis=1), axis=1)]
    return float(np.mean(np.abs(peaks - lags_s[best]) <= AGREE_S + 1e-9))


def closure_evidence(features, lags_s: np.ndarray, t0: float | None = None, t1: float | None = None):
    """Standardised per-event curves (events, lags) of the closures in [t0, t1], or None
    when the features carry no lip gap or no band energies."""
    V, A = features.visual, features.audio
    gap = V.mouth.get("mesh_inner", V.mouth.get("inner_open")) if V.mouth else None
    if gap is None or getattr(A, "hf", None) is None:
        return None
    events = _file_closures(V, gap)
    if t0 is not None:
        events = [e for e in events if t0 <= e.close and e.release <= t1]
    if not events:
        return np.zeros((0, lags_s.size))
    return standardise(event_scores(events, A.hf_t0, A.hf_rate, A.hf.T, lags_s))


def _file_closures(V, gap: np.ndarray) -> list[Closure]:
    """``find_closures`` over the whole file, found once per visual features (every window and
    probe of a file reads the same closures; the levels come from the whole file's gap)."""
    held = getattr(V, "_closures", None)
    if held is not None and held[0] is gap and held[1] is V.times:
        return held[2]
    events = find_closures(V.times, gap)
    try:
        V._closures = (gap, V.times, events)
    except AttributeError:  # features that take no attributes: found again next time
        pass
    return events


def closures_bias_ms() -> float:
    """The closures' own bias (fitted by ``avsync bench calibrate`` on training clips)."""
    from .correlation import calibration_table

    return float(calibration_table().get("closures", {}).get("bias_ms", 0.0))


@register("closures")
class ClosuresEstimator(Estimator):
    """Offset from lip closures (bilabials) against high-band audio quiet and release."""

    cue = "closures"
    faces = True

    def bias_ms(self) -> float:
        return closures_bias_ms()

    def estimate(self, features, t0=None, t1=None) -> Estimate:
        max_lag = self.options.max_lag_ms / 1000.0
        lags = np.arange(-max_lag, max_lag + 1e-9, LAG_STEP_S)
        z = closure_evidence(features, lags, t0, t1)
        if z is None:
            return Estimate.abstain("no lip landmarks or band energies", cue=self.cue)
        if len(z) < MIN_EVENTS:
            return Estimate.abstain(f"too few lip closures ({len(z)} < {MIN_EVENTS})", cue=self.cue)
        if float(np.std(features.audio.hf)) < MIN_AUDIO_SPREAD_DB:
            return Estimate.abstain("silent or steady audio", cue=self.cue)
        curve = z.mean(axis=0)
        best = int(np.argmax(curve))
        far = np.abs(lags - lags[best]) > 2 * AGREE_S
        runner = float(curve[far].max()) if far.any() else -np.inf
        agree = bootstrap_agreement(z, lags, best)
        peak = float(curve[best])
        stats = {"events": int(len(z)), "agreement": agree, "peak": peak, "runner_up": runner}
        why = None
        if peak < MIN_PEAK:
            why = f"no lag fits the closures (peak {peak:.2f} < {MIN_PEAK})"
        elif runner > MAX_RUNNER_UP * peak:
            why = f"several lags fit the closures equally (runner-up {runner / peak:.2f} of the peak)"
        elif agree < MIN_AGREEMENT:
            why = f"closures disagree (bootstrap {agree:.2f} < {MIN_AGREEMENT})"
        if why is not None:
            e = Estimate.abstain(why, cue=self.cue)
            e.stats = stats
            return e
        # audio ``lag`` after the picture means the audio lags: offset (audio lead) = -lag
        offset = -lags[best] * 1000.0 - self.bias_ms()
        profile = LagProfile(-lags[::-1] * 1000.0 - self.bias_ms(), curve[::-1].copy(), "correlation")
        return Estimate(offset_ms=float(offset), confidence=agree, profile=profile, cue=self.cue, stats=stats)
