"""Learned: FCN-SyncNet (``avsync train --model fcn``) over mouth trajectories and log-mel.

torch is imported only when this estimator runs a ``.pt`` model; an ``.onnx`` model (from
``avsync export-onnx``) runs on ONNX Runtime and never imports torch.  The model gives a distribution
over offsets for every frame; a span's estimate is the softmax of the frame logits
averaged over the span, so the whole-file estimate and every timeline window come
from one pass over the file (long files are processed in overlapping chunks whose
interiors are stitched together).
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from ..errors import MissingWeights, UsageError
from ..nn.fcn_io import FPS, HOPS, apply_confidence, decode_offset, raw_from_features, track_from_raw
from .base import Estimate, Estimator, EstimatorOptions, LagProfile, register

#: the model shipped with the package (trained and exported by the commands in the README):
#: the ONNX file runs without torch and is preferred when ONNX Runtime is installed
DEFAULT_WEIGHTS = ("data/fcn_syncnet.onnx", "data/fcn_syncnet.pt")
CHUNK_FRAMES = 1500  # 60 s at 25 fps
OVERLAP_FRAMES = 100  # context on each side of a chunk (> the receptive field + K)
MIN_FRAMES = 12


def _has(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def default_weights() -> str | None:
    """The shipped model file this installation can run (None when none can)."""
    from importlib import resources

    for rel in DEFAULT_WEIGHTS:
        try:
            p = resources.files("avsync").joinpath(rel)
            if not p.is_file():
                continue
        except (FileNotFoundError, OSError, ModuleNotFoundError):
            continue
        if _has("onnxruntime" if rel.endswith(".onnx") else "torch"):
            return str(p)
    return None


def shipped_model() -> bool:
    """Whether a model file ships with the package (whatever runtime is installed)."""
    from importlib import resources

    for rel in DEFAULT_WEIGHTS:
        try:
            if resources.files("avsync").joinpath(rel).is_file():
                return True
        except (FileNotFoundError, OSError, ModuleNotFoundError):
            continue
    return False


def auto_available() -> bool:
    """Whether ``--method auto`` may use the shipped model (it ships and a runtime is installed)."""
    return default_weights() is not None


@lru_cache(maxsize=4)
def _load(path: str, mtime: float):
    """The model of a weights file: ``.onnx`` (from ``avsync export-onnx``) runs on ONNX Runtime
    without torch; anything else is a torch ``.pt`` file."""
    if path.lower().endswith(".onnx"):
        from ..nn.fcn_onnx import FCNOnnx
        from ..nn.onnx import MissingOnnxRuntime

        try:
            return FCNOnnx(path)
        except MissingOnnxRuntime:
            raise
        except Exception as exc:
            raise UsageError(f"{path}: cannot load FCN-SyncNet ONNX model "
                             f"({' '.join(str(exc).split())[:200] or type(exc).__name__})") from None
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("method fcn needs torch: pip install 'avsync[fcn]' "
                         "(or an .onnx model from `avsync export-onnx` with the onnx extra)") from None
    from ..nn.fcn import load

    try:
        return load(path)
    except Exception as exc:
        raise UsageError(f"{path}: cannot load FCN-SyncNet weights "
                         f"({' '.join(str(exc).split())[:200] or type(exc).__name__})") from None


@register("fcn")
class FCNEstimator(Estimator):
    cue = "lips-fcn"
    faces = True
    trajectories = True

    def prepare(self) -> None:
        self._model()

    def _model(self):
        path = self.options.weights or default_weights()
        if path is None and shipped_model():
            raise UsageError("method fcn runs the model shipped with avsync on ONNX Runtime or torch, and neither "
                             "is installed: pip install 'avsync[onnx]' (ONNX Runtime) or 'avsync[fcn]' (torch)")
        if path is None:
            raise MissingWeights("method fcn needs a weights file: give --weights PATH "
                                 "(train one with `avsync train --model fcn`)")
        if not os.path.isfile(path):
            raise MissingWeights(f"{path}: weights file not found")
        return _load(os.path.abspath(path), os.path.getmtime(path))

    def frame_logits(self, features):
        """(grid times [T], frame logits [2K+1, T], validity [2K+1, T], K) for the whole file, cached
        on the features object."""
        cached = getattr(features, "_fcn_cache", None)
        model = self._model()
        if cached is not None and cached[0] is model:
            return cached[1]
        out = run_model(model, features)
        try:
            features._fcn_cache = (model, out)
        except AttributeError:
            pass
        return out

    def estimate(self, features, t0=None, t1=None) -> Estimate:
        V = features.visual
        if V.lips is None or features.audio.mel is None:
            raise UsageError("method fcn needs features extracted with trajectories=True")
        if V.face_detected is None or V.face_coverage < 0.1:
            return Estimate.abstain("no face with a visible mouth", self.cue)
        res = self.frame_logits(features)
        if res is None:
            return Estimate.abstain("span too short", self.cue)
        times, z, valid, K, scale = res
        sel = np.ones(times.size, bool)
        if t0 is not None:
            sel &= times >= t0
        if t1 is not None:
            sel &= times < t1
        v = valid[:, sel]
        frames = int((v.sum(0) > 0).sum())
        if frames < MIN_FRAMES:
            return Estimate.abstain("too few frames with a face and audio", self.cue)
        n = v.sum(1)
        mean = np.where(n > 0, (z[:, sel] * v).sum(1) / np.maximum(n, 1), -np.inf) * scale
        p = np.exp(mean - mean.max())
        p /= p.sum()
        off, raw = decode_offset(p, K)
        model = self._model()
        conf = apply_confidence(getattr(model, "calibration", None), raw, frames)
        lags = (np.arange(-K, K + 1)) * 40.0
        stats = {"frames": frames, "peak_mass": float(raw), "max_offset_ms": K * 40.0}
        offset_ms = float(off * 40.0)
        params = getattr(model, "fusion", None)
        if params and self.options.fusion:
            offset_ms, conf = self._fuse(params, features, t0, t1, offset_ms, float(conf), stats)
        return Estimate(offset_ms=offset_ms, confidence=float(conf),
                        profile=LagProfile(lags, p, "probability"), cue=self.cue, stats=stats)

    def _fuse(self, params, features, t0, t1, fcn_ms, fcn_conf, stats):
        """Stack with the weight-free lips estimate of the same span (:mod:`avsync.estimators.stacked`)."""
        from .stacked import Pair, fuse
        from .lips import LipsEstimator

        lips = LipsEstimator(EstimatorOptions(max_lag_ms=self.options.max_lag_ms)).estimate(features, t0, t1)
        fps = float(features.info.video_fps or 25.0)
        pair = Pair(lips.offset_ms, float(lips.confidence), fcn_ms, fcn_conf, 1000.0 / fps)
        off, conf, src = fuse(params, pair)
        stats.update({"fcn_offset_ms": fcn_ms, "fcn_confidence": fcn_conf, "lips_offset_ms": lips.offset_ms,
                      "lips_confidence": float(lips.confidence), "fused_from": src})
        return off, conf


def _inference(model):
    """(infer(aud, am, vis, vm) -> (frame logits [2K+1, T], validity [2K+1, T]), clip logit scale)
    for a torch model or an ONNX Runtime one (:class:`avsync.nn.fcn_onnx.FCNOnnx`, no torch)."""
    if hasattr(model, "frame_logits_np"):
        return model.frame_logits_np, float(model.clip_scale)
    import torch

    def infer(aud, am, vis, vm):
        with torch.no_grad():
            model(torch.from_numpy(aud), torch.from_numpy(vis), torch.from_numpy(am), torch.from_numpy(vm))
        return model.last["logits"][0].numpy(), model.last["valid"][0].numpy()

    return infer, float(model.clip_scale.detach())


def run_model(model, features):
    """Frame logits of a whole file, chunk by chunk (numpy out)."""
    raw = raw_from_features(features)
    vt = raw["v_times"]
    if vt.size < 2:
        return None
    start, end = float(vt[0]), float(vt[-1])
    T = int(np.floor((end - start) * FPS)) + 1
    if T < MIN_FRAMES:
        return None
    K = model.K
    infer, scale = _inference(model)
    zs = np.zeros((2 * K + 1, T), np.float32)
    vs = np.zeros((2 * K + 1, T), np.float32)
    for c0 in range(0, T, CHUNK_FRAMES):
        c1 = min(T, c0 + CHUNK_FRAMES)
        lo, hi = max(0, c0 - OVERLAP_FRAMES), min(T, c1 + OVERLAP_FRAMES)
        tr = track_from_raw(raw, start + lo / FPS - 1e-6, start + (hi - 1) / FPS + 1e-6)
        if tr is None:
            continue
        n = min(len(tr), hi - lo)
        z, val = infer(tr.aud[:HOPS * n].T[None].copy(), tr.amask[:HOPS * n][None].copy(),
                       tr.vis[:n].T[None].copy(), tr.vmask[:n][None].copy())
        a, b = c0 - lo, min(n, c1 - lo)
        zs[:, c0:c0 + (b - a)] = np.where(val[:, a:b] > 0, z[:, a:b], 0.0)
        vs[:, c0:c0 + (b - a)] = val[:, a:b]
    return start + np.arange(T) / FPS, zs, vs, K, scale


def frame_offsets(features, weights: str | None = None, smooth_s: float = 1.0):
    """Dense output: (times [T], offsets_ms [T], confidences [T]) from the frame logits
    averaged over a centred ``smooth_s`` window (a single frame alone is too noisy)."""
    from .base import EstimatorOptions

    est = FCNEstimator(EstimatorOptions(weights=weights))
    res = est.frame_logits(features)
    if res is None:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    times, z, valid, K, scale = res
    w = max(1, int(round(smooth_s * 25)))
    k = np.ones(w)
    num = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, z * valid)
    den = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, valid)
    mean = np.where(den > 0, num / np.maximum(den, 1), -np.inf) * scale
    mean = mean - mean.max(0, keepdims=True)
    p = np.exp(mean)
    p /= p.sum(0, keepdims=True)
    offs, confs = np.zeros(times.size), np.zeros(times.size)
    for t in range(times.size):
        offs[t], confs[t] = decode_offset(p[:, t], K)
    return times, offs * 40.0, confs
