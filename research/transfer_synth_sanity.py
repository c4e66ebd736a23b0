"""Sanity check of the r3d transfer-learning architecture (not a benchmark): train it for 150 steps
on 8 synthetic flash-and-beep clips taken as mouth crops (``crop='none'``), then estimate the
offset of 6 held-out synthetic clips with known shifts.  Writes under /tmp/avsync_transfer_sanity.

    PYTHONPATH=src nice -n 10 python3 research/transfer_synth_sanity.py
"""
from __future__ import annotations

import os
import time

from avsync.media.synth import make_clip
from avsync.training.fcn import predict_clip
from avsync.training.transfer import TransferOptions, train
from avsync.nn.transfer import load_model
from avsync.training.transfer_data import load_transfer_track, to_tensors

ROOT = "/tmp/avsync_transfer_sanity"
SHIFTS = [-240, -120, 0, 120, 240, 160]


def main() -> None:
    tr_dir, va_dir = os.path.join(ROOT, "train"), os.path.join(ROOT, "val")
    os.makedirs(tr_dir, exist_ok=True)
    os.makedirs(va_dir, exist_ok=True)
    for i in range(8):
        make_clip(os.path.join(tr_dir, f"s{i}_c.mp4"), duration_s=6.0, width=96, height=48, audio_rate=16000,
                  seed=100 + i)
    for j, ms in enumerate(SHIFTS):
        make_clip(os.path.join(va_dir, f"v{j}_c.mp4"), duration_s=6.0, width=96, height=48, audio_rate=16000,
                  seed=500 + j, offset_ms=ms)
    out = os.path.join(ROOT, "r3d_syn.pt")
    t = time.perf_counter()
    r = train(TransferOptions(data=[tr_dir], out=out, arch="r3d", crop="none", encoder={"width": 8}, steps=150,
                              batch=8, length=50, max_offset=8, channels=16, lr=2e-3))
    print(f"trained {r.steps} steps in {time.perf_counter() - t:.0f} s, final loss {r.loss:.3f}, {r.n_train} clips")
    m = load_model(out)
    for j, ms in enumerate(SHIFTS):
        tr = load_transfer_track(os.path.join(va_dir, f"v{j}_c.mp4"), "r3d", "none")
        off, conf = predict_clip(m, *to_tensors(tr.aud[None], tr.amask[None], tr.vis[None], tr.vmask[None]))
        print(f"true {ms:+d} ms -> {off * 40:+.0f} ms (peak mass {conf:.2f})")


if __name__ == "__main__":
    main()
