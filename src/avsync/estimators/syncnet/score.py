"""SyncNet scoring: embeddings of every 5-frame / 0.2-s window, the +-15-shift distance
curve, offset, min dist (LSE-D), confidence (LSE-C) and frame-wise confidence, as the
reference procedure computes them (``shared/spec/syncnet-v2.md``).

Imports torch: only the ``syncnet`` method and its benchmark load this module.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.signal import medfilt

from ...errors import UsageError
from ...features.faces import CROP
from ...nn.syncnet_v2 import FastAud, FastLip, SyncNetV2, audio_flops, lip_flops, load_model
from .mfcc import mfcc
from .prep import RATE

VSHIFT = 15
#: torch.nn.functional.pairwise_distance adds this to the difference before the norm
PAIRWISE_EPS = 1e-6
#: exact: torch fp32; fast: torch bfloat16; onnx: ONNX Runtime fp32
PRECISIONS = ("exact", "fast", "onnx")
#: lip windows per batch: small batches keep the first layer's output in cache (per-window CPU time
#: measured single-threaded for batches of 2..40: fp32 best near 4-8, bfloat16 near 8-12)
DEFAULT_BATCH = {"exact": 8, "fast": 12, "onnx": 8}


@dataclass
class SyncScore:
    """The reference's numbers for one face track (frame indices at 25 fps)."""

    curve: np.ndarray  # (31,) mean distance for shifts -15..+15 (video i vs audio i+s)
    offset: int  # frames at 25 fps; > 0: the audio leads (reference and contract sign)
    min_dist: float  # LSE-D
    confidence: float  # LSE-C
    framewise_conf: np.ndarray  # (windows,) median-filtered (kernel 9)
    dists: np.ndarray  # (windows, 31) distances of every window at every shift
    start_frame: int = 0  # first 25-fps frame of the track
    timing: dict = field(default_factory=dict)

    @property
    def windows(self) -> int:
        return int(self.dists.shape[0])


def score_from_embeddings(lip: np.ndarray, aud: np.ndarray, vshift: int = VSHIFT) -> SyncScore:
    """Curve, offset, min dist, confidence and frame-wise confidence from (n, 1024) embeddings."""
    n = min(len(lip), len(aud))
    lip = np.asarray(lip[:n], np.float64)
    aud = np.asarray(aud[:n], np.float64)
    width = 2 * vshift + 1
    padded = np.zeros((n + 2 * vshift, aud.shape[1]))
    padded[vshift:vshift + n] = aud
    dists = np.empty((n, width))
    for s in range(width):  # video window i vs audio window i + s - vshift (zeros outside)
        diff = lip - padded[s:s + n] + PAIRWISE_EPS
        dists[:, s] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return curve_score(dists, vshift)


def curve_score(dists: np.ndarray, vshift: int = VSHIFT) -> SyncScore:
    curve = dists.mean(0)
    idx = int(np.argmin(curve))
    med = float(np.median(curve))
    fconf = med - dists[:, idx]
    fconfm = medfilt(fconf, kernel_size=9) if fconf.size else fconf
    return SyncScore(curve=curve, offset=vshift - idx, min_dist=float(curve[idx]), confidence=med - float(curve[idx]),
                     framewise_conf=fconfm, dists=dists)


class Scorer:
    """Batched embeddings in inference mode; ``precision`` 'exact' (fp32), 'fast' (bfloat16) or
    'onnx' (ONNX Runtime fp32, see :mod:`avsync.nn.onnx`)."""

    def __init__(self, model: SyncNetV2 | str | os.PathLike, precision: str = "exact", batch: int | None = None,
                 threads: int | None = None, device: str | None = None):
        if precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        onnx = precision == "onnx"
        if onnx:  # before loading anything: a missing onnxruntime is one line
            from ...nn.onnx import require_onnx

            require_onnx()
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, threads))
        key = None
        if not isinstance(model, SyncNetV2):
            if onnx:
                from ...nn.onnx import weights_key

                key = weights_key(model)
            model = load_model(model)
        if onnx:
            device = "cpu"  # the ONNX path runs on onnxruntime's CPU provider
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.precision = precision
        self.dtype = torch.bfloat16 if precision == "fast" else torch.float32
        self.lip = FastLip(self.model, self.dtype).to(self.device).eval()
        self.aud = FastAud(self.model, self.dtype).to(self.device).eval()
        if onnx:
            from ...nn.onnx import build

            self.lip, self.aud = build(self.lip, self.aud, threads, key)
        self.batch = batch or DEFAULT_BATCH[precision]
        self.lip_seconds = 0.0
        self.aud_seconds = 0.0
        self.lip_windows = 0
        self.aud_windows = 0

    # -- audio --------------------------------------------------------------------------------
    def embed_audio(self, samples: np.ndarray, windows: int) -> np.ndarray:
        """Embeddings of audio windows 0..windows-1 (MFCC steps 4i .. 4i+19) of int16-scaled samples."""
        if windows <= 0:
            return np.zeros((0, 1024), np.float32)
        cc = mfcc(samples, RATE).T.astype(np.float32)  # (13, steps)
        t = time.perf_counter()
        out = []
        cct = torch.from_numpy(np.ascontiguousarray(cc))
        with torch.inference_mode():
            for i in range(0, windows, 4 * self.batch):
                idx = range(i, min(windows, i + 4 * self.batch))
                x = torch.stack([cct[:, 4 * k:4 * k + 20] for k in idx])[:, None].to(self.device)
                y = self.aud(x)
                out.append(y.float().cpu().numpy())
        self.aud_seconds += time.perf_counter() - t
        self.aud_windows += windows
        return np.concatenate(out)

    # -- video --------------------------------------------------------------------------------
    def lip_stream(self) -> "LipStream":
        return LipStream(self)

    def _embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(F, 224, 224, 3) uint8 BGR -> (F - 4, 1024) embeddings of windows 0..F-5."""
        t = time.perf_counter()
        with torch.inference_mode():
            fr = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).to(self.dtype)  # (F,3,H,W)
            n = fr.shape[0] - 4
            x = torch.stack([fr[i:i + 5].reshape(15, CROP, CROP) for i in range(n)])
            y = self.lip(x).float().cpu().numpy()
        self.lip_seconds += time.perf_counter() - t
        self.lip_windows += n
        return y

    def figures(self) -> dict:
        secs = self.lip_seconds + self.aud_seconds
        flops = self.lip_windows * lip_flops() + self.aud_windows * audio_flops()
        return {
            "precision": self.precision,
            "threads": torch.get_num_threads(),
            "device": str(self.device),
            "windows": self.lip_windows,
            "inference_s": round(secs, 3),
            "windows_per_s": round(self.lip_windows / secs, 1) if secs else None,
            "gflop_per_s": round(flops / secs / 1e9, 1) if secs else None,
        }


class LipStream:
    """Feed 224x224 BGR crops one by one (25 fps, consecutive); embeddings come out in batches."""

    def __init__(self, scorer: Scorer):
        self.scorer = scorer
        self.buf: list[np.ndarray] = []
        self.out: list[np.ndarray] = []
        self.frames = 0

    def add(self, crop: np.ndarray) -> None:
        self.buf.append(crop)
        self.frames += 1
        if len(self.buf) >= self.scorer.batch + 4:
            self._flush()

    def _flush(self) -> None:
        if len(self.buf) >= 5:
            self.out.append(self.scorer._embed_frames(np.stack(self.buf)))
            self.buf = self.buf[-4:]

    def finish(self) -> np.ndarray:
        self._flush()
        self.buf = []
        return np.concatenate(self.out) if self.out else np.zeros((0, 1024), np.float32)

