"""The segment classifiers, their training, saving and loading (torch, CPU).

Every model file is a ``torch.save`` of a plain dict (loadable with
``weights_only=True``): ``{"format": "avsync.segmodel/1", "model": NAME, "inputs":
"va"|"rich", "mean", "std", "config", "state", "threshold", "classes"}``.

Trainers register in :data:`TRAINERS` (name -> function); other modules add theirs
with :func:`register_trainer`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import UsageError

FORMAT = "avsync.segmodel/1"
FAULTS = ("none", "time_shift", "noise", "mute", "distort")
KIND_INDEX = {"None": 0, "time_shift": 1, "noise": 2, "mute": 3, "distort": 4}


@dataclass
class Sample:
    sample_id: str
    source: str
    split: str
    desync: int  # 1: Negative (out of sync), 0: Positive
    kind: int  # index into FAULTS
    shift_ms: float | None
    times: np.ndarray  # (S,) segment starts, seconds from the file start
    va: np.ndarray  # (S, 2)
    rich: np.ndarray  # (S, D)
    #: per-segment fault index (composite samples); None: every segment is ``kind``
    seg_kind: np.ndarray | None = None

    def inputs(self, kind: str) -> np.ndarray:
        return self.va if kind == "va" else self.rich

    def kinds(self) -> np.ndarray:
        """(S,) fault index of every segment."""
        if self.seg_kind is not None:
            return self.seg_kind
        return np.full(len(self.times), self.kind, np.int64)

    def desyncs(self) -> np.ndarray:
        return (self.kinds() > 0).astype(np.int64)


@dataclass(frozen=True)
class TrainOptions:
    seed: int = 0
    max_epochs: int = 300
    patience: int = 30
    #: learning rate (None: each trainer's own default)
    lr: float | None = None
    batch: int = 64
    #: the per-second features used (names from ``vectors.RICH_NAMES``; None: all)
    columns: tuple[str, ...] | None = None
    #: ensembles: choose the desync cut on the validation split (else 0.5)
    tune_threshold: bool = True


Trainer = Callable[[list[Sample], list[Sample], TrainOptions, Callable | None], dict]
TRAINERS: dict[str, Trainer] = {}



class EarlyStopping:
    """Keeps the weights of the best validation loss; says stop after ``patience`` epochs without
    an improvement of more than 1e-4."""

    def __init__(self, patience: int):
        self.patience, self.best, self.state, self.wait = patience, math.inf, None, 0

    def update(self, val_loss: float, net) -> bool:
        if val_loss < self.best - 1e-4:
            self.best, self.wait = val_loss, 0
            self.state = {k: v.clone() for k, v in net.state_dict().items()}
            return False
        self.wait += 1
        return self.wait >= self.patience

def register_trainer(name: str):
    def deco(fn: Trainer) -> Trainer:
        TRAINERS[name] = fn
        return fn

    return deco


# -- networks --------------------------------------------------------------------------
def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover
        raise UsageError("the classifiers need torch (pip install 'avsync[classify]')") from None
    return torch


def make_mlp(in_dim: int):
    """The seed's network: Linear(in->32) -> ReLU -> Linear(32->16) -> ReLU -> Linear(16->2)."""
    nn = _torch().nn
    return nn.Sequential(nn.Linear(in_dim, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))


def make_transformer(in_dim: int, d_model: int = 32, heads: int = 2, layers: int = 2, n_out: int = len(FAULTS)):
    torch = _torch()
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


# -- helpers ---------------------------------------------------------------------------
def _stack(samples: list[Sample], kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.concatenate([s.inputs(kind) for s in samples])
    y = np.concatenate([s.desyncs() for s in samples])
    k = np.concatenate([s.kinds() for s in samples])
    return X.astype(np.float32), y.astype(np.int64), k.astype(np.int64)


def _norm(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(0)
    sd = X.std(0)
    sd[sd < 1e-6] = 1.0
    return mu.astype(np.float32), sd.astype(np.float32)


def f1_score(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float(np.sum((pred == 1) & (y == 1)))
    fp = float(np.sum((pred == 1) & (y == 0)))
    fn = float(np.sum((pred == 0) & (y == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _names(inputs: str, opt: "TrainOptions | None" = None) -> list[str]:
    from ..classify.vectors import RICH_NAMES

    if inputs != "rich":
        return ["V", "A"]
    return list(opt.columns) if opt is not None and opt.columns else list(RICH_NAMES)


def _columns(samples: list[Sample], opt: "TrainOptions") -> list[Sample]:
    """The samples with only ``opt.columns`` of their rich vectors."""
    if not opt.columns:
        return samples
    from dataclasses import replace

    from ..classify.vectors import RICH_NAMES

    bad = [c for c in opt.columns if c not in RICH_NAMES]
    if bad:
        raise UsageError(f"unknown feature {bad[0]!r}")
    idx = np.asarray([RICH_NAMES.index(c) for c in opt.columns])
    return [replace(s, rich=s.rich[:, idx]) for s in samples]


def _need(train, val):
    if not train:
        raise UsageError("no training samples (is there a 'train' split?)")
    if not val:
        raise UsageError("no validation samples (is there a 'val' split?)")


# -- trainers --------------------------------------------------------------------------
@register_trainer("threshold")
def train_threshold(train, val, opt: TrainOptions, progress=None) -> dict:
    """sync_score = |V - A|; desync when >= theta, theta maximising F1 on the validation split."""
    _need(train, val)
    Xv, yv, _ = _stack(val, "va")
    score = np.abs(Xv[:, 0] - Xv[:, 1])
    cands = np.unique(np.concatenate([score, [0.0, 1.0 + 1e-6]]))
    best = max(cands, key=lambda th: (f1_score(yv, (score >= th).astype(int)), -th))
    return {"format": FORMAT, "model": "threshold", "inputs": "va", "threshold": float(best),
            "classes": ["sync", "desync"], "val_f1": f1_score(yv, (score >= best).astype(int))}


def _fit_mlp(train, val, opt, inputs: str, name: str, progress):
    torch = _torch()
    _need(train, val)
    if inputs == "rich":
        train, val = _columns(train, opt), _columns(val, opt)
    torch.manual_seed(opt.seed)
    Xt, yt, _ = _stack(train, inputs)
    Xv, yv, _ = _stack(val, inputs)
    mu, sd = _norm(Xt)
    xt = torch.from_numpy((Xt - mu) / sd)
    xv = torch.from_numpy((Xv - mu) / sd)
    tt, tv = torch.from_numpy(yt), torch.from_numpy(yv)
    net = make_mlp(Xt.shape[1])
    # class weights: balanced in expectation, exact here
    w = torch.tensor([len(yt) / max(2 * np.sum(yt == c), 1) for c in (0, 1)], dtype=torch.float32)
    lossf = torch.nn.CrossEntropyLoss(weight=w)
    optim = torch.optim.Adam(net.parameters(), lr=opt.lr or 3e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(opt.seed)
    stop = EarlyStopping(opt.patience)
    for ep in range(opt.max_epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), opt.batch):
            b = perm[i : i + opt.batch]
            optim.zero_grad()
            loss = lossf(net(xt[b]), tt[b])
            loss.backward()
            optim.step()
        net.eval()
        with torch.no_grad():
            vl = float(torch.nn.functional.cross_entropy(net(xv), tv))
        if stop.update(vl, net):
            break
        if progress is not None:
            progress("epoch", ep + 1, opt.max_epochs)
    return {"format": FORMAT, "model": name, "inputs": inputs, "names": _names(inputs, opt), "mean": torch.from_numpy(mu),
            "std": torch.from_numpy(sd), "state": stop.state, "config": {"in_dim": int(Xt.shape[1])},
            "classes": ["sync", "desync"], "val_loss": stop.best, "epochs": ep + 1}


@register_trainer("mlp")
def train_mlp(train, val, opt: TrainOptions, progress=None) -> dict:
    """The seed's MLP on [V(t), A(t)] (the baseline row)."""
    return _fit_mlp(train, val, opt, "va", "mlp", progress)


@register_trainer("mlp-rich")
def train_mlp_rich(train, val, opt: TrainOptions, progress=None) -> dict:
    """The same network shape on the richer per-second vectors."""
    return _fit_mlp(train, val, opt, "rich", "mlp-rich", progress)


def _batches(samples: list[Sample], mu, sd, rng: np.random.Generator | None, size: int, group: bool):
    """Padded sequences.  With ``group``, the samples of one source are concatenated in
    time order (1-3 at a time), so sequences mix labels as real files do."""
    torch = _torch()
    seqs = []
    if group and rng is not None:
        by_src: dict[str, list[Sample]] = {}
        for s in samples:
            if s.seg_kind is not None:  # a composite is a mixed sequence already
                seqs.append([s])
                continue
            by_src.setdefault(s.source, []).append(s)
        for lst in by_src.values():
            order = list(rng.permutation(len(lst)))
            while order:
                k = int(rng.integers(1, 4))
                seqs.append([lst[i] for i in order[:k]])
                order = order[k:]
        seqs = [seqs[i] for i in rng.permutation(len(seqs))]
    else:
        seqs = [[s] for s in samples]
    for i in range(0, len(seqs), size):
        chunk = seqs[i : i + size]
        L = max(sum(len(s.times) for s in seq) for seq in chunk)
        D = chunk[0][0].rich.shape[1]
        x = np.zeros((len(chunk), L, D), np.float32)
        t = np.zeros((len(chunk), L), np.float32)
        y = np.full((len(chunk), L), -100, np.int64)
        pad = np.ones((len(chunk), L), bool)
        for b, seq in enumerate(chunk):
            pos = 0
            for s in seq:
                n = len(s.times)
                x[b, pos : pos + n] = (s.rich - mu) / sd
                t[b, pos : pos + n] = np.arange(pos, pos + n)
                y[b, pos : pos + n] = s.kinds()
                pad[b, pos : pos + n] = False
                pos += n
        yield torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(y), torch.from_numpy(pad)


@register_trainer("transformer")
def train_transformer(train, val, opt: TrainOptions, progress=None) -> dict:
    """Small transformer encoder over the per-second vectors; 5 classes (none + 4 faults)."""
    torch = _torch()
    _need(train, val)
    train, val = _columns(train, opt), _columns(val, opt)
    torch.manual_seed(opt.seed)
    rng = np.random.default_rng(opt.seed)
    Xt, _, kt = _stack(train, "rich")
    mu, sd = _norm(Xt)
    net = make_transformer(Xt.shape[1])
    counts = np.bincount(kt, minlength=len(FAULTS)).astype(np.float64)
    # inverse-frequency weights, then "none" (sync) scaled to weigh as much as the four faults together
    w = np.where(counts > 0, len(kt) / np.maximum(counts, 1) / len(FAULTS), 0.0)
    w[0] *= max(1, int(np.sum(counts[1:] > 0)))
    w = w / w[w > 0].mean()
    lossf = torch.nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=torch.float32), ignore_index=-100)
    optim = torch.optim.AdamW(net.parameters(), lr=opt.lr or 3e-3, weight_decay=1e-3)
    stop = EarlyStopping(opt.patience)
    for ep in range(opt.max_epochs):
        net.train()
        for x, t, y, pad in _batches(train, mu, sd, rng, 16, True):
            optim.zero_grad()
            out = net(x, t, pad)
            loss = lossf(out.reshape(-1, out.shape[-1]), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optim.step()
        net.eval()
        tot, n = 0.0, 0
        with torch.no_grad():
            for x, t, y, pad in _batches(val, mu, sd, None, 64, False):
                out = net(x, t, pad)
                m = y.reshape(-1) != -100
                logits = out.reshape(-1, out.shape[-1])[m]
                yy = y.reshape(-1)[m]
                # early stopping on the 5-class loss (sync/desync and the fault kind)
                tot += float(torch.nn.functional.cross_entropy(logits, yy, reduction="sum"))
                n += int(m.sum())
        vl = tot / max(n, 1)
        if stop.update(vl, net):
            break
        if progress is not None:
            progress("epoch", ep + 1, opt.max_epochs)
    return {"format": FORMAT, "model": "transformer", "inputs": "rich", "names": _names("rich", opt), "mean": torch.from_numpy(mu),
            "std": torch.from_numpy(sd), "state": stop.state,
            "config": {"in_dim": int(Xt.shape[1]), "d_model": 32, "heads": 2, "layers": 2,
                       # predict over chunks as long as the training sequences (8..16 s)
                       "chunk": int(min(16, max(8, max(len(s.times) for s in train))))},
            "classes": list(FAULTS), "val_loss": stop.best, "epochs": ep + 1}


@register_trainer("transformer-ensemble")
def train_transformer_ensemble(train, val, opt: TrainOptions, progress=None, members: int = 5) -> dict:
    """``members`` transformers trained from seeds seed, seed+1, ...; their class
    probabilities are averaged (the seeds' spread on these small sets is large)."""
    from dataclasses import replace

    bundles = []
    for k in range(members):
        b = train_transformer(train, val, replace(opt, seed=opt.seed + k), None)
        bundles.append(b)
        if progress is not None:
            progress("member", k + 1, members)
    out = {"format": FORMAT, "model": "ensemble", "inputs": "rich", "members": bundles,
           "classes": list(FAULTS), "val_loss": float(np.mean([b["val_loss"] for b in bundles])),
           "epochs": int(sum(b["epochs"] for b in bundles))}
    if opt.tune_threshold:
        out["decision"] = pick_decision(Predictor(out), val)
    return out


def pick_decision(pred: "Predictor", val: list[Sample]) -> float:
    """The p_desync cut (0.2..0.8) with the best F1 on the validation segments; the
    predictor then maps it to 0.5 (a monotone map: ranks and ROC-AUC are unchanged)."""
    y = np.concatenate([s.desyncs() for s in val])
    p = np.concatenate([pred.predict(s.rich)[0] for s in val])
    cands = np.round(np.arange(0.2, 0.8001, 0.02), 2)
    return float(max(cands, key=lambda th: (f1_score(y, (p >= th).astype(int)), -abs(th - 0.5))))


# -- prediction ------------------------------------------------------------------------
class Predictor:
    """A loaded model: ``predict(sample_like) -> (p_desync (S,), fault_probs (S, 5) or None)``."""

    def __init__(self, bundle: dict, path: str = ""):
        if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
            raise UsageError(f"{path}: not an avsync segment model")
        self.bundle = bundle
        self.name = bundle["model"]
        self.inputs = bundle["inputs"]
        self.net = None
        self.members: list[Predictor] = []
        if self.name == "ensemble":
            self.members = [Predictor(b, path) for b in bundle.get("members") or []]
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
            from ..classify.vectors import RICH_NAMES

            names = bundle.get("names")
            if names:
                missing = [n for n in names if n not in RICH_NAMES]
                if missing:
                    raise UsageError(f"{path}: the model needs features this version lacks ({missing[0]})")
                self.cols = np.asarray([RICH_NAMES.index(n) for n in names])
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
        torch = _torch()
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


def save_model(bundle: dict, path: str) -> None:
    import io
    import os

    from ..datasets.util import atomic_write_bytes

    torch = _torch()
    buf = io.BytesIO()
    torch.save(bundle, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror or exc})") from None
    _ = os


def load_model(path: str) -> Predictor:
    import os

    torch = _torch()
    if not os.path.isfile(path):
        raise UsageError(f"{path}: model file not found")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"{path}: not a readable model file ({type(exc).__name__})") from None
    return Predictor(bundle, path)
