"""``avsync bench syncnet CLIP... --weights PATH``: SyncNet scoring speed and the other modes'
agreement with the exact mode.

For every clip: the exact (fp32) run and each other mode (``--modes``: fast = bfloat16, onnx =
ONNX Runtime fp32), each ``--runs`` times
(interleaved; the run with the shortest inference is kept: this measures the code, not the
neighbours on a shared machine),
printing decode/face time, inference time, windows per second, achieved GFLOP/s, the
real-time factor, each mode's speed ratio to exact, whether the offsets agree and the largest
relative deviation of the 31-value distance curve.  Nothing is written to disk.
"""
from __future__ import annotations

import os
import time

import numpy as np


def _once(path, opts):
    from ..estimators.syncnet.plugin import run_file

    cpu = time.process_time()
    t = time.perf_counter()
    res = run_file(path, opts)
    wall = time.perf_counter() - t
    return res, wall, time.process_time() - cpu


def _modes(args) -> tuple[str, ...]:
    from ..errors import UsageError
    from ..estimators.syncnet.score import PRECISIONS

    if args.exact_only:
        return ("exact",)
    if args.modes:
        extra = [m.strip() for m in args.modes.split(",") if m.strip() and m.strip() != "exact"]
        bad = [m for m in extra if m not in PRECISIONS]
        if bad:
            raise UsageError(f"unknown mode {bad[0]!r}; choose from {', '.join(PRECISIONS)}")
        return ("exact", *dict.fromkeys(extra))
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return ("exact", "fast")
    return ("exact", "fast", "onnx")


HEADER = (f"{'clip':38s} {'mode':9s} {'media_s':>7s} {'wall_s':>7s} {'cpu_s':>7s} {'infer_s':>7s} {'win':>5s} "
          f"{'win/s':>6s} {'GFLOP/s':>7s} {'xRT':>5s} {'off':>4s} {'lse_d':>8s} {'lse_c':>7s}")
#: the table's columns, explained (printed under it)
LEGEND = """\
# clip: the file; mode: exact (torch fp32), fast (bfloat16) or onnx (ONNX Runtime fp32); media_s: seconds of
# media scored (25-fps frames / 25); wall_s / cpu_s: wall and CPU seconds of the whole run (decode, faces,
# scoring); infer_s: seconds in the network alone; win: lip windows scored; win/s: windows per second of
# inference; GFLOP/s: network arithmetic per second of inference; xRT: media seconds per wall second;
# off: SyncNet's AV offset in 25-fps frames (the reference's sign); lse_d / lse_c: LSE-D (min distance,
# lower is better) and LSE-C (confidence, higher is better) of the chosen face track. Best of --runs."""


def main(args) -> int:
    from dataclasses import replace

    from ..estimators.syncnet.plugin import SyncNetOptions, resolve_weights

    base = SyncNetOptions(weights=resolve_weights(args.weights), crop=args.crop, threads=args.threads,
                          batch=args.batch)
    print(f"# avsync bench syncnet: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}, "
          f"batch {args.batch or 'default'}, best of {args.runs}")
    modes = _modes(args)
    print(HEADER)
    worst: dict = {m: 0.0 for m in modes}
    ratios: dict = {m: [] for m in modes}
    same: dict = {m: True for m in modes}
    for path in args.clips:
        best = {}
        runs: dict = {m: [] for m in modes}
        for _ in range(max(1, args.runs)):  # interleaved, so a busy neighbour slows both modes alike
            for mode in modes:
                runs[mode].append(_once(path, replace(base, precision=mode)))
        for mode in modes:
            res, wall, cpu = min(runs[mode], key=lambda r: r[0].figures["inference_s"])
            best[mode] = res
            b = res.best
            f = res.figures
            media_s = res.frames / 25.0
            print(f"{os.path.basename(path)[:38]:38s} {mode:9s} {media_s:7.2f} {wall:7.2f} {cpu:7.2f} "
                  f"{f['inference_s']:7.2f} {f['windows']:5d} {f['windows_per_s'] or 0:6.1f} "
                  f"{f['gflop_per_s'] or 0:7.1f} {media_s / wall:5.2f} "
                  f"{(b.score.offset if b else 0):4d} {(b.score.min_dist if b else float('nan')):8.4f} "
                  f"{(b.score.confidence if b else float('nan')):7.4f}", flush=True)
        e_res = best["exact"].best
        for mode in modes[1:]:
            q_res = best[mode].best
            if not (e_res and q_res):
                continue
            e, q = e_res.score, q_res.score
            dev = float(np.max(np.abs(q.curve - e.curve) / np.abs(e.curve)))
            ratio = best["exact"].figures["inference_s"] / max(best[mode].figures["inference_s"], 1e-9)
            worst[mode] = max(worst[mode], dev)
            ratios[mode].append(ratio)
            same[mode] &= e.offset == q.offset
            print(f"{'':38s} {mode}/exact inference speed-up {ratio:.2f}x, offsets "
                  f"{'equal' if e.offset == q.offset else 'DIFFER'}, max curve deviation {dev * 100:.3f} %")
    print(LEGEND)
    for mode in modes[1:]:
        if ratios[mode]:
            print(f"# {mode} mode: speed-up {min(ratios[mode]):.2f}x..{max(ratios[mode]):.2f}x, offsets "
                  f"{'all equal' if same[mode] else 'NOT all equal'}, max curve deviation {worst[mode] * 100:.3f} %")
    return 0
