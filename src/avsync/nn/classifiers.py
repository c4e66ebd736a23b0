"""The segment classifiers' networks and their run time: model files are read here, trained in
:mod:`avsync.training.classifiers` (torch, CPU; imported only when a model is built or loaded).

Every model file is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``):
``{"format": "avsync.segmodel/1", "model": NAME, "inputs": "va"|"rich", "names", "mean", "std",
"config", "state", "threshold", "classes"}``; an ensemble holds its members' dicts in ``members``.
``names`` are the per-second features a model reads (``avsync.classify.vectors.RICH_NAMES`` at
training time); a :class:`Predictor` picks them by name from the feature columns it is given, so
models keep working when features are added.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import UsageError

FORMAT = "avsync.segmodel/1"
FAULTS = ("none", "time_shift", "noise", "mute", "distort")


def require_torch():
    """torch, or a one-line UsageError naming the extra to install."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        raise UsageError("the classifiers need torch (pip install 'avsync[classify]')") from None
    return torch


def make_mlp(in_dim: int):
    """The seed's network: Linear(in->32) -> ReLU -> Linear(32->16) -> ReLU -> Linear(16->2)."""
    nn = require_torch().nn
    return nn.Sequential(nn.Linear(in_dim, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))


def make_transformer(in_dim: int, d_model: int = 32, heads: int = 2, layers: int = 2, n_out: int = len(FAULTS)):
    torch = require_torch()
    nn = torch.nn

    class SegTransformer(nn.Module):
        """Per-second vectors -> per-second fault class; sinusoidal encoding of the timestamps."""

        def __init__(self):
            super().__init__()
            self.d = d_model
            self.inp = nn.Linear(in_dim, d_model)
            layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.1,
                                               batch_first=True)
            self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = nn.Linear(d_model, n_out)

        def posenc(self, t):  # t: (B, S) seconds
            half = self.d // 2
            freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(100.0) / max(half - 1, 1)))
            ang = t.unsqueeze(-1) * freqs * 2 * math.pi / 4.0
            return torch.cat([torch.sin(ang), torch.cos(ang)], -1)

        def forward(self, x, t, pad_mask=None):
            h = self.inp(x) + self.posenc(t)
            h = self.enc(h, src_key_padding_mask=pad_mask)
            return self.head(h)

    return SegTransformer()


class Predictor:
    """A loaded model: ``predict(X) -> (p_desync (S,), fault_probs (S, 5) or None)``.

    ``feature_names``: the names of the columns of the ``rich`` inputs ``X`` that :meth:`predict`
    will get (``avsync.classify.vectors.RICH_NAMES``); a model that stored its input names takes
    its columns by name from them."""

    def __init__(self, bundle: dict, path: str = "", feature_names: Sequence[str] | None = None):
        if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
            raise UsageError(f"{path}: not an avsync segment model")
        self.bundle = bundle
        self.name = bundle["model"]
        self.inputs = bundle["inputs"]
        self.net = None
        self.members: list[Predictor] = []
        if self.name == "ensemble":
            self.members = [Predictor(b, path, feature_names) for b in bundle.get("members") or []]
            if not self.members or any(m.name == "ensemble" for m in self.members):
                raise UsageError(f"{path}: an ensemble model without members")
        elif self.name in ("mlp", "mlp-rich"):
            self.net = make_mlp(bundle["config"]["in_dim"])
        elif self.name == "transformer":
            c = bundle["config"]
            self.net = make_transformer(c["in_dim"], c["d_model"], c["heads"], c["layers"])
        elif self.name != "threshold":
            raise UsageError(f"{path}: unknown model kind {self.name!r}")
        # the input columns: by name (models of later feature sets), else the first in_dim
        self.cols = None
        if self.inputs == "rich" and self.net is not None:
            names = bundle.get("names")
            if names:
                if feature_names is None:
                    raise TypeError("Predictor: a model with named inputs needs feature_names")
                have = list(feature_names)
                missing = [n for n in names if n not in have]
                if missing:
                    raise UsageError(f"{path}: the model needs features this version lacks ({missing[0]})")
                self.cols = np.asarray([have.index(n) for n in names])
            else:
                self.cols = np.arange(int(bundle["config"]["in_dim"]))
        if self.net is not None:
            self.net.load_state_dict(bundle["state"])
            self.net.eval()
            self.mu = bundle["mean"].numpy()
            self.sd = bundle["std"].numpy()

    @property
    def predicts_faults(self) -> bool:
        if self.members:
            return all(m.predicts_faults for m in self.members)
        return self.name == "transformer"

    def predict(self, X: np.ndarray, chunk: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
        """``X``: (S, D) inputs of one file (va or rich, as ``self.inputs``)."""
        if self.members:
            outs = [m.predict(X, chunk) for m in self.members]
            p = np.mean([o[0] for o in outs], 0)
            faults = None if any(o[1] is None for o in outs) else np.mean([o[1] for o in outs], 0)
            th = float(self.bundle.get("decision", 0.5))
            if th != 0.5:  # the validation-chosen cut becomes 0.5
                p = np.where(p < th, 0.5 * p / th, 0.5 + 0.5 * (p - th) / (1 - th))
            return p, faults
        if self.name == "threshold":
            score = np.abs(X[:, 0] - X[:, 1])
            th = self.bundle["threshold"]
            # a monotone map of the score to (0, 1), 0.5 at theta
            return 1 / (1 + np.exp(-(score - th) * 10)), None
        torch = require_torch()
        if self.cols is not None:
            X = X[:, self.cols]
        chunk = int(self.bundle.get("config", {}).get("chunk", chunk))
        x = torch.from_numpy(((X - self.mu) / self.sd).astype(np.float32))
        with torch.no_grad():
            if self.name != "transformer":
                p = torch.softmax(self.net(x), -1).numpy()
                return p[:, 1], None
            probs = np.zeros((X.shape[0], len(FAULTS)))
            counts = np.zeros(X.shape[0])
            # overlapping chunks of at most ``chunk`` seconds (the training sequences are short)
            starts = list(range(0, max(1, X.shape[0] - chunk + 1), max(1, chunk // 2)))
            if starts[-1] + chunk < X.shape[0]:
                starts.append(X.shape[0] - chunk)
            for s in starts:
                xs = x[s : s + chunk].unsqueeze(0)
                ts = torch.arange(xs.shape[1], dtype=torch.float32).unsqueeze(0)
                p = torch.softmax(self.net(xs, ts), -1)[0].numpy()
                probs[s : s + xs.shape[1]] += p
                counts[s : s + xs.shape[1]] += 1
            probs /= counts[:, None]
            return 1 - probs[:, 0], probs


def load_model(path: str, feature_names: Sequence[str] | None = None) -> Predictor:
    """The model file ``path`` ready to predict (see :class:`Predictor` for ``feature_names``)."""
    import os

    torch = require_torch()
    if not os.path.isfile(path):
        raise UsageError(f"{path}: model file not found")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable model file ({type(exc).__name__})") from None
    return Predictor(bundle, path, feature_names)
