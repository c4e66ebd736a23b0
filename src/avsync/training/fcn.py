"""Training of FCN-SyncNet on in-sync clips.

Self-supervised: every clip is assumed in sync; a training example is a window of
its mouth trajectories with the clip's own audio moved by a random whole number of
frames in [-K, K] (the label), or, for negatives, with the audio of a clip of another
speaker (target: no preferred offset).  Validation clips are whole speakers / sources
(never windows of a training clip).  Deterministic for a given seed; checkpoints let
an interrupted run resume where it stopped.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from ..nn.fcn_io import Track, confidence_inputs, track_from_raw
from .fcn_data import is_validation_group, load_or_extract, sample_pair, training_clips

#: the progress protocol (avsync.progress): progress(stage, done, total); a stage may carry a
#: message after its name ("train loss=0.41")
TrainProgress = Callable[[str, float, float], None]


@dataclass
class TrainOptions:
    data: list[str]
    out: str
    cache_dir: str | None = None
    steps: int = 3000
    batch: int = 32
    length: int = 50  # frames per training window (2 s)
    max_offset: int = 25  # K: offsets -K..K frames (+-1 s at 25 fps)
    channels: int = 64
    lr: float = 2e-3
    negatives: float = 0.15  # share of mismatched-audio examples
    seed: int = 0
    threads: int = 1  # more threads on a busy 2-core machine were ~100x slower (spin-waits)
    checkpoint_every: int = 250
    resume: bool = False
    exclude: list[str] = field(default_factory=list)  # substrings of paths / groups to leave out
    val_share: int = 10
    workers: int = 1  # processes for the feature extraction
    device: str = "auto"  # auto (a CUDA GPU when torch sees one, else the CPU) | cpu | cuda | cuda:N


@dataclass
class TrainResult:
    out: str
    steps: int
    seconds: float
    n_train: int
    n_val: int
    val_acc_1f: float | None
    val_null_conf: float | None
    history: list[dict]


def load_tracks(opts: TrainOptions, progress: TrainProgress | None = None,
                validation_only: bool = False) -> tuple[list[Track], list[Track]]:
    items = training_clips(opts.data, opts.exclude)
    # a group of hundreds of clips of unknown speakers (e.g. LRC-AR crops) is split by clip
    sizes: dict[str, int] = {}
    for _, g in items:
        sizes[g] = sizes.get(g, 0) + 1

    def is_val(p, g):
        return is_validation_group(os.path.basename(p) if sizes[g] > 200 else g, opts.val_share)

    if validation_only:
        items = [(p, g) for p, g in items if is_val(p, g)]
    raws: list = [None] * len(items)
    if opts.workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(opts.workers) as ex:
            futs = [ex.submit(_safe_load, p, opts.cache_dir) for p, _ in items]
            for i, f in enumerate(futs):
                raws[i] = f.result()
                if progress:
                    progress("features", i + 1, len(items))
    else:
        for i, (p, _) in enumerate(items):
            raws[i] = _safe_load(p, opts.cache_dir)
            if progress:
                progress("features", i + 1, len(items))
    train, val = [], []
    for (p, g), raw in zip(items, raws):
        if raw is None:
            continue
        tr = track_from_raw(raw, name=os.path.basename(p), group=g)
        if tr is None or tr.vmask.mean() < 0.5 or tr.amask.mean() < 0.5 or len(tr) < 10:
            continue
        (val if is_val(p, g) else train).append(tr)
    return train, val


def _safe_load(path: str, cache_dir: str | None):
    try:
        return load_or_extract(path, cache_dir)
    except Exception:  # unusable clip (no face, no audio, corrupt): skipped
        return None


def make_batch(tracks, rng, opts: TrainOptions, weights: np.ndarray):
    import torch

    idx = rng.choice(len(tracks), size=opts.batch, p=weights)
    items = [sample_pair(tracks, int(i), rng, opts.length, opts.max_offset,
                         negative=rng.random() < opts.negatives) for i in idx]
    vis, vm, aud, am, lab = zip(*items)
    t = lambda x: torch.from_numpy(np.stack(x))  # noqa: E731
    return (t(aud).transpose(1, 2).contiguous(), t(am), t(vis).transpose(1, 2).contiguous(), t(vm),
            torch.tensor(lab))


def resolve_device(name: str):
    """The torch device for ``name`` (``auto``: CUDA when available, else CPU); a clear error for
    a GPU that is not there."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        from ..errors import UsageError

        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        from ..errors import UsageError

        raise UsageError(f"device {name!r} asked for, but torch sees no CUDA GPU")
    return dev


def _to_model(model, *xs):
    dev = next(model.parameters()).device
    return tuple(x.to(dev) for x in xs)


def build_model(opts: TrainOptions):
    from ..nn.fcn import FCNSyncNet

    return FCNSyncNet(max_offset=opts.max_offset, channels=opts.channels)


def loss_fn(model, batch):
    """Classification: per-frame cross-entropy where the true offset is observable, plus
    the clip-level cross-entropy; negatives are pushed towards a flat distribution."""
    import torch.nn.functional as F

    aud, am, vis, vm, lab = batch
    pos = lab != -999
    model(aud, vis, am, vm)
    logits, valid, clip = model.last["logits"], model.last["valid"], model.last["clip_logits"]
    K = model.K
    loss = 0.0
    if pos.any():
        y = (lab[pos] + K).long()
        lp = logits[pos].log_softmax(1)  # [P, 2K+1, T]
        fl = -lp.gather(1, y[:, None, None].expand(-1, 1, lp.shape[-1]))[:, 0]  # [P, T]
        fm = valid[pos].gather(1, y[:, None, None].expand(-1, 1, lp.shape[-1]))[:, 0]
        loss = loss + (fl * fm).sum() / fm.sum().clamp(min=1)
        loss = loss + F.cross_entropy(clip[pos], y)
    neg = ~pos
    if neg.any():
        cv = (valid[neg].sum(-1) > 0).float()  # offsets observable at all
        lp = clip[neg].log_softmax(1)
        loss = loss - ((lp * cv).sum(1) / cv.sum(1).clamp(min=1)).mean()
    return loss


def evaluate(model, tracks: list[Track], opts: TrainOptions, seed: int = 1234) -> dict:
    """Whole-clip accuracy within 1 frame on validation tracks at fixed random shifts,
    and the share of mismatched-audio pairs given confidence >= 0.5."""
    import torch

    if not tracks:
        return {}
    rng = np.random.default_rng(seed)
    model.eval()
    ok, confs, nconf = [], [], []
    with torch.no_grad():
        for i, tr in enumerate(tracks):
            for neg in (False, True):
                L = len(tr)
                o = TrainOptions(**{**asdict(opts), "length": L, "batch": 1})
                vis, vm, aud, am, lab = sample_pair(tracks, i, rng, o.length, o.max_offset, negative=neg,
                                                    augment=False)
                b = (torch.from_numpy(aud.T[None].copy()), torch.from_numpy(am[None]),
                     torch.from_numpy(vis.T[None].copy()), torch.from_numpy(vm[None]))
                off, conf = predict_clip(model, *_to_model(model, *b))
                if lab == -999:
                    nconf.append(conf >= 0.5)
                else:
                    ok.append(abs(off - lab) <= 1.0)
                    confs.append(conf)
    model.train()
    return {"val_acc_1f": float(np.mean(ok)) if ok else None,
            "val_null_conf": float(np.mean(nconf)) if nconf else None,
            "val_mean_conf": float(np.mean(confs)) if confs else None}


def fit_confidence(model, tracks: list[Track], opts: TrainOptions, seed: int = 99, rounds: int = 2) -> dict | None:
    """Logistic map from (peak mass, frames) to P(within one frame), fitted on the held-out
    validation speakers: in-sync windows at random shifts (correct or not) and
    mismatched-audio windows (never correct), equally many.  None without validation data."""
    import torch

    if len(tracks) < 2:
        return None
    rng = np.random.default_rng(seed)
    X, y = [], []
    model.eval()
    for _ in range(rounds):
        for i, tr in enumerate(tracks):
            for neg in (False, True):
                vis, vm, aud, am, lab = sample_pair(tracks, i, rng, len(tr), opts.max_offset, negative=neg,
                                                    augment=False)
                b = (torch.from_numpy(aud.T[None].copy()), torch.from_numpy(am[None]),
                     torch.from_numpy(vis.T[None].copy()), torch.from_numpy(vm[None]))
                off, conf = predict_clip(model, *_to_model(model, *b))
                frames = float((model.last["valid"][0].sum(0) > 0).sum())
                X.append(confidence_inputs(conf, frames))
                y.append(lab != -999 and abs(off - lab) <= 1.0)
    X, y = np.array(X), np.array(y, np.float64)
    A = np.hstack([X, np.ones((len(X), 1))])
    w = np.zeros(A.shape[1])
    for _ in range(50):  # Newton steps, lightly regularised
        p = 1 / (1 + np.exp(-A @ w))
        g = A.T @ (p - y) + 1e-3 * w
        H = (A * (p * (1 - p))[:, None]).T @ A + 1e-3 * np.eye(A.shape[1])
        w = w - np.linalg.solve(H, g)
    p = 1 / (1 + np.exp(-A @ w))
    return {"coef": w[:-1].tolist(), "intercept": float(w[-1]), "n": int(len(y)), "positive_share": float(y.mean()),
            "null_conf_ge_0.5": float(np.mean(p[1::2] >= 0.5))}


def predict_clip(model, aud, am, vis, vm) -> tuple[float, float]:
    """(offset in frames, confidence) of one window/clip."""
    import torch

    from ..nn.fcn import decode_offsets

    with torch.no_grad():
        model(aud, vis, am, vm)
    p = model.last["clip_logits"].softmax(1)[..., None]
    off, conf = decode_offsets(p, model.K)
    return float(off[0, 0]), float(conf[0, 0])


def train(opts: TrainOptions, progress: TrainProgress | None = None,
          tracks: tuple[list[Track], list[Track]] | None = None) -> TrainResult:
    """Train and write ``opts.out``; ``tracks`` (train, validation) skips the media loading."""
    import torch

    torch.manual_seed(opts.seed)
    torch.set_num_threads(max(1, opts.threads))
    rng = np.random.default_rng(opts.seed)
    t_start = time.perf_counter()
    train_tr, val_tr = tracks if tracks is not None else load_tracks(opts, progress)
    if not train_tr:
        from ..errors import UsageError

        raise UsageError("no clip with a tracked face and audio to train on")
    lens = np.array([len(t) for t in train_tr], np.float64)
    w = np.maximum(1.0, lens / opts.length)
    w = w / w.sum()
    device = resolve_device(opts.device)
    model = build_model(opts).to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=opts.lr, total_steps=opts.steps, pct_start=0.1)
    ckpt = opts.out + ".ckpt"
    step, history = 0, []
    if opts.resume and os.path.isfile(ckpt):
        st = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        optim.load_state_dict(st["optim"])
        sched.load_state_dict(st["sched"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        step, history = st["step"], st["history"]
    model.train()
    run_loss, t_log = [], time.perf_counter()
    while step < opts.steps:
        batch = tuple(x.to(device) for x in make_batch(train_tr, rng, opts, w))
        loss = loss_fn(model, batch)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optim.step()
        sched.step()
        step += 1
        run_loss.append(float(loss.detach()))
        if step % opts.checkpoint_every == 0 or step == opts.steps:
            ev = evaluate(model, val_tr, opts)
            rec = {"step": step, "loss": float(np.mean(run_loss)), **ev,
                   "seconds": round(time.perf_counter() - t_start, 1)}
            history.append(rec)
            run_loss = []
            torch.save({"model": model.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
                        "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "step": step,
                        "history": history}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
            if progress:
                progress("train " + " ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()), step, opts.steps)
        elif progress and time.perf_counter() - t_log > 10:
            t_log = time.perf_counter()
            progress(f"train loss={np.mean(run_loss[-50:]):.3f}", step, opts.steps)
    from ..nn.fcn import save

    model.eval()
    last = history[-1] if history else {}
    cal = fit_confidence(model, val_tr, opts)
    model.cpu()
    save(model, opts.out, {"options": {k: v for k, v in asdict(opts).items() if k not in ("resume",)},
                           "n_train": len(train_tr), "n_val": len(val_tr), "history": history,
                           "train_groups": sorted({t.group for t in train_tr}), "calibration": cal})
    return TrainResult(opts.out, step, time.perf_counter() - t_start, len(train_tr), len(val_tr),
                       last.get("val_acc_1f"), last.get("val_null_conf"), history)


__all__ = ["TrainOptions", "TrainResult", "train"]
