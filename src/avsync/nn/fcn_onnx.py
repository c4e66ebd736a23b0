"""FCN-SyncNet as an ONNX model: export from a ``.pt`` file (torch) and inference with
ONNX Runtime (no torch).

:func:`export_fcn_onnx` traces :class:`~avsync.nn.fcn.FCNSyncNet` with dynamic batch and
time axes and writes one self-contained ``.onnx`` file: the network, and as ``metadata_props``
the format tag, the model configuration (``max_offset`` K, channels, input sizes), the
clip-level logit scale and the confidence calibration fitted at the end of training, so the
``.onnx`` file alone is enough for ``avsync detect --method fcn --weights MODEL.onnx``.

Graph inputs (float32): ``audio`` [B, N_MEL, 4T] (100 Hz log-mel), ``amask`` [B, 4T],
``video`` [B, VIS_DIM, T] (25 Hz mouth trajectories), ``vmask`` [B, T]; the audio must have
exactly :data:`~avsync.nn.fcn_io.HOPS` hops per video frame (as every caller builds it).
Outputs: ``sync_probs`` [B, 2K+1, T], ``frame_logits`` [B, 2K+1, T] (masked offsets at -1e4),
``valid`` [B, 2K+1, T], ``clip_logits`` [B, 2K+1], ``audio_features`` / ``video_features``
[B, C, T] -- the torch model's ``forward`` outputs and its ``last`` dict.

This module imports torch only inside :func:`export_fcn_onnx`; :class:`FCNOnnx` needs only
numpy and onnxruntime (the ``onnx`` extra).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

FORMAT = "avsync-fcn-onnx/1"
INPUTS = ("audio", "amask", "video", "vmask")
OUTPUTS = ("sync_probs", "frame_logits", "valid", "clip_logits", "audio_features", "video_features")
OPSET = 17


@dataclass
class ExportResult:
    out: str
    size_bytes: int
    max_offset: int
    opset: int
    max_deviation: float | None  # largest |ORT - torch| of the frame logits on a check input, None if not checked


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def export_fcn_onnx(path_pt: str | os.PathLike, path_onnx: str | os.PathLike, opset: int = OPSET,
                    verify: bool = True) -> ExportResult:
    """Export the FCN-SyncNet weights file ``path_pt`` (written by ``avsync train --model fcn``)
    to ``path_onnx`` (written to a temporary name and renamed when complete).  With ``verify``
    the written file is run by ONNX Runtime on a random 10-s input with a masked gap and its
    frame logits compared with torch's (``ExportResult.max_deviation``)."""
    path_pt, path_onnx = os.fspath(path_pt), os.fspath(path_onnx)
    try:
        import torch
    except ImportError:
        raise UsageError("avsync export-onnx needs torch: pip install 'avsync[fcn]'") from None
    from .onnx import export_bytes, require_onnx
    from .fcn import load

    _, onnx = require_onnx("avsync export-onnx")
    if not os.path.isfile(path_pt):
        raise UsageError(f"{path_pt}: weights file not found")
    try:
        model = load(path_pt)
    except Exception as exc:
        raise UsageError(f"{path_pt}: cannot load FCN-SyncNet weights ({_one_line(exc)})") from None
    folder = os.path.dirname(os.path.abspath(path_onnx))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UsageError(f"{path_onnx}: cannot write (folder missing or read-only)")

    class Graph(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, audio, amask, video, vmask):
            probs, a, v = self.net(audio, video, amask, vmask)
            last = self.net.last
            return probs, last["logits"], last["valid"], last["clip_logits"], a, v

    cfg = model.config
    T = 40
    example = _example(torch, 1, T, cfg["n_mel"], cfg["vis_dim"], seed=0)
    bt, fr, hp = "batch", "frames", "hops"
    axes = {"audio": {0: bt, 2: hp}, "amask": {0: bt, 1: hp}, "video": {0: bt, 2: fr}, "vmask": {0: bt, 1: fr},
            "sync_probs": {0: bt, 2: fr}, "frame_logits": {0: bt, 2: fr}, "valid": {0: bt, 2: fr},
            "clip_logits": {0: bt}, "audio_features": {0: bt, 2: fr}, "video_features": {0: bt, 2: fr}}
    import warnings

    with warnings.catch_warnings():
        # shape checks in encode() become constants: valid because the audio always has HOPS hops per frame
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)  # strided slices
        data = export_bytes(Graph(model).eval(), example, list(INPUTS), list(OUTPUTS), axes, opset)
    proto = onnx.load_from_string(data)
    meta = {
        "format": FORMAT,
        "max_offset": str(model.K),
        "config": json.dumps(cfg, sort_keys=True),
        "clip_scale": repr(float(model.clip_scale.detach())),
        "calibration": json.dumps(getattr(model, "calibration", None)),
        "fusion": json.dumps(getattr(model, "fusion", None)),
        "hops_per_frame": "4",
        "fps": "25",
        "source": os.path.basename(path_pt),
    }
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = "avsync FCN-SyncNet (audio leads the video by k frames at offset index K + k)"
    onnx.checker.check_model(proto)
    blob = proto.SerializeToString()
    tmp = f"{path_onnx}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path_onnx)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UsageError(f"{path_onnx}: cannot write ({exc.strerror or exc})") from None
    dev = None
    if verify:
        check = _example(torch, 2, 250, cfg["n_mel"], cfg["vis_dim"], seed=1)
        with torch.no_grad():
            model(check[0], check[2], check[1], check[3])
        ref = model.last["logits"].numpy()
        got = FCNOnnx(path_onnx, threads=1).run(*(x.numpy() for x in check))["frame_logits"]
        dev = float(np.abs(got - ref).max())
    return ExportResult(path_onnx, len(blob), model.K, opset, dev)


def _example(torch, B: int, T: int, n_mel: int, vis_dim: int, seed: int):
    """Random inputs (audio, amask, video, vmask) of T frames with a masked gap in each stream."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(B, n_mel, 4 * T, generator=g)
    video = torch.randn(B, vis_dim, T, generator=g)
    amask = torch.ones(B, 4 * T)
    vmask = torch.ones(B, T)
    amask[:, 4 * (T // 3):4 * (T // 3 + 3)] = 0
    vmask[:, T // 2:T // 2 + 4] = 0
    return audio, amask, video, vmask


class FCNOnnx:
    """An exported FCN-SyncNet run by ONNX Runtime (CPU): ``K``, ``config``, ``calibration`` and
    ``clip_scale`` from the file's metadata; :meth:`run` maps numpy inputs to the named outputs."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from .onnx import ort_session, require_onnx

        require_onnx("method fcn with an .onnx model", need_onnx=False)
        path = os.fspath(path)
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.path = path
        self.session = ort_session(path, threads)  # raises on a corrupt or non-ONNX file
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != FORMAT:
            raise ValueError("an ONNX model without avsync FCN-SyncNet metadata "
                             "(export one with `avsync export-onnx`)")
        names = [i.name for i in self.session.get_inputs()]
        outs = [o.name for o in self.session.get_outputs()]
        if tuple(names) != INPUTS or tuple(outs) != OUTPUTS:
            raise ValueError(f"unexpected inputs/outputs {names} -> {outs}")
        self.K = int(meta["max_offset"])
        self.config = json.loads(meta["config"])
        self.clip_scale = float(meta["clip_scale"])
        self.calibration = json.loads(meta.get("calibration") or "null")
        self.fusion = json.loads(meta.get("fusion") or "null")

    def run(self, audio, amask, video, vmask) -> dict[str, np.ndarray]:
        """Outputs by name for inputs audio [B, N_MEL, 4T], amask [B, 4T], video [B, VIS_DIM, T], vmask [B, T]."""
        T = video.shape[-1]
        if audio.shape[-1] != 4 * T or amask.shape[-1] != 4 * T or vmask.shape[-1] != T:
            raise ValueError(f"the audio needs 4 hops per video frame: got {audio.shape[-1]} hops for {T} frames")
        feed = {k: np.ascontiguousarray(x, dtype=np.float32) for k, x in zip(INPUTS, (audio, amask, video, vmask))}
        return dict(zip(OUTPUTS, self.session.run(None, feed)))

    def frame_logits_np(self, audio, amask, video, vmask) -> tuple[np.ndarray, np.ndarray]:
        """(frame logits [2K+1, T], validity [2K+1, T]) of one example (batch of 1)."""
        out = self.run(audio, amask, video, vmask)
        return out["frame_logits"][0], out["valid"][0]


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> FCNOnnx:
    return FCNOnnx(path, threads)


__all__ = ["ExportResult", "FCNOnnx", "export_fcn_onnx", "load_onnx", "FORMAT", "INPUTS", "OUTPUTS"]
