"""Non-speech content from sparse events: visual impacts matched with audio onsets.

Instead of correlating envelopes (:mod:`.motion`), this estimator finds discrete moments on
each side and asks at which lag they coincide:

* visual impacts: sudden deceleration or onset of motion in an image block (the per-block
  frame difference drops or jumps), and flashes (whole-frame brightness change); scene
  cuts (most blocks change at once) are excluded;
* audio onsets: peaks of the spectral flux, whole band and per high band, above an
  adaptive (running median + k MAD) threshold;
* matching: for every lag in +-max_lag the visual events are moved and each is scored by
  its distance to the nearest audio onset (Gaussian kernel); the count of events within
  the tolerance at the best lag, the margin over the runner-up lag (outside +-80 ms), and
  how far the best score stands above the best scores of circularly shifted audio events
  (a null) make the confidence.  Few events, or a periodic event train (its best lag is
  not unique), abstain.

Convention (as the correlation estimators): ``offset_ms = t_video - t_audio`` of matched
events, positive when the sound comes early.  The matched pairs go into ``stats``.
"""
from __future__ import annotations

import numpy as np

from ..report import LagProfile
from .base import Estimate, Estimator, flat_audio_reason, register

#: fewest events on either side, and fewest matched events, for an answer
MIN_EVENTS = 4
MIN_MATCHED = 4
#: peaks closer than this to the best lag are the same peak (runner-up)
EXCLUDE_MS = 80.0
#: kernel width of the match score (ms)
SIGMA_MS = 25.0
#: an audio onset this close to a shifted visual event is a match (ms, at least)
TOL_MS = 45.0
#: null surrogates (circular shifts of the audio events)
SURROGATES = 40
LAG_STEP_MS = 5.0
#: at most this many events per second are kept on each side (strongest first)
MAX_RATE_HZ = 4.0
#: an event exceeds this share of the clip's strong peaks (99.5th percentile over the median)
REL_FLOOR = 0.15


def adaptive_peaks(x: np.ndarray, times: np.ndarray, win_s: float, k: float, min_gap_s: float,
                   rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of ``x`` above a running median + ``k`` x running MAD (window ``win_s``),
    at least ``min_gap_s`` apart (the stronger wins).  Returns (times, strengths)."""
    x = np.nan_to_num(np.asarray(x, np.float64), nan=0.0)
    n = x.size
    if n < 5:
        return np.zeros(0), np.zeros(0)
    dt = float(np.median(np.diff(times))) if times.size > 1 else 0.01
    half = max(2, int(round(win_s / dt / 2)))
    pad = np.pad(x, half, mode="reflect")
    from numpy.lib.stride_tricks import sliding_window_view

    w = sliding_window_view(pad, 2 * half + 1)[:n]
    med = np.median(w, axis=1)
    mad = np.median(np.abs(w - med[:, None]), axis=1)
    floor = np.median(np.abs(x - np.median(x))) + 1e-9
    thr = med + k * np.maximum(mad, 0.5 * floor)
    # and a share of the clip's strong peaks, so that a quiet stretch's noise is no event
    thr = np.maximum(thr, np.median(x) + REL_FLOOR * (np.percentile(x, 99.5) - np.median(x)))
    is_max = np.r_[False, (x[1:-1] >= x[:-2]) & (x[1:-1] > x[2:]), False]
    cand = np.flatnonzero(is_max & (x > thr))
    if not cand.size:
        return np.zeros(0), np.zeros(0)
    strength = (x[cand] - med[cand]) / (np.maximum(mad[cand], 0.5 * floor) + 1e-9)
    order = np.argsort(-strength)
    keep: list[int] = []
    for i in order:
        if all(abs(times[cand[i]] - times[cand[j]]) >= min_gap_s for j in keep):
            keep.append(i)
    dur = max(float(times[-1] - times[0]), 1e-3)
    keep = keep[: max(MIN_EVENTS, int(np.ceil(rate_hz * dur)))]
    keep = sorted(keep, key=lambda i: cand[i])
    return times[cand[keep]], strength[keep]


def visual_events(V) -> tuple[np.ndarray, np.ndarray, int]:
    """Impact times from the per-block frame differences; returns (times, strengths, cuts)."""
    t = np.asarray(V.times, np.float64)
    bm = np.asarray(V.block_motion, np.float64)
    m = np.asarray(V.motion, np.float64)
    if bm.ndim != 2 or bm.shape[0] < 5:
        return np.zeros(0), np.zeros(0), 0
    bm = np.nan_to_num(bm, nan=0.0)
    m = np.nan_to_num(m, nan=0.0)
    scale = np.median(bm, axis=0) + np.percentile(bm, 90, axis=0) * 0.1 + 0.5
    z = bm / scale
    # cuts: most blocks change together far above their usual level
    cut = np.mean(z > 4.0, axis=1) > 0.6
    cuts = int(np.sum(cut & ~np.r_[False, cut[:-1]]))
    dz = np.diff(z, axis=0)  # dz[i] = z[i+1] - z[i]
    decel = np.maximum(-dz, 0.0)  # motion stops (impact): the drop after frame i+1
    onset = np.maximum(dz, 0.0)  # motion starts (a hit pushes something)
    # the active blocks carry the events; a block count keeps one noisy block from winning
    act = np.std(z, axis=0)
    top = np.argsort(-act)[: max(3, bm.shape[1] // 4)]
    s = np.sort(decel[:, top], axis=1)[:, -2:].mean(axis=1) + 0.5 * np.sort(onset[:, top], axis=1)[:, -2:].mean(axis=1)
    # flashes: whole-frame change in one frame
    s = s + 0.5 * np.maximum(np.diff(m) / (np.median(m) + 0.5), 0.0)
    # the drop between diffs i and i+1 happens at frame i (the frame both differences share)
    ts = t[:-1]
    bad = cut[:-1] | cut[1:]
    bad = bad | np.r_[False, bad[:-1]] | np.r_[bad[1:], False]
    s[bad] = 0.0
    fps = max(float(V.fps), 1.0)
    return (*adaptive_peaks(s, ts, win_s=2.0, k=3.0, min_gap_s=max(0.12, 2.5 / fps), rate_hz=MAX_RATE_HZ), cuts)


def audio_events(A) -> tuple[np.ndarray, np.ndarray]:
    """Onset times: spectral flux (whole band) and the high bands' rises, adaptive threshold."""
    t = A.times
    flux = np.asarray(A.flux, np.float64)
    sig = flux / (np.nanmedian(flux) + np.nanstd(flux) + 1e-9)
    hf = getattr(A, "hf", None)
    if hf is not None and np.ndim(hf) == 2 and hf.shape[0] > 10:
        th = A.hf_t0 + np.arange(hf.shape[0]) / A.hf_rate
        rise = np.maximum(np.diff(np.nan_to_num(np.asarray(hf, np.float64)), axis=0), 0.0)
        # per band, normalised, onto the flux grid (the max within each hop)
        r = rise / (np.median(rise, axis=0) + np.std(rise, axis=0) + 1e-9)
        rr = r.max(axis=1)
        idx = np.clip(np.searchsorted(t, th[1:]), 0, t.size - 1)
        band = np.zeros(t.size)
        np.maximum.at(band, idx, rr)
        sig = sig + 0.5 * band
    return adaptive_peaks(sig, t, win_s=1.5, k=3.0, min_gap_s=0.08, rate_hz=MAX_RATE_HZ)


def match_profile(tv: np.ndarray, ta: np.ndarray, lags_s: np.ndarray, sigma_s: float) -> np.ndarray:
    """Sum over visual events of exp(-d^2/2s^2), d = distance of (tv - lag) to the nearest onset."""
    if not tv.size or not ta.size:
        return np.zeros(lags_s.size)
    q = tv[None, :] - lags_s[:, None]  # expected audio times
    j = np.clip(np.searchsorted(ta, q), 1, ta.size - 1) if ta.size > 1 else np.zeros_like(q, int)
    d = np.abs(q - ta[j])
    if ta.size > 1:
        d = np.minimum(d, np.abs(q - ta[j - 1]))
    return np.exp(-0.5 * (d / sigma_s) ** 2).sum(axis=1)


def nearest(ta: np.ndarray, q: np.ndarray) -> np.ndarray:
    j = np.clip(np.searchsorted(ta, q), 1, max(ta.size - 1, 1))
    lo = ta[np.minimum(j - 1, ta.size - 1)]
    hi = ta[np.minimum(j, ta.size - 1)]
    return np.where(np.abs(q - lo) <= np.abs(q - hi), lo, hi)


def periodicity(times: np.ndarray) -> float:
    """How regular an event train is: 1 - CV of the intervals (1: metronome, <=0: irregular)."""
    if times.size < 4:
        return 0.0
    iv = np.diff(times)
    return float(1.0 - np.std(iv) / max(np.mean(iv), 1e-6))


def confidence_from(matched: int, n_v: int, null_z: float, margin: float, periodic: bool) -> float:
    """A fixed (not fitted) map of the match statistics to a confidence in [0, 1]."""
    if periodic or matched < MIN_MATCHED:
        return 0.0
    zterm = 1.0 / (1.0 + np.exp(-1.2 * (null_z - 4.0)))
    mterm = float(np.clip(margin / 2.0, 0.0, 1.0))
    frac = matched / max(n_v, 1)
    fterm = float(np.clip(frac / 0.4, 0.0, 1.0))
    return float(np.clip(zterm * (0.5 + 0.5 * mterm) * (0.6 + 0.4 * fterm), 0.0, 1.0))


@register("events")
class EventEstimator(Estimator):
    """Visual impacts (block-motion deceleration/onset, flashes; cuts excluded) matched to
    audio onsets (spectral flux, whole and high bands) as sparse events over lags."""

    cue = "events"
    faces = False

    def estimate(self, features, t0=None, t1=None) -> Estimate:
        try:
            return self._estimate(features, t0, t1)
        except (ValueError, IndexError, FloatingPointError) as e:  # malformed features: abstain
            return Estimate.abstain(f"event matching failed ({e.__class__.__name__})", self.cue)

    def estimate_windows(self, features, spans) -> tuple[Estimate, list[Estimate]]:
        """The whole-file estimate and one per ``(t0, t1)`` in ``spans`` (None: no window there),
        from ONE detection of the events: the same results as :meth:`estimate` on each span,
        without finding the file's impacts and onsets again for every window."""
        try:
            ev = self._events(features)
        except (ValueError, IndexError, FloatingPointError) as e:
            ab = Estimate.abstain(f"event matching failed ({e.__class__.__name__})", self.cue)
            return ab, [None if sp is None else ab for sp in spans]
        out = []
        for sp in [(None, None)] + list(spans):
            if sp is None:
                out.append(None)
                continue
            if isinstance(ev, Estimate):
                out.append(ev)
                continue
            try:
                out.append(self._match(features, ev, *sp))
            except (ValueError, IndexError, FloatingPointError) as e:
                out.append(Estimate.abstain(f"event matching failed ({e.__class__.__name__})", self.cue))
        return out[0], out[1:]

    def _events(self, features):
        """(visual times, cuts, audio times) of the whole file, or an abstaining Estimate."""
        V, A = getattr(features, "visual", None), getattr(features, "audio", None)
        if V is None or A is None or len(V) < 5 or len(A) < 10:
            return Estimate.abstain("not enough picture or sound", self.cue)
        if V.still:
            return Estimate.abstain("the picture does not change", self.cue)
        tv, _, cuts = visual_events(V)
        ta, _ = audio_events(A)
        return tv, cuts, ta

    def _estimate(self, features, t0, t1) -> Estimate:
        ev = self._events(features)
        if isinstance(ev, Estimate):
            return ev
        return self._match(features, ev, t0, t1)

    def _match(self, features, ev, t0, t1) -> Estimate:
        V, A = features.visual, features.audio
        tv, cuts, ta = ev
        lo = -np.inf if t0 is None else t0
        hi = np.inf if t1 is None else t1
        keep_v = (tv >= lo) & (tv <= hi)
        tv = tv[keep_v]
        max_lag = self.options.max_lag_ms / 1000.0
        keep_a = (ta >= lo - max_lag) & (ta <= hi + max_lag)
        ta = ta[keep_a]
        stats = {"visual_events": int(tv.size), "audio_events": int(ta.size), "cuts": cuts}
        if ta.size < MIN_EVENTS:
            e = Estimate.abstain(flat_audio_reason(A) if not ta.size else f"only {ta.size} sound onsets", self.cue)
            e.stats = stats
            return e
        if tv.size < MIN_EVENTS:
            e = Estimate.abstain(f"only {tv.size} visual impacts", self.cue)
            e.stats = stats
            return e
        fps = max(float(V.fps), 1.0)
        sigma = max(SIGMA_MS / 1000.0, 0.4 / fps)
        tol = max(TOL_MS / 1000.0, 0.75 / fps)
        step = LAG_STEP_MS / 1000.0
        nl = int(round(max_lag / step))
        lags = np.arange(-nl, nl + 1) * step
        prof = match_profile(tv, ta, lags, sigma)
        b = int(np.argmax(prof))
        far = np.abs(lags - lags[b]) > EXCLUDE_MS / 1000.0
        second = float(prof[far].max()) if far.any() else 0.0
        best = float(prof[b])
        # sub-step refinement: the mean offset of the matched pairs
        q = tv - lags[b]
        na = nearest(ta, q)
        hit = np.abs(na - q) <= tol
        matched = int(hit.sum())
        lag = lags[b]
        if matched:
            lag = float(np.median(tv[hit] - na[hit]))
        # null: the audio onsets circularly shifted by at least 2 x max_lag
        span0, span1 = min(tv[0], ta[0]) - max_lag, max(tv[-1], ta[-1]) + max_lag
        span = span1 - span0
        nulls = []
        if span > 4 * max_lag + 0.5:
            rng = np.random.default_rng(1234)
            for _ in range(SURROGATES):
                sh = rng.uniform(2 * max_lag, span - 2 * max_lag)
                ts = np.sort((ta - span0 + sh) % span + span0)
                nulls.append(float(match_profile(tv, ts, lags, sigma).max()))
        if nulls:
            mu, sd = float(np.mean(nulls)), float(np.std(nulls)) + 0.25
            null_z = (best - mu) / sd
        else:
            null_z = 0.0
        per_v, per_a = periodicity(tv), periodicity(ta)
        # periodic: a regular train whose best lag has a near-equal rival
        periodic = (max(per_v, per_a) > 0.75 and second > 0.8 * best)
        margin = best - second
        conf = confidence_from(matched, tv.size, null_z, margin, periodic)
        pairs = [[round(float(v), 3), round(float(a), 3)] for v, a, h in zip(tv, na, hit) if h]
        stats.update({
            "matched": matched, "score": round(best, 3), "runner_up": round(second, 3),
            "margin": round(margin, 3), "null_z": round(float(null_z), 3),
            "periodicity_visual": round(per_v, 3), "periodicity_audio": round(per_a, 3),
            "periodic": bool(periodic), "pairs": pairs, "raw_offset_ms": float(lag * 1000.0),
        })
        profile = LagProfile(lags * 1000.0, prof, "correlation")
        if periodic:
            return Estimate(offset_ms=None, confidence=0.0, profile=profile,
                            reason="the events are periodic (no unique lag)", cue=self.cue, stats=stats)
        if matched < MIN_MATCHED:
            return Estimate(offset_ms=None, confidence=0.0, profile=profile,
                            reason=f"only {matched} events agree", cue=self.cue, stats=stats)
        return Estimate(offset_ms=float(lag * 1000.0), confidence=conf, profile=profile, cue=self.cue, stats=stats)
