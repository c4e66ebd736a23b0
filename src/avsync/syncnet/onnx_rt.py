"""The optional ONNX Runtime path for SyncNet: the folded lip and audio networks
(:class:`~avsync.models.syncnet_v2.FastLip` / ``FastAud``, fp32) exported to ONNX in memory
with a dynamic batch axis and run by onnxruntime's CPU provider.

``onnx``: fp32, the same arithmetic as the exact mode up to summation order.
``onnx-int8``: the exported graphs with dynamic int8 quantisation of the weights
(onnxruntime.quantization.quantize_dynamic; activations quantised per batch at run time).

The exported (and quantised) models are cached in memory per weights file (path, size,
mtime) and kind; nothing is written to disk unless ``AVSYNC_ONNX_CACHE`` names a folder
(then ``<folder>/<key>.onnx`` is written through a temporary name and renamed).
quantize_dynamic itself only writes to a file: that file lives in a private temporary
folder which is removed at once.

Needs the ``onnx`` extra: ``pip install 'avsync[onnx]'`` (onnxruntime and onnx).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
import warnings

import numpy as np
import torch

from ..errors import UsageError

KINDS = ("onnx", "onnx-int8")
CACHE_ENV = "AVSYNC_ONNX_CACHE"
_MEMO: dict[tuple, bytes] = {}
_LOCK = threading.Lock()


class MissingOnnxRuntime(UsageError):
    """onnxruntime / onnx are not installed."""


def require_onnx() -> tuple:
    """Import onnxruntime and onnx, or fail with one line saying how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError as e:
        raise MissingOnnxRuntime(
            f"syncnet precision onnx needs onnxruntime and onnx ({e.name or 'import'} missing): "
            "pip install 'avsync[onnx]' (or: pip install onnxruntime onnx)") from None
    return ort, onnx


def _export(module: torch.nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces its retirement
        torch.onnx.export(module, (example,), buf, input_names=["x"], output_names=["emb"],
                          dynamic_axes={"x": {0: "batch"}, "emb": {0: "batch"}}, opset_version=17,
                          dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def _quantize(model_bytes: bytes) -> bytes:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic warns through the root logger, which would configure logging for the
    # whole program when nothing has; a NullHandler for the duration keeps the program's choice
    root = logging.getLogger()
    quiet = logging.NullHandler() if not root.handlers else None
    if quiet is not None:
        root.addHandler(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="avsync-onnx-") as tmp:
            out = os.path.join(tmp, "q.onnx")
            quantize_dynamic(onnx.load_from_string(model_bytes), out, weight_type=QuantType.QInt8, per_channel=True)
            with open(out, "rb") as f:
                return f.read()
    finally:
        if quiet is not None:
            root.removeHandler(quiet)


def model_bytes(net: str, kind: str, module: torch.nn.Module, example: torch.Tensor, key: tuple | None) -> bytes:
    """The serialised ONNX model of ``net`` ('lip' / 'aud') for ``kind``, memoised on ``key``."""
    full = None if key is None else (key, net, kind)
    with _LOCK:
        if full is not None and full in _MEMO:
            return _MEMO[full]
    folder = os.environ.get(CACHE_ENV) or None
    path = None
    if folder and full is not None:
        digest = hashlib.sha256(repr(full).encode()).hexdigest()[:20]
        path = os.path.join(folder, f"syncnet-{net}-{kind}-{digest}.onnx")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            with _LOCK:
                _MEMO[full] = data
            return data
    data = _export(module, example)
    if kind == "onnx-int8":
        data = _quantize(data)
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
        ort, _ = require_onnx()
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {"x": a})[0])


def build(kind: str, lip: torch.nn.Module, aud: torch.nn.Module, threads: int,
          key: tuple | None = None) -> tuple[OrtNet, OrtNet]:
    """ORT sessions for the fp32 folded networks ``lip`` and ``aud``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    require_onnx()
    lip_x = torch.zeros(2, 15, 224, 224)
    aud_x = torch.zeros(2, 1, 13, 20)
    return (OrtNet(model_bytes("lip", kind, lip, lip_x, key), threads),
            OrtNet(model_bytes("aud", kind, aud, aud_x, key), threads))


def weights_key(path: str | os.PathLike) -> tuple:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)
