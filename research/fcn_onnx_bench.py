"""``avsync bench fcn-onnx --weights MODEL.pt CLIP``: FCN-SyncNet inference time in torch vs ONNX
Runtime on a real clip's features, and how far the two disagree.

The clip's model inputs (mouth trajectories and log-mel, extracted once; ``--cache`` keeps them)
are looped to ``--seconds`` (default 60 s, one detect chunk) and the model alone is timed:
the torch module (fp32, ``torch.no_grad``) and the same weights exported to ONNX in a private
temporary folder and run by onnxruntime's CPU provider, both on ``--threads`` threads, ``--runs``
times interleaved (the fastest run of each is kept: this measures the code, not the neighbours on
a shared machine).  Printed: milliseconds per pass, real-time factor, the ratio, the largest
absolute deviation of the valid frame logits and of ``sync_probs``, and whether the clip-level
offsets agree.  Nothing is written outside the temporary folder (and the cache when given).
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np


def _looped(track, frames: int):
    """The track's inputs repeated to ``frames`` video frames, batch of 1, as numpy (aud, am, vis, vm)."""
    from avsync.nn.fcn_io import HOPS

    reps = -(-frames // len(track))
    vis = np.tile(track.vis, (reps, 1))[:frames]
    vm = np.tile(track.vmask, reps)[:frames]
    aud = np.tile(track.aud, (reps, 1))[:HOPS * frames]
    am = np.tile(track.amask, reps)[:HOPS * frames]
    return (np.ascontiguousarray(aud.T[None]), am[None].copy(), np.ascontiguousarray(vis.T[None]), vm[None].copy())


def main(args) -> int:
    from avsync.errors import UsageError

    try:
        import torch
    except ImportError:
        raise UsageError("bench fcn-onnx needs torch: pip install 'avsync[fcn]'") from None
    from avsync.nn.fcn import load
    from avsync.nn.fcn_io import FPS, track_from_raw
    from avsync.training.fcn_data import load_or_extract
    from avsync.nn.fcn_onnx import FCNOnnx, export_fcn_onnx

    if args.runs < 1 or args.seconds <= 0 or args.threads < 1:
        raise UsageError("--runs, --seconds and --threads must be positive")
    if not os.path.isfile(args.weights):
        raise UsageError(f"{args.weights}: weights file not found")
    try:
        model = load(args.weights)
    except Exception as exc:
        raise UsageError(f"{args.weights}: cannot load FCN-SyncNet weights ({' '.join(str(exc).split())[:200]})") from None
    from avsync.training.fcn_data import cache_key

    cached = bool(args.cache) and os.path.isfile(os.path.join(args.cache, f"{cache_key(args.clip)}.npz"))
    t = time.perf_counter()
    raw = load_or_extract(args.clip, args.cache)
    feat_s = time.perf_counter() - t
    track = track_from_raw(raw)
    if track is None or track.vmask.mean() < 0.2:
        from avsync.errors import MediaError

        raise MediaError("too few frames with a tracked face to benchmark on", args.clip)
    frames = int(round(args.seconds * FPS))
    aud, am, vis, vm = _looped(track, frames)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="avsync-fcn-bench-") as tmp:
        path = os.path.join(tmp, "m.onnx")
        t = time.perf_counter()
        export_fcn_onnx(args.weights, path, verify=False)
        export_s = time.perf_counter() - t
        ort = FCNOnnx(path, threads=args.threads)
        ta = [torch.from_numpy(x) for x in (aud, am, vis, vm)]

        def run_torch():
            with torch.no_grad():
                probs, _, _ = model(ta[0], ta[2], ta[1], ta[3])
            return probs.numpy(), model.last["logits"].numpy(), model.last["valid"].numpy(), \
                model.last["clip_logits"].numpy()

        def run_ort():
            o = ort.run(aud, am, vis, vm)
            return o["sync_probs"], o["frame_logits"], o["valid"], o["clip_logits"]

        ref, got = run_torch(), run_ort()  # warm-up (and the outputs compared below)
        times = {"torch": [], "onnx": []}
        for _ in range(args.runs):
            for name, fn in (("torch", run_torch), ("onnx", run_ort)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    valid = ref[2] > 0
    dev_logits = float(np.abs(got[1] - ref[1])[valid].max()) if valid.any() else 0.0
    dev_probs = float(np.abs(got[0] - ref[0]).max())

    def clip_offset(clip_logits):
        z = clip_logits[0] - clip_logits[0].max()
        return int(np.argmax(z)) - model.K

    o_t, o_o = clip_offset(ref[3]), clip_offset(got[3])
    secs = frames / FPS
    best = {k: min(v) for k, v in times.items()}
    print(f"clip {args.clip}: {len(track)} frames ({len(track) / FPS:.1f} s) looped to {secs:.0f} s; "
          f"features {feat_s:.1f} s{' (from the cache)' if cached else ''}; export {export_s:.1f} s")
    print(f"model {os.path.basename(args.weights)}: K={model.K}, channels={model.config['channels']}, "
          f"{sum(p.numel() for p in model.parameters())} parameters; threads {args.threads}, runs {args.runs}")
    print(f"{'runtime':8s} {'best ms':>9s} {'median ms':>10s} {'x real time':>12s}")
    for k in ("torch", "onnx"):
        print(f"{k:8s} {1000 * best[k]:9.1f} {1000 * float(np.median(times[k])):10.1f} {secs / best[k]:12.0f}")
    print(f"onnx / torch time (best): {best['onnx'] / best['torch']:.2f}")
    print(f"max |onnx - torch|: frame logits (valid) {dev_logits:.2e}, sync_probs {dev_probs:.2e}; "
          f"clip offset torch {o_t:+d} / onnx {o_o:+d} frames ({'agree' if o_t == o_o else 'DIFFER'})")
    return 0
