"""A fast stand-in for the shift benchmark: features are extracted ONCE per clip and the
shifts are applied to the audio timestamps (what a container shift does), so many
methods and many weights files are compared on identical inputs in seconds.

It is not the full benchmark (no re-encode, no padding of a content shift); use
``avsync bench shift`` for the headline figures.  Scores follow benchmarks.md 1:
absolute (vs base + shift, within one frame), null (video with another clip's audio,
false confidence = in_sync or confidence >= 0.5).
"""
from __future__ import annotations

import copy
import os

import numpy as np

from .shift import CONFIDENT, KNOWN_BASE_MS, SHIFTS_MS


def load_clip_features(paths: list[str], trajectories: bool = True) -> dict:
    from ..features import extract_features
    from ..media import open_media

    out = {}
    for p in paths:
        with open_media(p) as src:
            out[os.path.basename(p)] = extract_features(src, trajectories=trajectories)
    return out


def shifted(feats, shift_ms: float, audio_from=None):
    """Features whose audio is moved EARLIER by ``shift_ms`` (optionally another clip's audio)."""
    f = copy.copy(feats)
    a = copy.copy((audio_from or feats).audio)
    a.t0 = a.t0 - shift_ms / 1000.0
    f.audio = a
    for k in ("_fcn_cache",):
        if k in f.__dict__:
            del f.__dict__[k]
    return f


def evaluate(features: dict, methods: list[tuple[str, str | None]], shifts=SHIFTS_MS) -> list[dict]:
    from ..api import DetectOptions, analyse

    names = sorted(features)
    rows = []
    for i, name in enumerate(names):
        base = KNOWN_BASE_MS.get(name, 0.0)
        other = names[(i + 1) % len(names)]
        F = features[name]
        fps = float(F.info.video_fps or 25.0)
        for d in shifts:
            for kind, src in (("shift", None), ("null", features[other])):
                f = shifted(F, d, src)
                for m, w in methods:
                    r = analyse(f, DetectOptions(method=m, timeline=False, weights=w))
                    rows.append({"clip": name, "kind": kind, "shift_ms": d, "truth_ms": base + d,
                                 "estimate_ms": r.offset_ms, "confidence": r.confidence, "verdict": r.verdict,
                                 "method": m if w is None else f"{m}@{os.path.basename(w)}",
                                 "frame_ms": 1000.0 / fps, "duration_s": float(F.info.duration_s or 0.0)})
    return rows


def summarise(rows: list[dict]) -> dict:
    real = [r for r in rows if r["kind"] == "shift"]
    null = [r for r in rows if r["kind"] == "null"]
    out = {"n": len(real)}
    if real:
        err = np.array([np.inf if r["estimate_ms"] is None else abs(r["estimate_ms"] - r["truth_ms"]) for r in real])
        fr = np.array([r["frame_ms"] for r in real])
        conf = np.array([r["confidence"] for r in real])
        out["abs_1f"] = float(np.mean(err <= fr + 1e-6))
        out["abs_2f"] = float(np.mean(err <= 2 * fr + 1e-6))
        out["confident_wrong"] = float(np.mean((conf >= CONFIDENT) & (err > 2 * fr + 1e-6)))
        out["coverage"] = float(np.mean(conf >= CONFIDENT))
    if null:
        out["null_false_conf"] = float(np.mean([(r["verdict"] == "in_sync") or (r["confidence"] >= CONFIDENT)
                                                for r in null]))
    return out
