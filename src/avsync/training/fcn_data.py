"""Training data of FCN-SyncNet (numpy only; no torch here): the feature cache, clip lists
grouped by speaker, and training pairs.  The model's input grid and the preparation of a clip
(:class:`Track`, :func:`track_from_raw`) are in :mod:`avsync.nn.fcn_io`, shared with ``detect``.

Training pairs are made by :func:`sample_pair`: a window of video frames and the
clip's own audio moved by ``d`` frames (label ``d``), or, for negatives, another
clip's audio (no true offset).  Clips are grouped by speaker / source for every split.
"""
from __future__ import annotations

import csv
import hashlib
import os

import numpy as np

from ..nn.fcn_io import HOPS, N_LIP, N_MEL, Track, raw_from_features

VIDEO_EXT = {".mp4", ".avi", ".mkv", ".mov", ".mpg", ".mpeg", ".flv", ".webm", ".m4v", ".ts"}
CACHE_VERSION = 1


# --------------------------------------------------------------------------- cache
def cache_key(path: str) -> str:
    st = os.stat(path)
    h = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{int(st.st_mtime)}|{CACHE_VERSION}".encode())
    return h.hexdigest()[:16]


def load_or_extract(path: str, cache_dir: str | None) -> dict:
    """Raw features of ``path`` from ``cache_dir`` (npz), extracting them when missing."""
    if cache_dir:
        f = os.path.join(cache_dir, f"{cache_key(path)}.npz")
        if os.path.isfile(f):
            with np.load(f) as z:
                return {k: z[k] for k in z.files}
    from ..features import extract_features
    from ..media import open_media

    with open_media(path) as src:
        raw = raw_from_features(extract_features(src, faces="auto", trajectories=True))
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = os.path.join(cache_dir, f".{cache_key(path)}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **raw)
        os.replace(tmp, f)
    return raw


# --------------------------------------------------------------------------- clip lists
def find_media(dirs: list[str]) -> list[tuple[str, str]]:
    """(path, group) of every video under ``dirs``.  The group (speaker or source) comes
    from a MANIFEST.csv ``speaker_id`` column when the folder has one, else from the layout
    (:func:`layout_group`: VoxCeleb ``idNNNNN/VIDEO/00001.mp4`` -> the speaker id; LRS2-style
    ``VIDEO/00001.mp4`` -> the video), else from the file name's first two ``_``-separated
    parts (``grid_s1_...`` -> ``grid_s1``)."""
    out = []
    for d in dirs:
        if os.path.isfile(d):
            out.append((d, default_group(d)))
            continue
        speakers = {}
        man = os.path.join(d, "MANIFEST.csv")
        if os.path.isfile(man):
            with open(man, newline="") as fh:
                for row in csv.DictReader(fh):
                    if row.get("speaker_id"):
                        speakers[os.path.basename(row["file"])] = row["speaker_id"]
        for root, _dirs, files in os.walk(d):
            _dirs.sort()
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() in VIDEO_EXT:
                    p = os.path.join(root, name)
                    out.append((p, speakers.get(name) or layout_group(p, d) or default_group(p)))
    return out


def training_clips(dirs: list[str], exclude=()) -> list[tuple[str, str]]:
    """:func:`find_media` less the clips whose path contains an ``exclude`` entry or whose group is
    one; a one-line UsageError when nothing is left."""
    items = [(p, g) for p, g in find_media(dirs) if not any(x and (x in p or x == g) for x in exclude)]
    if not items:
        from ..errors import UsageError

        raise UsageError(f"no usable video clips under {', '.join(dirs)}")
    return items


def layout_group(path: str, root: str) -> str | None:
    """The speaker / source of a clip in a dataset layout whose file names are only numbers:
    VoxCeleb (``.../id10001/<video id>/00001.mp4``: the ``idNNNNN`` folder) and LRS2 / LRS3
    (``.../<video id>/00001.mp4``: the video, the best unit those layouts give).  None otherwise
    (AVE-style ``VideoID.mp4`` and named clips fall back to the file name)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if not stem.isdigit():
        return None
    rel = os.path.relpath(os.path.dirname(os.path.abspath(path)), os.path.abspath(root))
    parts = [x for x in rel.split(os.sep) if x not in ("", ".")]
    for x in reversed(parts):
        if len(x) == 7 and x.startswith("id") and x[2:].isdigit():
            return x
    return parts[-1] if parts else None


def default_group(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    parts = stem.split("_")
    return "_".join(parts[:2]) if len(parts) > 2 else parts[0]


def is_validation_group(group: str, share: int = 10) -> bool:
    """Deterministic speaker-level split: about 1/``share`` of the groups."""
    return int(hashlib.sha1(group.encode()).hexdigest(), 16) % share == 0


# --------------------------------------------------------------------------- training pairs
def sample_pair(tracks: list[Track], i: int, rng: np.random.Generator, length: int, max_shift: int,
                negative: bool = False, augment: bool = True):
    """One training example from track ``i``: (vis [L, VIS_DIM], vmask [L], aud [HOPS*L, N_MEL],
    amask [HOPS*L], label) with the audio moved EARLIER by ``label`` frames (label in
    [-max_shift, max_shift]); ``label = -999`` for a negative (another clip's audio)."""
    tr = tracks[i]
    T = len(tr)
    L = min(length, T)
    s = int(rng.integers(0, T - L + 1))
    vis = tr.vis[s:s + L].copy()
    vmask = tr.vmask[s:s + L].copy()
    if negative and len(tracks) > 1:
        j = int(rng.integers(0, len(tracks) - 1))
        j = j + (j >= i)
        # avoid the same speaker when possible
        for _ in range(5):
            if tracks[j].group != tr.group:
                break
            j = int(rng.integers(0, len(tracks)))
            if j == i:
                j = (j + 1) % len(tracks)
        src, label = tracks[j], -999
        d = int(rng.integers(-max_shift, max_shift + 1))
        a0 = int(rng.integers(0, max(1, len(src) - L + 1))) + d
    else:
        src = tr
        label = int(rng.integers(-max_shift, max_shift + 1))
        a0 = s + label  # a'(t) = a(t + d): the audio moved earlier by d frames
    aud, amask = window_audio(src, a0, L, L)
    if augment:
        vis, aud = _augment(vis, vmask, aud, amask, rng)
    if L < length:  # pad to the batch length (masked)
        pv = length - L
        vis = np.concatenate([vis, np.zeros((pv, vis.shape[1]), np.float32)])
        vmask = np.concatenate([vmask, np.zeros(pv, np.float32)])
        aud = np.concatenate([aud, np.zeros((HOPS * pv, N_MEL), np.float32)])
        amask = np.concatenate([amask, np.zeros(HOPS * pv, np.float32)])
    return vis, vmask, aud, amask, label


def window_audio(src, a0: int, L: int, n: int, per_frame: int = HOPS) -> tuple[np.ndarray, np.ndarray]:
    """(audio [per_frame * n, D], mask [HOPS * n]) of frames ``a0`` .. ``a0 + L`` of the track ``src``
    (``per_frame`` rows of ``src.aud`` and HOPS of ``src.amask`` a frame), zero and masked where
    the track has none; rows past ``L`` frames stay zero (padding)."""
    aud = np.zeros((per_frame * n, src.aud.shape[1]), np.float32)
    amask = np.zeros(HOPS * n, np.float32)
    lo, hi = max(0, a0), min(len(src), a0 + L)
    if hi > lo:
        aud[per_frame * (lo - a0):per_frame * (hi - a0)] = src.aud[per_frame * lo:per_frame * hi]
        amask[HOPS * (lo - a0):HOPS * (hi - a0)] = src.amask[HOPS * lo:HOPS * hi]
    return aud, amask


def _augment(vis, vmask, aud, amask, rng):
    vis = vis.copy()
    # landmark jitter, face-size error and a small in-plane rotation of the mouth shape
    xy = vis[:, :2 * N_LIP].reshape(len(vis), N_LIP, 2)
    ang = rng.normal(0, 0.05)
    c, s = np.cos(ang), np.sin(ang)
    xy = xy @ np.array([[c, s], [-s, c]], np.float32) * rng.uniform(0.85, 1.15)
    xy = xy + rng.normal(0, 0.01, xy.shape).astype(np.float32)
    vis[:, :2 * N_LIP] = xy.reshape(len(vis), -1)
    vis[:, -1] *= rng.uniform(0.5, 1.5)
    vis[vmask == 0] = 0.0
    # random face drop-outs (tracking failures)
    if rng.random() < 0.2 and len(vis) > 10:
        a = int(rng.integers(0, len(vis) - 5))
        vis[a:a + int(rng.integers(1, 6))] = 0.0
    aud = aud.copy()
    # background noise in the (normalised) log-mel domain: soft max with a noise floor
    if rng.random() < 0.4:
        floor = rng.normal(rng.uniform(-1.0, 1.0), 0.3, aud.shape).astype(np.float32)
        aud = np.logaddexp(aud * 2.3, floor * 2.3) / 2.3
        m = amask > 0
        if m.sum() > 2:
            aud = (aud - aud[m].mean(0)) / max(aud[m].std(), 1e-3)
    aud = aud * rng.uniform(0.8, 1.2)
    aud[amask == 0] = 0.0
    return vis, aud.astype(np.float32)
