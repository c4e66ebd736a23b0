"""Training of the transfer-learning architectures (``avsync train --model vggish|wav2vec2|r3d``).

The same self-supervised task and loss as FCN-SyncNet (:func:`avsync.training.fcn.loss_fn`:
per-frame and clip cross-entropy over offsets, mismatched audio pushed to a flat distribution),
speaker/source-level validation split, fixed seed.  Optional ``pretrained`` encoder weights from a
local file (strict check) and ``freeze_encoder``.  A research path: minimal data loading, no
augmentation beyond audio gain, no resume.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .fcn import TrainProgress


@dataclass
class TransferOptions:
    data: list[str]
    out: str
    arch: str  # vggish | wav2vec2 | r3d
    pretrained: str | None = None  # encoder weights file (local)
    freeze_encoder: bool = False
    encoder: dict = field(default_factory=dict)  # encoder size overrides (see transfer.DEFAULTS)
    crop: str = "auto"  # r3d: auto (dlib mouth crops) | none (the clips are mouth crops)
    cache_dir: str | None = None
    exclude: list[str] = field(default_factory=list)
    steps: int = 300
    batch: int = 8
    length: int = 50
    max_offset: int = 20
    channels: int = 48
    lr: float = 1e-3
    negatives: float = 0.15
    seed: int = 0
    threads: int = 1
    val_share: int = 10


@dataclass
class TransferResult:
    out: str
    steps: int
    seconds: float
    n_train: int
    n_val: int
    val_acc_1f: float | None
    loss: float
    pretrained: dict | None


def build(opts: TransferOptions):
    """The model of ``opts``: built, ``--pretrained`` weights loaded (strict), ``--freeze-encoder``
    applied; returns (model, summary of the loaded weights or None)."""
    from ..nn.transfer import TransferSyncNet, load_encoder_weights

    try:
        model = TransferSyncNet(opts.arch, max_offset=opts.max_offset, channels=opts.channels, encoder=opts.encoder)
    except (TypeError, ValueError) as exc:
        from ..errors import UsageError

        raise UsageError(f"--model {opts.arch}: bad encoder options ({' '.join(str(exc).split())[:200]})") from None
    loaded = load_encoder_weights(model, opts.pretrained) if opts.pretrained else None
    if opts.freeze_encoder:
        model.freeze_encoder()
    return model, loaded


def load_tracks(opts: TransferOptions, progress: TrainProgress | None = None):
    from .fcn_data import is_validation_group, training_clips
    from .transfer_data import load_transfer_track

    items = training_clips(opts.data, opts.exclude)
    n_mels = int({**{"n_mels": 64}, **opts.encoder}.get("n_mels", 64))
    train, val = [], []
    for i, (p, g) in enumerate(items):
        try:
            tr = load_transfer_track(p, opts.arch, opts.crop, opts.cache_dir, n_mels, os.path.basename(p), g)
        except Exception:  # unusable clip (no audio, corrupt, no face): skipped
            tr = None
        if progress:
            progress("features", i + 1, len(items))
        if tr is None or len(tr) < 10 or tr.vmask.mean() < 0.5 or tr.amask.mean() < 0.5:
            continue
        (val if is_validation_group(g, opts.val_share) else train).append(tr)
    return train, val


def evaluate(model, tracks, opts: TransferOptions, seed: int = 1234) -> float | None:
    """Whole-clip accuracy within one frame at random shifts (validation clips)."""
    import torch

    from .fcn import predict_clip
    from .transfer_data import sample_window, to_tensors

    if not tracks:
        return None
    rng = np.random.default_rng(seed)
    model.eval()
    ok = []
    with torch.no_grad():
        for i, tr in enumerate(tracks):
            vis, vm, aud, am, lab = sample_window(tracks, i, rng, len(tr), opts.max_offset, augment=False)
            a, am_, v, vm_ = to_tensors(aud[None], am[None], vis[None], vm[None])
            off, _ = predict_clip(model, a, am_, v, vm_)
            ok.append(abs(off - lab) <= 1.0)
    model.train()
    return float(np.mean(ok))


def train(opts: TransferOptions, progress: TrainProgress | None = None, tracks=None) -> TransferResult:
    """Train and write ``opts.out`` (an ``avsync-transfer/1`` file); ``tracks`` (train, validation)
    skips the loading."""
    import torch

    from ..errors import UsageError
    from .fcn import loss_fn
    from ..nn.transfer import save_model
    from .transfer_data import make_batch

    torch.manual_seed(opts.seed)
    torch.set_num_threads(max(1, opts.threads))
    rng = np.random.default_rng(opts.seed)
    t0 = time.perf_counter()
    model, loaded = build(opts)  # before the data: a bad --pretrained file fails at once
    train_tr, val_tr = tracks if tracks is not None else load_tracks(opts, progress)
    if not train_tr:
        raise UsageError("no clip with usable video and audio to train on")
    lens = np.array([len(t) for t in train_tr], np.float64)
    w = np.maximum(1.0, lens / opts.length)
    w /= w.sum()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=1e-4)
    model.train()
    losses, t_log = [], time.perf_counter()
    for step in range(1, opts.steps + 1):
        batch = make_batch(train_tr, rng, opts.batch, opts.length, opts.max_offset, opts.negatives, w)
        loss = loss_fn(model, batch)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optim.step()
        losses.append(float(loss.detach()))
        if progress and (step == opts.steps or time.perf_counter() - t_log > 10):
            t_log = time.perf_counter()
            progress(f"train loss={np.mean(losses[-50:]):.3f}", step, opts.steps)
    acc = evaluate(model, val_tr, opts)
    model.eval()
    save_model(model, opts.out, {"options": asdict(opts), "n_train": len(train_tr), "n_val": len(val_tr),
                                 "val_acc_1f": acc, "pretrained": loaded})
    return TransferResult(opts.out, opts.steps, time.perf_counter() - t0, len(train_tr), len(val_tr), acc,
                          float(np.mean(losses[-50:])), loaded)


__all__ = ["TransferOptions", "TransferResult", "build", "train"]
