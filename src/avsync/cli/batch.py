"""``avsync batch INPUTS... --out results.jsonl``: many files, resumable, local or on Dask."""
from __future__ import annotations

import sys
import time

from ..timeline import TOLERANCE_NAMES
from .argtypes import count as _count, positive as _positive


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", help="measure many files (resumable; local processes or a Dask cluster)",
        description="Measure every input (files, folders, globs, CSV manifests) and append one row each to OUT "
                    "(JSON Lines, or CSV with --csv). Inputs already in OUT with the same content and options are "
                    "skipped; failures are error rows.")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, metavar="FILE", help="results file (appended; resumable)")
    p.add_argument("--csv", action="store_true", help="write CSV instead of JSON Lines")
    p.add_argument("--workers", type=_count, metavar="N", help="local worker processes (default: CPU count)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask cluster at ADDRESS (tcp://host:8786)")
    p.add_argument("--threads", type=_count, metavar="N",
                   help="threads per worker: caps the video decoder and the OpenCV/torch/BLAS pools (default: "
                        "those pools get the machine's CPUs divided by its workers, at least 1; the decoder "
                        "keeps FFmpeg's choice)")
    p.add_argument("--retry-errors", action="store_true", help="measure again inputs whose previous row is an error")
    p.add_argument("--method", default="auto", metavar="M")
    p.add_argument("--tolerance", default="ebu-r37", choices=TOLERANCE_NAMES, metavar="PRESET")
    p.add_argument("--max-lag-ms", type=_positive, default=1000.0, metavar="MS")
    p.add_argument("--window-s", type=_positive, default=5.0, metavar="S")
    p.add_argument("--hop-s", type=_positive, default=1.0, metavar="S")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def _hms(s: float | None) -> str:
    if s is None:
        return "--:--"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, r) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        final = r.done >= r.todo
        if not final and now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        rate = r.done / r.elapsed_s if r.elapsed_s > 0 else 0.0
        line = (f"batch: {r.done}/{r.todo} done ({r.errors} errors, {r.skipped} skipped), "
                f"{rate:.2f} files/s, elapsed {_hms(r.elapsed_s)}, ETA {_hms(r.eta_s())}")
        sys.stderr.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        sys.stderr.flush()


def run(args) -> int:
    from ..api import DetectOptions
    from ..apps.batch import BatchOptions, run_batch
    from ..estimators.registry import available_methods
    from ..errors import UsageError

    if args.method not in available_methods():
        raise UsageError(f"unknown method {args.method!r}; choose from {', '.join(available_methods())}")
    opts = BatchOptions(
        detect=DetectOptions(method=args.method, tolerance=args.tolerance, max_lag_ms=args.max_lag_ms,
                             window_s=args.window_s, hop_s=args.hop_s),
        workers=args.workers, scheduler=args.scheduler, csv=args.csv, retry_errors=args.retry_errors,
        threads=args.threads)
    try:
        res = run_batch(args.inputs, args.out, opts, _Progress(not args.no_progress))
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    sys.stderr.write(f"batch: {res.total} inputs: {res.done} measured ({res.errors} errors), {res.skipped} skipped "
                     f"(already in {args.out}); {res.elapsed_s:.1f} s\n")
    return 3 if res.errors else 0
