"""Small pure functions over arrays: grids, filters, lagged correlation, peaks.

Conventions: two signals ``v`` (picture) and ``a`` (sound) on the same uniform time
grid.  The profile at lag ``L`` (samples) compares ``v[n]`` with ``a[n - L]``; a peak at
``L > 0`` means the sound happens ``L`` samples BEFORE the matching picture, i.e. the
audio leads (positive offset, the contract's sign).  NaN marks missing samples
(no face, outside a stream); they never count, and each lag is normalised over its
own overlap, so nothing is zero-padded into agreement at the edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def to_grid(times: np.ndarray, values: np.ndarray, grid: np.ndarray, max_gap: float) -> np.ndarray:
    """Linear interpolation of irregular samples onto ``grid``; NaN outside the data,
    across gaps longer than ``max_gap`` seconds, and next to NaN input samples."""
    times = np.asarray(times, np.float64)
    values = np.asarray(values, np.float64)
    out = np.full(grid.shape, np.nan)
    if times.size < 2:
        return out
    j = np.searchsorted(times, grid, side="right")
    inside = (j > 0) & (j < times.size)
    j = np.clip(j, 1, times.size - 1)
    t0, t1 = times[j - 1], times[j]
    v0, v1 = values[j - 1], values[j]
    w = np.where(t1 > t0, (grid - t0) / np.where(t1 > t0, t1 - t0, 1.0), 0.0)
    ok = inside & ((t1 - t0) <= max_gap) & np.isfinite(v0) & np.isfinite(v1)
    out[ok] = (v0 + w * (v1 - v0))[ok]
    return out


def nan_moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of width ``width`` samples ignoring NaN."""
    width = max(1, min(int(width), x.size))
    m = np.isfinite(x)
    xz = np.where(m, x, 0.0)
    k = np.ones(width)
    s = np.convolve(xz, k, mode="same")
    c = np.convolve(m.astype(np.float64), k, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / c, np.nan)


def highpass(x: np.ndarray, width: int, edge: int | None = None) -> np.ndarray:
    """Remove the slow trend (moving average over ``width`` samples); NaN stays NaN.

    The first and last ``edge`` valid samples of every run are set to NaN: filter
    transients there would line up at lag 0 in both streams and fake agreement."""
    y = x - nan_moving_average(x, int(width) | 1)  # odd: a centred window
    y[~np.isfinite(x)] = np.nan
    return drop_run_edges(y, width // 4 if edge is None else edge)


def drop_run_edges(x: np.ndarray, edge: int) -> np.ndarray:
    """NaN the first/last ``edge`` samples of every finite run."""
    if edge <= 0:
        return x
    x = x.copy()
    m = np.isfinite(x).astype(np.int8)
    d = np.diff(np.concatenate([[0], m, [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    for s, e in zip(starts, ends):
        x[s : min(e, s + edge)] = np.nan
        x[max(s, e - edge) : e] = np.nan
    return x


def _xcorr_full(x: np.ndarray, y: np.ndarray, max_lag: int, nfft: int) -> np.ndarray:
    """c[L] = sum_n x[n] * y[n - L] for L in [-max_lag, max_lag]."""
    return _back(np.fft.rfft(x, nfft), np.fft.rfft(y, nfft), max_lag, nfft)


class _Spectra:
    """rfft's of the per-signal inputs of :func:`lagged_pearson` (valid mask, zero-filled values,
    their squares), kept per array so that pairs sharing a signal transform it once."""

    def __init__(self, n: int, nfft: int):
        self.n, self.nfft, self._memo = n, nfft, {}

    def of(self, x: np.ndarray) -> tuple:
        key = id(x)
        got = self._memo.get(key)
        if got is None or got[0] is not x:
            x64 = np.asarray(x, np.float64)
            x64 = np.pad(x64, (0, self.n - x64.size), constant_values=np.nan)
            m = np.isfinite(x64)
            x0 = np.where(m, x64, 0.0)
            f = np.fft.rfft
            got = (x, f(m.astype(np.float64), self.nfft), f(x0, self.nfft), f(x0 * x0, self.nfft))
            self._memo[key] = got
        return got[1:]

    def forget(self, x: np.ndarray) -> None:
        """Drop the spectra of ``x`` (a signal no later pair will use)."""
        self._memo.pop(id(x), None)


def _back(X: np.ndarray, Y: np.ndarray, max_lag: int, nfft: int) -> np.ndarray:
    """The lags [-max_lag, max_lag] of the cross-correlation whose spectra are X and Y."""
    c = np.fft.irfft(X * np.conj(Y), nfft)
    return np.concatenate([c[-max_lag:], c[: max_lag + 1]]) if max_lag > 0 else c[:1]


def lagged_pearson_many(pairs: list, max_lag: int, min_overlap: int = 10,
                        overlap_weight: bool = False, books: dict | None = None) -> list[np.ndarray]:
    """:func:`lagged_pearson` of every ``(v, a)`` in ``pairs`` (the same numbers), with each
    distinct array transformed once: many pairs sharing a picture or a sound cost about half.
    ``books``: the transforms kept between calls (a dict of :class:`_Spectra` by size; signals
    can be dropped from it with :meth:`_Spectra.forget`)."""
    out = []
    books = {} if books is None else books
    for v, a in pairs:
        n = max(np.size(v), np.size(a))
        nfft = 1 << int(np.ceil(np.log2(n + max_lag + 1)))
        book = books.get((n, nfft))
        if book is None:
            book = books[(n, nfft)] = _Spectra(n, nfft)
        MV, V0, VV = book.of(v)
        MA, A0, AA = book.of(a)
        cnt = np.round(_back(MV, MA, max_lag, nfft))
        sv = _back(V0, MA, max_lag, nfft)
        sa = _back(MV, A0, max_lag, nfft)
        svv = _back(VV, MA, max_lag, nfft)
        saa = _back(MV, AA, max_lag, nfft)
        sva = _back(V0, A0, max_lag, nfft)
        out.append(_pearson_from_sums(cnt, sv, sa, svv, saa, sva, min_overlap, overlap_weight))
    return out


def _pearson_from_sums(cnt, sv, sa, svv, saa, sva, min_overlap: int, overlap_weight: bool) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sva - sv * sa / cnt
        varv = svv - sv * sv / cnt
        vara = saa - sa * sa / cnt
        r = cov / np.sqrt(np.maximum(varv, 0) * np.maximum(vara, 0))
    r[(cnt < max(min_overlap, 3)) | ~np.isfinite(r)] = np.nan
    r = np.clip(r, -1.0, 1.0)
    if overlap_weight and cnt.max() > 0:
        r = r * (cnt / cnt.max())
    return r


def lagged_pearson(v: np.ndarray, a: np.ndarray, max_lag: int, min_overlap: int = 10,
                   overlap_weight: bool = False) -> np.ndarray:
    """Pearson correlation of ``v[n]`` and ``a[n - L]`` over their common valid samples,
    for every lag ``L`` in ``[-max_lag, max_lag]``; NaN where the overlap is too small.

    ``overlap_weight`` scales each lag's r by its overlap relative to the largest one, so
    a lag that compares only a sliver of the signals cannot win on luck (short clips)."""
    v = np.asarray(v, np.float64)
    a = np.asarray(a, np.float64)
    n = max(v.size, a.size)
    v = np.pad(v, (0, n - v.size), constant_values=np.nan)
    a = np.pad(a, (0, n - a.size), constant_values=np.nan)
    mv, ma = np.isfinite(v), np.isfinite(a)
    v0, a0 = np.where(mv, v, 0.0), np.where(ma, a, 0.0)
    mvf, maf = mv.astype(np.float64), ma.astype(np.float64)
    nfft = 1 << int(np.ceil(np.log2(n + max_lag + 1)))
    cnt = _xcorr_full(mvf, maf, max_lag, nfft)
    sv = _xcorr_full(v0, maf, max_lag, nfft)
    sa = _xcorr_full(mvf, a0, max_lag, nfft)
    svv = _xcorr_full(v0 * v0, maf, max_lag, nfft)
    saa = _xcorr_full(mvf, a0 * a0, max_lag, nfft)
    sva = _xcorr_full(v0, a0, max_lag, nfft)
    cnt = np.round(cnt)
    return _pearson_from_sums(cnt, sv, sa, svv, saa, sva, min_overlap, overlap_weight)


def parabolic_peak(y: np.ndarray, i: int) -> tuple[float, float]:
    """Sub-sample position and height of the peak at index ``i`` (parabola through 3 points)."""
    if i <= 0 or i >= y.size - 1 or not np.all(np.isfinite(y[i - 1 : i + 2])):
        return float(i), float(y[i])
    a, b, c = y[i - 1], y[i], y[i + 1]
    den = a - 2 * b + c
    if den >= 0:
        return float(i), float(b)
    d = 0.5 * (a - c) / den
    d = float(np.clip(d, -0.5, 0.5))
    return i + d, float(b - 0.25 * (a - c) * d)


@dataclass(frozen=True)
class Peak:
    lag: float  # in samples, sub-sample
    height: float
    second: float  # best value outside the exclusion zone around the peak
    at_edge: bool  # the best value lies at the end of the search range
    spread: float  # robust spread of the profile (for a z-like margin)

    @property
    def margin(self) -> float:
        return self.height - self.second


def find_peak(profile: np.ndarray, exclude: int, at: int | None = None) -> Peak | None:
    """Best peak of a (possibly NaN-holed) profile, with the runner-up outside
    ``+-exclude`` samples.  Peaks at the range edges are flagged: a maximum there
    says only that the true peak lies further out.  ``at``: describe the profile's value at
    that index instead of its maximum (a lag chosen on other evidence)."""
    y = np.asarray(profile, np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 3 or (at is not None and not ok[at]):
        return None
    i = int(np.nanargmax(np.where(ok, y, -np.inf))) if at is None else int(at)
    lag, h = parabolic_peak(y, i)
    far = ok.copy()
    far[max(0, i - exclude) : i + exclude + 1] = False
    # the runner-up must be a local maximum (or a range edge), not the slope of the main peak
    second = -1.0
    if far.any():
        idx = np.flatnonzero(far)
        yl = np.where(ok, y, -np.inf)
        left = np.concatenate([[-np.inf], yl[:-1]])
        right = np.concatenate([yl[1:], [-np.inf]])
        locmax = (yl >= left) & (yl >= right)
        cand = idx[locmax[idx]]
        if cand.size:
            second = float(y[cand].max())
        else:  # a single clean peak: only the range ends compete with it
            ends = [k for k in (idx[0], idx[-1]) if k in (np.flatnonzero(ok)[0], np.flatnonzero(ok)[-1])]
            second = float(max(y[k] for k in ends)) if ends else -1.0
    valid = np.flatnonzero(ok)
    at_edge = i <= valid[0] + 1 or i >= valid[-1] - 1
    med = np.median(y[ok])
    spread = float(np.median(np.abs(y[ok] - med)) * 1.4826) or 1e-6
    return Peak(lag=lag, height=h, second=second, at_edge=at_edge, spread=spread)
