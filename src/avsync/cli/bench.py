"""`avsync bench ...` sub-commands (registered by avsync.cli.main)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``bench`` command to the top-level parser's subparsers."""
    p = subparsers.add_parser("bench", help="accuracy and speed benchmarks on real clips")
    sub = p.add_subparsers(dest="bench_command", required=True)
    s = sub.add_parser("shift", help="shift benchmark (benchmarks.md 1-2) over folders of real clips")
    s.add_argument("dirs", nargs="+", metavar="MEDIA_DIR")
    s.add_argument("--method", default="auto", help="estimator to benchmark (default auto)")
    s.add_argument("--out", help="write every measurement as JSON Lines here")
    s.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    s.add_argument("--shifts", metavar="MS,MS,...",
                   help="comma-separated shifts in ms (default: 0,+-20,+-40,+-120,+-240,+-333,+-400,+-600)")
    s.add_argument("--truth", metavar="CSV",
                   help="clips' own base offsets (default: the TRUTH.csv in the clips' folder or above it)")
    s.add_argument("--calibration", metavar="CAL.json",
                   help="measure with this calibration table instead of the shipped one")
    s.add_argument("--folds", metavar="CSV",
                   help="leave-speaker-out: each clip in the folds table (clip,fold,exclude) is measured "
                        "with CAL_foldK.json of its fold (see bench calibrate --folds)")
    s.add_argument("--rows", metavar="JSONL",
                   help="score measurements saved earlier with --out instead of measuring (the truth is "
                        "read afresh)")
    s.set_defaults(func=run_shift)
    c = sub.add_parser("calibrate", help="fit the weight-free estimators' bias and confidence on training clips")
    c.add_argument("train_dir", metavar="TRAIN_DIR")
    c.add_argument("--out", default="src/avsync/data/calibration.json", metavar="CAL.json", help="calibration table to write (default: the shipped one, src/avsync/data/calibration.json)")
    c.add_argument("--short", type=int, default=300, help="how many 1.2-s LRC-AR clips to include")
    c.add_argument("--seed", type=int, default=0, help="seed of the draw of short clips and shifts (default 0)")
    c.add_argument("--speech", metavar="DIR",
                   help="also fit the speech cues on these clips, each at its TRUTH.csv base (unknown bases "
                        "are skipped)")
    c.add_argument("--folds", metavar="CSV",
                   help="with --speech: also write one table per fold (clip,fold,exclude), each fitted "
                        "without that fold's clips and its speakers' training clips (OUT_foldK.json)")
    c.add_argument("--exclude", nargs="+", metavar="PREFIX",
                   help="leave out training clips whose file name or speaker id starts with PREFIX "
                        "(the speakers or corpora of the clips the benchmark scores)")
    c.add_argument("--events", metavar="EVENT_DIR",
                   help="fit the motion cue on these non-speech clips (with a leave-one-clip-out check)")
    c.set_defaults(func=run_calibrate)
    sp = sub.add_parser("speed", help="wall time vs the ffmpeg decode floor, real-time factor, peak RSS")
    sp.add_argument("clip", metavar="CLIP")
    sp.add_argument("--seconds", type=float, default=60.0, help="loop the clip to at least this long")
    sp.add_argument("--runs", type=int, default=5, help="timed runs of each command; the medians are reported (default 5)")
    sp.add_argument("--method", default="auto", help="estimator to time (default auto)")
    sp.set_defaults(func=run_speed)
    b = sub.add_parser("batch", help="avsync batch (its process pool and a Dask LocalCluster): 1 vs 2 workers, "
                                     "throughput, parallel efficiency, rerun skips")
    b.add_argument("dirs", nargs="+", metavar="MEDIA_DIR")
    b.add_argument("--inputs", type=int, default=100, help="inputs to make (variants + 1 corrupt; default 100)")
    b.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    b.add_argument("--max-seconds", type=float, default=8.0, help="use clips up to this long (default 8)")
    b.add_argument("--repeat", type=int, default=1, help="run the worker counts this many times, interleaved")
    b.add_argument("--threads", type=int, default=None,
                   help="avsync batch --threads N for every run (default: the batch default)")
    b.add_argument("--engines", default="local,dask", metavar="E,E",
                   help="what runs the batch: local (avsync batch's process pool, its default) and/or dask "
                        "(a LocalCluster, as --scheduler does); default both")
    b.add_argument("--keep", action="store_true", help="keep the generated inputs and results")
    b.set_defaults(func=run_batch_bench)
    sy = sub.add_parser("syncnet", help="SyncNet scoring speed (windows/s, GFLOP/s) and fast-mode agreement")
    sy.add_argument("clips", nargs="+", metavar="CLIP")
    sy.add_argument("--weights", help="syncnet_v2.model (or $AVSYNC_SYNCNET_WEIGHTS)")
    sy.add_argument("--crop", default="auto", choices=("auto", "none"), help="auto: detect and track faces (default); none: the clips are face crops already")
    sy.add_argument("--runs", type=int, default=3, help="timed runs per precision (default 3)")
    sy.add_argument("--batch", type=int, default=None, help="lip windows per batch (default: 8 exact, 12 fast, 8 onnx)")
    sy.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    sy.add_argument("--exact-only", action="store_true", help="time the exact (fp32) precision only")
    sy.add_argument("--modes", default=None, metavar="M,M",
                    help="precisions to compare with exact (default: fast, plus onnx when onnxruntime is "
                         "installed); any of fast, onnx")
    sy.set_defaults(func=run_syncnet)
    rb = sub.add_parser("robustness", help="broken and hostile inputs through detect, batch and serve: a summary "
                                           "table (tracebacks, hangs, wrong exit codes, rows lost)")
    rb.add_argument("clips", nargs="*", metavar="CLIP_OR_DIR", help="real clips to derive the corpus from "
                                                                   "(default: one synthetic clip)")
    rb.add_argument("--max-clips", type=int, default=2, help="use at most this many clips (default 2)")
    rb.add_argument("--method", default="motion", help="detect method (default motion: the fastest)")
    rb.add_argument("--timeout-s", type=float, default=60.0, help="deadline of one detect run (default 60)")
    rb.add_argument("--no-service", action="store_true", help="leave out the serve part")
    rb.add_argument("--work", metavar="DIR", help="build the corpus here (kept); default a temporary folder")
    rb.add_argument("--keep", action="store_true", help="keep the temporary folder")
    rb.add_argument("--out", metavar="JSON", help="every outcome as JSON")
    rb.set_defaults(func=run_robustness)


def run_shift(args: argparse.Namespace) -> int:
    from ..bench.shift import main

    return main(args)


def run_calibrate(args: argparse.Namespace) -> int:
    from ..bench.calibrate import main

    return main(args)


def run_speed(args: argparse.Namespace) -> int:
    from ..bench.speed import main

    return main(args)


def run_batch_bench(args: argparse.Namespace) -> int:
    from ..bench.batch import main

    return main(args)


def run_syncnet(args: argparse.Namespace) -> int:
    from ..bench.syncnet import main

    return main(args)



def run_robustness(args: argparse.Namespace) -> int:
    from ..bench.robustness import main

    return main(args)
