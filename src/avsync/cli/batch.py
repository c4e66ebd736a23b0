"""``avsync batch INPUTS... --out results.jsonl``: many files, resumable, local or on Dask."""
from __future__ import annotations

import sys
import time

from .argtypes import ANALYSIS_OPTIONS, add_analysis_arguments, given_options, whole


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", help="measure many files (resumable; local processes or a Dask cluster)",
        description="Measure every input (files, folders, globs, CSV manifests) and append one row each to OUT "
                    "(JSON Lines, or CSV with --csv). Inputs already in OUT with the same content and options are "
                    "skipped; failures are error rows.")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, metavar="FILE", help="results file (appended; resumable)")
    p.add_argument("--csv", action="store_true", help="write CSV instead of JSON Lines")
    p.add_argument("--workers", type=whole, metavar="N", help="local worker processes (default: CPU count)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask cluster at ADDRESS (tcp://host:8786)")
    p.add_argument("--threads", type=whole, metavar="N",
                   help="threads per worker: caps the video decoder and the OpenCV/torch/BLAS pools (default: "
                        "those pools get the machine's CPUs divided by its workers, at least 1; the decoder "
                        "keeps FFmpeg's choice)")
    p.add_argument("--retry-errors", action="store_true", help="measure again inputs whose previous row is an error")
    add_analysis_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _hms(s: float | None) -> str:
    if s is None:
        return "--:--"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _Lines:
    """``progress('files', done, total)`` as a line on stderr every 2 s and at the end (for logs,
    when stderr is not a terminal)."""

    def __init__(self):
        self.t0: float | None = None
        self.last = 0.0

    def __call__(self, stage: str, done: float, total: float) -> None:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        final = done >= total
        if not final and now - self.last < 2.0:
            return
        self.last = now
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) * elapsed / done if done else None
        sys.stderr.write(f"batch: {done}/{total} done, {rate:.2f} files/s, elapsed {_hms(elapsed)}, "
                         f"ETA {_hms(eta)}\n")
        sys.stderr.flush()

    def close(self) -> None:
        pass


def _progress(enabled: bool):
    from ..progress import ProgressBar

    if enabled and sys.stderr.isatty():
        return ProgressBar("batch", True, min_duration_s=None, counts=True)
    return _Lines() if enabled else None


def run(args) -> int:
    from ..apps.batch import BatchOptions, run_batch
    from ..errors import UsageError
    from ..options import DetectOptions

    detect = DetectOptions(**given_options(args, ANALYSIS_OPTIONS))
    opts = BatchOptions(detect=detect, workers=args.workers, scheduler=args.scheduler, csv=args.csv,
                        retry_errors=args.retry_errors, threads=args.threads)
    progress = _progress(not args.no_progress)
    try:
        res = run_batch(args.inputs, args.out, opts, progress)
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    finally:
        if progress is not None:
            progress.close()
    reused = f", {res.reused} reused (same content as another input)" if res.reused else ""
    sys.stderr.write(f"batch: {res.total} inputs: {res.done} measured ({res.errors} errors), {res.skipped} skipped "
                     f"(already in {args.out}){reused}; {res.elapsed_s:.1f} s\n")
    return 3 if res.errors else 0
