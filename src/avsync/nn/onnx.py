"""The optional ONNX Runtime path for SyncNet: the folded lip and audio networks
(:class:`~avsync.nn.syncnet_v2.FastLip` / ``FastAud``, fp32) exported to ONNX in memory
with a dynamic batch axis and run by onnxruntime's CPU provider: the same fp32 arithmetic as
the exact mode up to summation order.

The exported models are cached in memory per weights file (path, size, mtime); nothing is
written to disk unless ``AVSYNC_ONNX_CACHE`` names a folder (then ``<folder>/<key>.onnx`` is
written through a temporary name and renamed).

Needs the ``onnx`` extra: ``pip install 'avsync[onnx]'`` (onnxruntime and onnx).

torch is imported only by the functions that export or take torch tensors: the generic helpers
(:func:`require_onnx`, :func:`ort_session`) also serve the torch-free ONNX path of FCN-SyncNet
(:mod:`avsync.nn.fcn_onnx`).
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings

import numpy as np

from ..errors import UsageError

CACHE_ENV = "AVSYNC_ONNX_CACHE"
_MEMO: dict[tuple, bytes] = {}
_LOCK = threading.Lock()


class MissingOnnxRuntime(UsageError):
    """onnxruntime / onnx are not installed."""


def require_onnx(what: str = "syncnet precision onnx", need_onnx: bool = True) -> tuple:
    """Import onnxruntime (and onnx unless ``need_onnx`` is false), or fail with one line
    saying how to install them.  Returns (onnxruntime, onnx or None)."""
    try:
        onnx = None
        if need_onnx:
            import onnx
        import onnxruntime as ort
    except ImportError as e:
        raise MissingOnnxRuntime(
            f"{what} needs onnxruntime and onnx ({e.name or 'import'} missing): "
            "pip install 'avsync[onnx]' (or: pip install onnxruntime onnx)") from None
    return ort, onnx


def export_bytes(module, args: tuple, input_names: list[str], output_names: list[str],
                 dynamic_axes: dict, opset: int = 17) -> bytes:
    """``module`` traced on ``args`` and exported to a serialised ONNX model, in memory."""
    import torch

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces its retirement
        torch.onnx.export(module, args, buf, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def _export(module, example) -> bytes:
    return export_bytes(module, (example,), ["x"], ["emb"], {"x": {0: "batch"}, "emb": {0: "batch"}})


def ort_session(data: bytes | str, threads: int):
    """An onnxruntime CPU session over a serialised model (or a path), ``threads`` intra-op
    threads, all graph optimisations on."""
    ort, _ = require_onnx(need_onnx=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])


def model_bytes(net: str, module, example, key: tuple | None) -> bytes:
    """The serialised ONNX model of ``net`` ('lip' / 'aud'), memoised on ``key``."""
    full = None if key is None else (key, net)
    with _LOCK:
        if full is not None and full in _MEMO:
            return _MEMO[full]
    folder = os.environ.get(CACHE_ENV) or None
    path = None
    if folder and full is not None:
        digest = hashlib.sha256(repr(full).encode()).hexdigest()[:20]
        path = os.path.join(folder, f"syncnet-{net}-{digest}.onnx")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            with _LOCK:
                _MEMO[full] = data
            return data
    data = _export(module, example)
    if path is not None:
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    if full is not None:
        with _LOCK:
            _MEMO[full] = data
    return data


class OrtNet:
    """Callable like the torch module it replaces: torch tensor in, float32 torch tensor out."""

    def __init__(self, data: bytes, threads: int):
        require_onnx()
        self.session = ort_session(data, threads)

    def __call__(self, x):
        import torch

        a = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {"x": a})[0])


def build(lip, aud, threads: int, key: tuple | None = None) -> tuple[OrtNet, OrtNet]:
    """ORT sessions for the fp32 folded networks ``lip`` and ``aud``."""
    import torch

    require_onnx()
    lip_x = torch.zeros(2, 15, 224, 224)
    aud_x = torch.zeros(2, 1, 13, 20)
    return (OrtNet(model_bytes("lip", lip, lip_x, key), threads),
            OrtNet(model_bytes("aud", aud, aud_x, key), threads))


def weights_key(path: str | os.PathLike) -> tuple:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)
