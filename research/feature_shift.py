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

from avsync.bench.shift import CONFIDENT, SHIFTS_MS, read_truth


#: leave-speakers-out folds of ../shared/media/speech for the learned models (clip-name prefixes):
#: 1 = GRID + LRS2 00001/00004, 2 = generated talking heads (SadTalker, VideoReTalking, AniPortrait),
#: 3 = syncnet_example, LRS2 00008/16/22, VisualVoice, AVE.  The exclusions a fold's training needs
#: (same speakers in media/train) are in research/fcn_folds_train.sh.
SPEECH_FOLDS = {
    1: ("grid_bbaf2n grid_brbk7n grid_lbax4n grid_lbbc2a grid_lrwp9a grid_lwbsza grid_id2_vcd_swwp2s "
        "lrs2_demo_00001 lrs2_demo_00004").split(),
    2: ("sadtalker_RD_Radio2_000 sadtalker_WDA_AlexandriaOcasioCortez_000 sadtalker_WDA_KatieHill_000 "
        "vretalk_face1 vretalk_face2 vretalk_face3 aniportrait_pose_ref_video").split(),
    3: ("syncnet_example lrs2_demo_00008 lrs2_demo_00016 lrs2_demo_00022 visualvoice_noisy_restaurant "
        "ave_0lFf-HP86Q0").split(),
}


def _bases() -> dict:
    """Clip name -> its own base offset from ../shared/media/TRUTH.csv (None when unknown)."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "media", "TRUTH.csv")
    return {os.path.basename(k): v[0] for k, v in read_truth(path).items()} if os.path.isfile(path) else {}


def fold_of(name: str) -> int | None:
    """The fold of a speech clip (by file name), None when it is in none."""
    stem = os.path.splitext(os.path.basename(name))[0]
    for k, prefixes in SPEECH_FOLDS.items():
        if any(stem == p or stem.startswith(p + "_") or stem.startswith(p + ".") for p in prefixes):
            return k
    return None


def load_clip_features(paths: list[str], trajectories: bool = True) -> dict:
    from avsync.features import extract_features
    from avsync.media import open_media

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
    a.hf_t0 = a.hf_t0 - shift_ms / 1000.0
    f.audio = a
    for k in ("_fcn_cache",):
        if k in f.__dict__:
            del f.__dict__[k]
    return f


def evaluate(features: dict, methods: list[tuple], shifts=SHIFTS_MS,
             clips: set | None = None) -> list[dict]:
    """Rows for every clip (or only ``clips``), shift and method; the null partner of a clip is the
    next clip in name order among ALL ``features``.  A method is ``(name, weights)`` or
    ``(name, weights, {DetectOptions field: value}, label)``."""
    from avsync.api import DetectOptions, analyse

    names = sorted(features)
    rows = []
    for i, name in enumerate(names):
        if clips is not None and name not in clips:
            continue
        base = _bases().get(name)
        other = names[(i + 1) % len(names)]
        F = features[name]
        fps = float(F.info.video_fps or 25.0)
        for d in shifts:
            for kind, src in (("shift", None), ("null", features[other])):
                f = shifted(F, d, src)
                for m, w, *more in methods:
                    extra = more[0] if more else {}
                    r = analyse(f, DetectOptions(method=m, timeline=False, weights=w, **extra))
                    rows.append({"clip": name, "kind": kind, "shift_ms": d, "truth_ms": None if base is None else base + d,
                                 "estimate_ms": r.offset_ms, "confidence": r.confidence, "verdict": r.verdict,
                                 "method": more[1] if len(more) > 1 else (
                                     m if w is None else f"{m}@{os.path.basename(w)}"),
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
