"""Training and saving of the segment classifiers (torch, CPU).  The networks, the model file
format and loading are in :mod:`avsync.nn.classifiers`; the samples in :mod:`avsync.classify.evaluate`.

Trainers register in :data:`TRAINERS` (name -> function); other modules add theirs
with :func:`register_trainer`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..classify.evaluate import Sample
from ..errors import UsageError
from ..nn.classifiers import FAULTS, FORMAT, Predictor, make_mlp, make_transformer, require_torch


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
    torch = require_torch()
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
    torch = require_torch()
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
    torch = require_torch()
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
        from ..classify.vectors import RICH_NAMES

        out["decision"] = pick_decision(Predictor(out, feature_names=RICH_NAMES), val)
    return out


def pick_decision(pred: Predictor, val: list[Sample]) -> float:
    """The p_desync cut (0.2..0.8) with the best F1 on the validation segments; the
    predictor then maps it to 0.5 (a monotone map: ranks and ROC-AUC are unchanged)."""
    y = np.concatenate([s.desyncs() for s in val])
    p = np.concatenate([pred.predict(s.rich)[0] for s in val])
    cands = np.round(np.arange(0.2, 0.8001, 0.02), 2)
    return float(max(cands, key=lambda th: (f1_score(y, (p >= th).astype(int)), -abs(th - 0.5))))


def save_model(bundle: dict, path: str) -> None:
    import io
    import os

    from ..datasets.util import atomic_write_bytes

    torch = require_torch()
    buf = io.BytesIO()
    torch.save(bundle, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror or exc})") from None
    _ = os


