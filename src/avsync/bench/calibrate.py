"""Fit each weight-free estimator's bias and confidence model on real training clips.

``avsync bench calibrate TRAIN_DIR --out src/avsync/data/calibration.json``

* bias: the median raw offset the estimator finds on in-sync clips (for the lips this
  is the natural lip-leads-voice lead), removed from every later estimate;
* confidence: a logistic model of P(|error| <= 1 frame) from the peak statistics,
  fitted on the training clips with known added shifts (the audio features moved in
  time), on sub-windows of them, and on null pairs (another clip's audio: always wrong).

The clips used here (``media/train``) are disjoint from the benchmark clips
(``media/speech``, ``media/event``), so the benchmark checks the fit on other clips.
"""
from __future__ import annotations

import csv
import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np

SHIFTS_MS = [0, 40, -40, 120, -120, 240, -240, 400, -400, 600, -600]


def _features(path: str):
    from ..errors import AvsyncError
    from ..features import extract_features
    from ..media import open_media

    try:
        with open_media(path) as src:
            return path, extract_features(src, faces="auto")
    except AvsyncError:
        return path, None


def shifted(features, audio_from, shift_ms: float):
    """The same video with ``audio_from``'s audio moved EARLIER by ``shift_ms``."""
    a = replace(audio_from.audio, t0=audio_from.audio.t0 - shift_ms / 1000.0)
    return replace(features, audio=a)


def samples_for(method: str, feats: list, rng: random.Random) -> tuple[list[dict], list[float]]:
    """Raw estimates on real (shifted) pairs, sub-windows and null pairs."""
    from ..estimators import get_estimator

    est = get_estimator(method)
    rows = []
    zero = []
    for i, F in enumerate(feats):
        j = (i + 1 + rng.randrange(len(feats) - 1)) % len(feats)
        dur = float(F.visual.times[-1] - F.visual.times[0])
        for d in SHIFTS_MS:
            spans = [(None, None)]
            if dur > 7.0:
                t0 = F.visual.times[0] + rng.uniform(0, dur - 5.0)
                spans.append((t0, t0 + 5.0))
            for t0, t1 in spans:
                e = est.estimate(shifted(F, F, d), t0, t1)
                if e.assessable:
                    rows.append({"stats": e.stats, "truth": float(d), "null": False, "fps": F.visual.fps})
                    if d == 0 and t0 is None:
                        zero.append(e.stats["raw_offset_ms"])
            if d in (0, 240, -400):
                e = est.estimate(shifted(F, feats[j], d))
                if e.assessable:
                    rows.append({"stats": e.stats, "truth": None, "null": True, "fps": F.visual.fps})
    return rows, zero


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (standardised X)."""
    n, k = X.shape
    Xb = np.hstack([np.ones((n, 1)), X])
    w = np.zeros(k + 1)
    reg = np.full(k + 1, l2)
    reg[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-Xb @ w))
        g = Xb.T @ (p - y) + reg * w
        H = (Xb * (p * (1 - p))[:, None]).T @ Xb + np.diag(reg) + 1e-9 * np.eye(k + 1)
        step = np.linalg.solve(H, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[1:], float(w[0])


def calibrate(method: str, feats: list, seed: int = 0) -> tuple[dict, str]:
    from ..estimators.correlation import peak_features

    rng = random.Random(seed)
    rows, zero = samples_for(method, feats, rng)
    bias = float(np.median(zero)) if (method == "lips" and zero) else 0.0
    X = np.array([peak_features(r["stats"]) for r in rows])
    y = np.array([0.0 if r["null"] else float(abs(r["stats"]["raw_offset_ms"] - bias - r["truth"])
                                               <= 1000.0 / (r["fps"] or 25.0) + 1e-6) for r in rows])
    mu, sd = X.mean(0), X.std(0)
    sd[sd < 1e-9] = 1.0
    coef, icpt = fit_logistic((X - mu) / sd, y)
    p = 1.0 / (1.0 + np.exp(-(icpt + ((X - mu) / sd) @ coef)))
    lines = [f"{method}: {len(feats)} clips, {len(rows)} samples ({int(sum(r['null'] for r in rows))} null), "
             f"bias {bias:+.1f} ms, base rate {y.mean():.3f}"]
    for lo, hi in [(0, .2), (.2, .5), (.5, .8), (.8, 1.01)]:
        m = (p >= lo) & (p < hi)
        if m.any():
            lines.append(f"  predicted {lo:.1f}-{min(hi, 1):.1f}: n={m.sum():5d} observed {y[m].mean():.3f}")
    model = {"bias_ms": round(bias, 2), "coef": [round(float(c), 5) for c in coef], "intercept": round(icpt, 5),
             "mean": [round(float(v), 5) for v in mu], "scale": [round(float(v), 5) for v in sd],
             "n_clips": len(feats), "n_samples": len(rows)}
    return model, "\n".join(lines)


def train_clips(train_dir: str, n_short: int, seed: int) -> list[str]:
    """Every clip of the pool except the 1.2-s LRC-AR crops, plus ``n_short`` of those."""
    names = sorted(n for n in os.listdir(train_dir) if os.path.splitext(n)[1].lower() in
                   {".mp4", ".mpg", ".flv", ".avi", ".mkv", ".mov"})
    manifest = os.path.join(train_dir, "MANIFEST.csv")
    lrc = set()
    if os.path.exists(manifest):
        with open(manifest) as fh:
            for row in csv.DictReader(fh):
                if "lrc" in (row.get("source_repo", "") + row.get("file", "")).lower():
                    lrc.add(os.path.basename(row["file"]))
    longer = [n for n in names if n not in lrc]
    short = sorted(n for n in names if n in lrc)
    rng = random.Random(seed)
    picked = rng.sample(short, min(n_short, len(short)))
    return [os.path.join(train_dir, n) for n in longer + sorted(picked)]


def main(args) -> int:
    t = time.perf_counter()
    paths = train_clips(args.train_dir, args.short, args.seed)
    print(f"calibrate: extracting features of {len(paths)} clips", file=sys.stderr)
    with ProcessPoolExecutor(os.cpu_count() or 1) as ex:
        feats = [F for _, F in ex.map(_features, paths, chunksize=4) if F is not None]
    table = {}
    for method in ("lips", "motion"):
        usable = [F for F in feats if method != "lips" or F.visual.face_coverage >= 0.5]
        model, text = calibrate(method, usable, args.seed)
        model["command"] = (f"avsync bench calibrate {args.train_dir} --short {args.short} --seed {args.seed}")
        table[method] = model
        print(text)
    with open(args.out, "w") as fh:
        json.dump(table, fh, indent=1)
        fh.write("\n")
    print(f"wrote {args.out} in {time.perf_counter() - t:.0f} s")
    return 0
