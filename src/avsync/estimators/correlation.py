"""Weight-free estimation by lagged correlation of a visual cue with an audio cue.

Subclasses say which (visual, audio) signal pairs to correlate; this class puts them
on a common 100 Hz grid, correlates each pair over lags, averages the profiles,
picks the peak with sub-sample precision, removes the cue's natural bias (measured
on real clips, see :mod:`avsync.bench.calibrate`) and turns the peak statistics into
a calibrated probability of being within one frame.
"""
from __future__ import annotations

import json
from abc import abstractmethod
from functools import lru_cache
from importlib import resources

import numpy as np

from .base import Estimate, Estimator, LagProfile
from .xcorr import Peak, find_peak, lagged_pearson_many

GRID_HZ = 100.0
#: peaks closer than this to the best one are the same peak (for the runner-up)
EXCLUDE_MS = 80.0


#: a table installed by :func:`use_calibration` (the calibration command fits in steps)
_installed: dict | None = None


@lru_cache(maxsize=1)
def _shipped_table() -> dict:
    try:
        text = resources.files("avsync").joinpath("data/calibration.json").read_text()
        return json.loads(text)
    except (FileNotFoundError, OSError, ValueError):
        return {}


def calibration_table() -> dict:
    """Per-method bias and confidence model, fitted by ``avsync bench calibrate``."""
    return _installed if _installed is not None else _shipped_table()


def use_calibration(table: dict | None) -> None:
    """Use ``table`` instead of the shipped calibration (None: back to the shipped one)."""
    global _installed
    _installed = table


#: the statistics a confidence model may read, by name (a fitted model lists the names it used)
FEATURES = {
    "height": lambda s: s["height"],
    "margin": lambda s: s["margin"],
    "margin_per_spread": lambda s: s["margin"] / max(s["spread"], 1e-3),
    "log_support": lambda s: np.log1p(s["support_s"]),
    "at_edge": lambda s: float(s["at_edge"]),
    "agreement": lambda s: s["agreement"],
    "log_closures": lambda s: np.log1p(s["closure_events"]),
    "closure_fit": lambda s: s["closure_fit"],
    # how far the peak stands above the peaks of surrogate pairings (clipped: a few clips'
    # huge values must not steer a linear model)
    "null_z": lambda s: float(np.clip(s["null_z"], -5.0, 8.0)),
}
#: what a model without a feature list was fitted on (older calibration tables)
LEGACY = ("height", "margin", "margin_per_spread", "log_support", "at_edge", "agreement")
#: the statistic a feature is computed from, where its name differs
NEEDS = {"margin_per_spread": "spread", "log_support": "support_s", "log_closures": "closure_events"}


def feature_names(stats: dict) -> list[str]:
    """Every feature these statistics can give (a fit uses those all its rows give)."""
    return [k for k in FEATURES if NEEDS.get(k, k) in stats]


def peak_features(stats: dict, names=None) -> np.ndarray:
    """The peak statistics a confidence model reads, in the order of ``names`` (default: the
    legacy set, plus the closures' count and fit when the estimate weighed lip closures)."""
    if names is None:
        names = list(LEGACY) + (["log_closures", "closure_fit"] if "closure_events" in stats else [])
    return np.array([FEATURES[k](stats) for k in names], np.float64)


def confidence_from(method: str, stats: dict) -> float:
    """Calibrated P(|error| <= 1 frame) from the peak statistics (0 when uncalibrated
    and the peak sits at the range edge; otherwise a logistic model)."""
    cal = calibration_table().get(method)
    mu = sd = None
    if cal is not None:
        mu = np.asarray(cal.get("mean", ()), np.float64)
        sd = np.asarray(cal.get("scale", ()), np.float64)
        names = cal.get("features")
        if names is None:  # an older table: the legacy statistics in their order
            x = peak_features(stats)
        elif all(k in FEATURES for k in names) and len(names) == mu.size:
            # a statistic this estimate lacks sits at the fit's mean (it says nothing either way)
            x = np.array([FEATURES[k](stats) if NEEDS.get(k, k) in stats else mu[i]
                          for i, k in enumerate(names)], np.float64)
        else:
            x = None
        if x is None or len(cal.get("coef", ())) != x.size or mu.size != x.size or sd.size != x.size:
            cal = None  # fitted on other statistics (an older calibration file): treat as uncalibrated
    if cal is None:
        # Uncalibrated fallback: a conservative guess from the margin alone.
        z = -3.0 + 12.0 * stats["margin"] - 3.0 * float(stats["at_edge"])
        return float(1.0 / (1.0 + np.exp(-z)))
    w = np.asarray(cal["coef"], np.float64)
    z = float(cal["intercept"] + np.dot(w, (x - mu) / sd))
    return gated(cal, stats, float(1.0 / (1.0 + np.exp(-z))))


#: below its table's null gate an answer's confidence is at most this (never "confident")
GATED_MAX = 0.45


def gated(cal: dict, stats: dict, p: float) -> float:
    """``p`` capped at GATED_MAX when the peak does not stand out from the surrogate pairings
    by the table's ``null_gate`` (a null_z below it; see calibrate.fit_null_gate)."""
    gate = cal.get("null_gate")
    z = stats.get("null_z")
    if gate is None or z is None or not np.isfinite(z) or z >= gate:
        return p
    return min(p, GATED_MAX)


def _mean_profile(profiles: list[np.ndarray]) -> np.ndarray:
    stack = np.vstack(profiles)
    cnt = np.isfinite(stack).sum(0)
    return np.where(cnt > 0, np.nansum(stack, axis=0) / np.maximum(cnt, 1), np.nan)


#: surrogate pairings per estimate: the audio reversed in time and turned circularly to
#: SURROGATES evenly spaced starts keeps its loudness rhythm and pauses but can no longer
#: match the picture, so the peaks they reach show how high a peak gets by chance on this
#: very pair of signals (a null pair's peak is no higher than theirs; a true one stands out)
SURROGATES = 12
#: the spread of the surrogates' peaks is floored at this (few, similar surrogates)
SURROGATE_SD_FLOOR = 0.02


def surrogate_peaks(pairs: list, max_lag: int, min_overlap: int, count: int = SURROGATES,
                    books: dict | None = None) -> np.ndarray:
    """The highest mean correlation over lags of each surrogate pairing of ``pairs``; ``books``:
    transforms already made of these signals (:func:`lagged_pearson_many`), reused."""
    out = []
    reversed_ = {}
    books = {} if books is None else books  # the picture signals' transforms, kept for every surrogate
    for k in range(count):
        turned = {}
        jobs = []
        for v, a, *_ in pairs:
            t = turned.get(id(a))
            if t is None:
                r = reversed_.get(id(a))
                if r is None:
                    r = reversed_[id(a)] = np.asarray(a, np.float64)[::-1]
                t = turned[id(a)] = np.roll(r, int(round(k * r.size / count)))
            jobs.append((v, t))
        # one transform per distinct picture signal and per turned sound (the pairs share them);
        # a turned sound's transforms are dropped after its surrogate, so memory stays that of
        # one surrogate (an hour of signal: ~13 MB each, not 12 x that)
        m = _mean_profile(lagged_pearson_many(jobs, max_lag, min_overlap=min_overlap, overlap_weight=True,
                                              books=books))
        for book in books.values():
            for t in turned.values():
                book.forget(t)
        if np.isfinite(m).any():
            out.append(float(np.nanmax(m)))
    return np.array(out, np.float64)


def null_z(height: float, peaks: np.ndarray) -> float:
    """How many (floored) standard deviations ``height`` stands above the surrogates' peaks."""
    if peaks.size < 3:
        return 0.0
    return float((height - peaks.mean()) / max(float(peaks.std()), SURROGATE_SD_FLOOR))


#: how observer groups combine: "mean" (z-scored group means averaged) or "best" (the group
#: whose own peak stands furthest above its runner-up, in z units)
GROUP_MODE = "mean"


def _combine(profiles: list[np.ndarray], groups: list) -> np.ndarray:
    """The mean of the pair profiles; when pairs come in groups (the same cue seen by different
    observers, e.g. two landmark models), each group's mean as z-scores over lags, combined by
    ``GROUP_MODE``, so each observer weighs the same whatever its pair count and scale."""
    if len(set(groups)) <= 1 or any(g is None for g in groups):
        return _mean_profile(profiles)
    zs = []
    for g in dict.fromkeys(groups):
        m = _mean_profile([p for p, h in zip(profiles, groups) if h == g])
        if np.isfinite(m).sum() >= 3:
            zs.append((m - np.nanmean(m)) / (np.nanstd(m) + 1e-9))
    if not zs:
        return _mean_profile(profiles)
    if GROUP_MODE == "best" and len(zs) > 1:
        margins = []
        for z in zs:
            pk = find_peak(z, int(round(EXCLUDE_MS / 1000 * GRID_HZ)))
            margins.append(-np.inf if pk is None or pk.at_edge else pk.margin)
        return zs[int(np.argmax(margins))]
    return _mean_profile(zs)


class CorrelationEstimator(Estimator):
    """Shared machinery of the weight-free estimators."""

    cue = "generic"
    min_support_s = 1.0

    @abstractmethod
    def signals(self, features, grid: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]] | str:
        """(visual, audio) pairs on ``grid``; a string says why the span cannot be assessed."""

    def sharpen(self, features, lags_ms: np.ndarray, profile: np.ndarray, t0, t1) -> tuple[np.ndarray, dict]:
        """Hook: the averaged correlation profile over raw lags (ms, before the bias) combined
        with other evidence of the same span; returns the profile to pick the peak from and
        stats to report.  The default keeps the profile."""
        return profile, {}

    def bias_ms(self) -> float:
        return float(calibration_table().get(self.name, {}).get("bias_ms", 0.0))

    def estimate(self, features, t0=None, t1=None) -> Estimate:
        return self._estimate(features, t0, t1, True)

    def lag_profile(self, features, t0=None, t1=None):
        # the profile does not depend on the surrogates (they only feed the confidence)
        return self._estimate(features, t0, t1, False).profile

    def _estimate(self, features, t0, t1, surrogates: bool) -> Estimate:
        V, A = features.visual, features.audio
        lo = min(V.times[0], A.t0) if t0 is None else t0
        hi = max(V.times[-1], A.times[-1]) if t1 is None else t1
        if hi - lo < 0.5:
            return Estimate.abstain("span too short", self.cue)
        grid = lo + np.arange(int(np.floor((hi - lo) * GRID_HZ)) + 1) / GRID_HZ
        pairs = self.signals(features, grid)
        if isinstance(pairs, str):
            return Estimate.abstain(pairs, self.cue)
        max_lag = int(round(self.options.max_lag_ms / 1000 * GRID_HZ))
        supports, groups = [], []
        for v, a, *group in pairs:
            both = np.isfinite(v) & np.isfinite(a)
            supports.append(both.sum() / GRID_HZ)
            groups.append(group[0] if group else None)
        # the shared sound is transformed once, and the picture signals' transforms are kept for
        # the surrogate pairings below (the same numbers as lagged_pearson pair by pair)
        books: dict = {}
        profiles = lagged_pearson_many([(v, a) for v, a, *_ in pairs], max_lag,
                                       min_overlap=int(self.min_support_s * GRID_HZ), overlap_weight=True,
                                       books=books)
        support = float(np.max(supports)) if supports else 0.0
        if support < self.min_support_s:
            return Estimate.abstain("too little usable signal", self.cue)
        prof = _combine(profiles, groups)
        lags_ms = (np.arange(-max_lag, max_lag + 1)) * 1000.0 / GRID_HZ
        prof, extra = self.sharpen(features, lags_ms, prof, t0, t1)
        exclude = int(round(EXCLUDE_MS / 1000 * GRID_HZ))
        peak = find_peak(prof, exclude)
        if peak is None:
            return Estimate.abstain("no correlation could be measured", self.cue)
        raw_ms = (peak.lag - max_lag) * 1000.0 / GRID_HZ
        grouped = len(set(groups)) > 1 and None not in groups
        if grouped or extra:
            plain = _mean_profile(profiles)
            # the lag was picked on a rescaled or sharpened profile: its statistics (what the
            # confidence reads) are those of the plain mean correlation at that lag, which keep
            # their absolute meaning (a null pair's peak stays low)
            at = find_peak(plain, exclude, at=int(round(peak.lag)))
            if at is None:
                return Estimate.abstain("no correlation could be measured", self.cue)
            peak = Peak(lag=peak.lag, height=at.height, second=at.second, at_edge=peak.at_edge, spread=at.spread)
        # agreement: how many individual pair profiles peak within 2 frames of the mean one
        agree = []
        for p in profiles:
            pk = find_peak(p, int(round(EXCLUDE_MS / 1000 * GRID_HZ)))
            agree.append(pk is not None and abs((pk.lag - max_lag) * 10.0 - raw_ms) <= 80.0)
        stats = {
            "height": peak.height,
            "margin": peak.margin,
            "spread": peak.spread,
            "support_s": support,
            "at_edge": bool(peak.at_edge),
            "agreement": float(np.mean(agree)) if agree else 0.0,
            "raw_offset_ms": raw_ms,
        }
        if surrogates:
            peaks = surrogate_peaks(pairs, max_lag, int(self.min_support_s * GRID_HZ), books=books)
            stats["null_z"] = null_z(peak.height, peaks)
        stats.update(extra)
        if "closure_curve" in stats:  # the closures' fit at the chosen lag
            curve = stats.pop("closure_curve")
            stats["closure_fit"] = float(curve[int(round(peak.lag))]) if curve is not None else 0.0
        offset = raw_ms - self.bias_ms()
        conf = confidence_from(self.name, stats)
        if peak.at_edge:
            conf = min(conf, 0.05)
        return Estimate(offset_ms=float(offset), confidence=conf,
                        profile=LagProfile(lags_ms - self.bias_ms(), prof, "correlation"),
                        cue=self.cue, stats=stats)
