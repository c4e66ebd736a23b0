"""Per-second feature vectors built from the saved arrays of :mod:`avsync.classify.features`.

``va(arr)``: the seed's two numbers per segment, V(t) and A(t): mean motion energy and
mean audio RMS in the segment, each divided by its maximum over the file (so both lie
in [0, 1]).  ``rich(arr)``: those plus level, digital silence, flatness, MFCC and the
lag-profile cues (see ``RICH_NAMES``), the core estimator's windows and the sparse-event
estimator's (``ev_*``, :func:`avsync.classify.features.event_cues`; zeros for feature files
written before them, and for silent segments).
"""
from __future__ import annotations

import numpy as np

from .features import N_MFCC

EVENT_NAMES = ["ev_ok", "ev_offset", "ev_abs", "ev_conf", "ev_abs_x_conf", "ev_null_z", "ev_matched",
               "ev_margin", "ev_events_v", "ev_events_a", "ev_rel_abs", "ev_rel_x_conf",
               "ev_whole_ok", "ev_whole_abs", "ev_whole_conf", "ev_whole_null_z"]
LAG_BINS_S = (-0.8, -0.5, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5, 0.8)
RICH_NAMES = (
    ["V", "A", "log_motion", "level_db", "level_db_std", "zero_frac", "has_audio", "flatness",
     "flatness_max", "mfcc_delta"]
    + [f"mfcc{i}" for i in range(N_MFCC)]
    + ["r_lag0", "r_max", "lag_max_s", "r_gap", "profile_std", "r_min"]
    + [f"r_at_{b:+.1f}" for b in LAG_BINS_S]
    + ["env_corr0"]
    + ["core_ok", "core_abs_offset", "core_offset", "core_conf", "core_abs_x_conf", "core_gap0",
       "core_whole_abs", "core_whole_conf", "core_lips", "core_dev_whole"]
    + [f"core_at_{b:+.1f}" for b in LAG_BINS_S]
    # relative to the whole file: a section that differs from the rest of the clip
    + ["core_rel_offset", "core_rel_abs", "core_rel_x_conf", "lag_rel", "lag_rel_abs"]
    # the core estimator in a 1.5-s window (sharper in time), also relative to the file
    + ["short_ok", "short_offset", "short_abs", "short_conf", "short_abs_x_conf", "short_rel_abs",
       "short_rel_x_conf"]
    # the sparse-event estimator (visual impacts vs audio onsets) in the 3-s window and over
    # the whole file; ev_rel_*: the window's offset minus the median over the file's windows
    + EVENT_NAMES
)


def _audio_index(arr: dict, t0: float, t1: float) -> slice:
    a0 = float(arr["audio_t0"])
    i0 = int(np.floor((t0 - a0) * 100 + 1e-6))
    i1 = int(np.floor((t1 - a0) * 100 + 1e-6))
    n = arr["rms"].size
    return slice(min(max(i0, 0), n), min(max(i1, 0), n))


def _seg_means(arr: dict) -> tuple[np.ndarray, np.ndarray]:
    seg = arr["seg_t"]
    t_end = float(arr["t_end"])
    ft, m = arr["frame_t"], arr["motion"]
    V, A = [], []
    for s in seg:
        e = min(s + 1.0, t_end)
        sel = (ft >= s) & (ft < e)
        V.append(float(np.mean(m[sel])) if sel.any() else 0.0)
        r = arr["rms"][_audio_index(arr, s, e)]
        A.append(float(np.mean(r)) if r.size else 0.0)
    return np.asarray(V), np.asarray(A)


def va(arr: dict) -> np.ndarray:
    """(S, 2): normalised [V(t), A(t)] per segment."""
    V, A = _seg_means(arr)
    V = V / V.max() if V.size and V.max() > 1e-9 else np.zeros_like(V)
    A = A / A.max() if A.size and A.max() > 1e-9 else np.zeros_like(A)
    return np.stack([V, A], 1).astype(np.float32)


def rich(arr: dict) -> np.ndarray:
    """(S, len(RICH_NAMES)) per-segment vectors."""
    seg = arr["seg_t"]
    t_end = float(arr["t_end"])
    base = va(arr)
    Vraw, _ = _seg_means(arr)
    has_audio = bool(arr["has_audio"]) and arr["rms"].size > 0
    lags = np.arange(-1.0, 1.0 + 1e-9, 0.01)
    prof_all = arr["lag_profile_full"]
    rows = []
    for i, s in enumerate(seg):
        e = min(s + 1.0, t_end)
        sl = _audio_index(arr, s, e)
        rms = arr["rms"][sl].astype(np.float64)
        if has_audio and rms.size:
            db = 20 * np.log10(rms + 1e-5)
            zero = float(np.mean(arr["zero_frac"][sl]))
            loud = db > -60
            fl = arr["flatness"][sl]
            flat = float(np.mean(fl[loud])) if loud.any() else 0.0
            flat_max = float(np.max(fl[loud])) if loud.any() else 0.0
            mf = arr["mfcc"][sl]
            mfcc = mf.mean(0)
            mdelta = float(np.mean(np.abs(np.diff(mf, axis=0)))) if mf.shape[0] > 1 else 0.0
            lvl, lvl_sd = float(db.mean()), float(db.std())
        else:
            zero, flat, flat_max, mdelta, lvl, lvl_sd = 1.0, 0.0, 0.0, 0.0, -100.0, 0.0
            mfcc = np.zeros(N_MFCC)
        # a silent segment: the correlation windows around it measure its neighbours, not it
        silent = zero > 0.5 or lvl < -70.0
        p = prof_all[i].astype(np.float64) if i < prof_all.shape[0] else np.full(lags.size, np.nan)
        if not silent and np.isfinite(p).sum() > 10:
            k = int(np.nanargmax(p))
            near0 = np.abs(lags) <= 0.041
            r0 = float(np.nanmax(p[near0])) if np.isfinite(p[near0]).any() else 0.0
            rmax, lagmax = float(p[k]), float(lags[k])
            at = [float(np.nan_to_num(np.nanmax(p[np.abs(lags - b) <= 0.051]))) for b in LAG_BINS_S]
            lag_feats = [r0, rmax, lagmax, rmax - r0, float(np.nanstd(p)), float(np.nanmin(p))] + at
        else:
            lag_feats = [0.0] * (6 + len(LAG_BINS_S))
        # envelope coupling at lag 0 within the segment's 3-s neighbourhood
        env = 0.0
        if has_audio and not silent:
            ft = arr["frame_t"]
            sel = (ft >= s - 1) & (ft < e + 1)
            if sel.sum() > 5:
                at_ = float(arr["audio_t0"]) + np.arange(arr["rms"].size) / 100.0
                a_on_f = np.interp(ft[sel], at_, np.log(arr["rms"].astype(np.float64) + 1e-4))
                mv = arr["motion"][sel].astype(np.float64)
                if mv.std() > 1e-9 and a_on_f.std() > 1e-9:
                    env = float(np.corrcoef(mv, a_on_f)[0, 1])
        rows.append([base[i, 0], base[i, 1], float(np.log10(Vraw[i] + 1e-3)), lvl, lvl_sd, zero,
                     float(has_audio), flat, flat_max, mdelta] + list(mfcc) + lag_feats
                    + [env] + _core(arr, i, silent=silent))
    X = np.asarray(rows, np.float32)
    X = np.concatenate([X, _relative(X), _short(arr, X)], 1)
    X = np.concatenate([X, _events(arr, X)], 1)
    return np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)


def _short(arr: dict, X: np.ndarray) -> np.ndarray:
    """The 1.5-s window cues (zeros for feature files without them, and for silent segments)."""
    S = len(X)
    out = np.zeros((S, 7), np.float32)
    if "core_short_offset_ms" not in arr:
        return out
    off = arr["core_short_offset_ms"][:S].astype(np.float64) / 1000.0
    conf = arr["core_short_conf"][:S].astype(np.float64)
    col = {n: i for i, n in enumerate(RICH_NAMES)}
    silent = (X[:, col["zero_frac"]] > 0.5) | (X[:, col["level_db"]] < -70.0)
    ok = np.isfinite(off) & ~silent[: off.size]
    if not ok.any():
        return out
    med = float(np.median(off[ok]))
    rel = np.abs(off - med)
    n = off.size
    out[:n][ok] = np.stack([np.ones_like(off), off, np.abs(off), conf, np.abs(off) * conf, rel, rel * conf],
                           1)[ok].astype(np.float32)
    return out


def _events(arr: dict, X: np.ndarray) -> np.ndarray:
    """The sparse-event cues (``EVENT_NAMES``): per segment, the events estimator's 3-s window
    (offset in s, |offset|, confidence, |offset| x confidence, null z, matched events, margin,
    visual and audio events in the window, |offset - the median offset of the file's windows
    with an answer| and that times the confidence), then the whole-file estimate.  Unknown
    statistics (NaN in the feature file) read 0; all zeros for silent segments and for
    feature files without the cues."""
    S = len(X)
    out = np.zeros((S, len(EVENT_NAMES)), np.float32)
    if "ev_offset_ms" not in arr:
        return out
    from .features import EVENT_STATS

    col = {n: i for i, n in enumerate(RICH_NAMES)}
    silent = (X[:, col["zero_frac"]] > 0.5) | (X[:, col["level_db"]] < -70.0)
    off = arr["ev_offset_ms"][:S].astype(np.float64) / 1000.0
    n = off.size
    conf = arr["ev_conf"][:S].astype(np.float64)
    st = np.nan_to_num(arr["ev_stats"][:S].astype(np.float64), nan=0.0)
    k = {name: j for j, name in enumerate(EVENT_STATS)}
    ok = np.isfinite(off) & ~silent[:n]
    rel = np.zeros(n)
    if ok.any():
        rel[ok] = np.abs(off[ok] - np.median(off[ok]))
    offz = np.where(ok, off, 0.0)
    per = np.stack([ok.astype(np.float64), offz, np.abs(offz), np.where(ok, conf, 0.0),
                    np.abs(offz) * np.where(ok, conf, 0.0), st[:, k["null_z"]], st[:, k["matched"]],
                    st[:, k["margin"]], st[:, k["visual_events"]], st[:, k["audio_events"]], rel,
                    rel * np.where(ok, conf, 0.0)], 1)
    per[silent[:n]] = 0.0
    w = arr["ev_whole"].astype(np.float64)
    w_ok = bool(np.isfinite(w[0]))
    whole = [float(w_ok), abs(w[0]) / 1000.0 if w_ok else 0.0, w[1] if w_ok else 0.0,
             float(np.nan_to_num(w[2 + k["null_z"]]))]
    out[:n, : per.shape[1]] = per
    out[:n, per.shape[1]:] = np.asarray(whole)[None, :]
    out[:n][silent[:n]] = 0.0
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _relative(X: np.ndarray) -> np.ndarray:
    """Each segment's core offset and motion/audio lag minus their median over the file's
    segments that have one (zeros where the segment has none)."""
    col = {n: i for i, n in enumerate(RICH_NAMES)}
    ok = X[:, col["core_ok"]] > 0
    off = X[:, col["core_offset"]]
    conf = X[:, col["core_conf"]]
    rel = np.zeros(len(X), np.float32)
    if ok.any():
        rel[ok] = off[ok] - np.median(off[ok])
    has_lag = X[:, col["r_max"]] != 0
    lag = X[:, col["lag_max_s"]]
    lrel = np.zeros(len(X), np.float32)
    if has_lag.any():
        lrel[has_lag] = lag[has_lag] - np.median(lag[has_lag])
    return np.stack([rel, np.abs(rel), np.abs(rel) * conf, lrel, np.abs(lrel)], 1).astype(np.float32)


def _core(arr: dict, i: int, silent: bool = False) -> list[float]:
    """Cues from the core estimator's window around segment ``i`` (zeros when it abstained,
    or when the segment itself is silent: its window's estimate says nothing about it)."""
    from .features import CORE_LAGS_MS

    n = 10 + len(LAG_BINS_S)
    if "core_offset_ms" not in arr or i >= arr["core_offset_ms"].size:
        return [0.0] * n
    off = float(arr["core_offset_ms"][i])
    conf = float(arr["core_conf"][i])
    w_off, w_conf = (float(x) for x in arr["core_whole"])
    lips = float(bool(arr["core_lips"]))
    prof = arr["core_profile"][i].astype(np.float64)
    if silent or not np.isfinite(off) or np.isfinite(prof).sum() < 5:
        return [0.0] * (n - 2) + [lips, 0.0]
    lags = CORE_LAGS_MS / 1000.0
    z = (prof - np.nanmean(prof)) / (np.nanstd(prof) + 1e-9)
    near0 = np.abs(lags) <= 0.041
    gap = float(np.nanmax(z) - np.nanmax(z[near0])) if np.isfinite(z[near0]).any() else 0.0
    at = [float(np.nan_to_num(np.nanmax(z[np.abs(lags - b) <= 0.061]))) for b in LAG_BINS_S]
    w_abs = abs(w_off) / 1000.0 if np.isfinite(w_off) else 0.0
    dev = abs(off - w_off) / 1000.0 if np.isfinite(w_off) else 0.0
    return [1.0, abs(off) / 1000.0, off / 1000.0, conf, abs(off) / 1000.0 * conf, gap, w_abs, w_conf, lips, dev] + at
