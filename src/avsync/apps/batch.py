"""Many files, resumable: local worker processes or a Dask cluster.

Inputs are files, folders (searched recursively for media), glob patterns or CSV
manifests (a ``path`` or ``file`` column, else the first column; relative paths are
relative to the manifest).  Every input gets a key: the SHA-256 of its content plus
the analysis options, so a rerun skips what is already in the output (whatever the
file is called now) and a changed file or option is measured again.  A failure is an
error row, never the end of the batch.  Rows are appended (and flushed) as results
arrive, so an interrupted batch resumes where it stopped; a torn last line left by a
crash is dropped when the output is reopened.

Dask is imported only when ``scheduler`` is given; workers need ``avsync``
importable (the same version) and the input paths readable.

Each worker process gets a thread budget (by default the machine's usable CPUs divided
by the workers that share it, at least 1): it caps OpenCV's and (when loaded) torch's
thread pools and the BLAS/OpenMP pools, which would otherwise each assume the whole
machine.  The video decoder keeps FFmpeg's own threads unless ``BatchOptions.threads``
is given, which caps the decoder too: forcing one decoder thread per worker measured
slower, not faster, in A/B runs on a 2-core machine (and the decode thread that feeds
the face analysis stays in every case: decoding inline measured a few per cent more CPU).
Inputs are handed out largest first (file size), so a big file does not start last
and keep one worker busy after the others are done.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import UsageError
from ..media.base import output_mode
from ..options import DetectOptions, check_number
from ..progress import Progress
from ..report import csv_cells, csv_writer, result_row

MEDIA_EXTENSIONS = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".ts", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".mxf", ".3gp", ".ogv", ".m2ts", ".mts", ".vob"}
#: the key changes when these do (the report would differ)
KEY_OPTIONS = ("method", "tolerance", "max_lag_ms", "window_s", "hop_s", "weights")


@dataclass(frozen=True)
class BatchOptions:
    detect: DetectOptions = field(default_factory=DetectOptions)
    workers: int | None = None  # local processes (default: CPU count)
    scheduler: str | None = None  # Dask scheduler address
    csv: bool = False
    retry_errors: bool = False  # re-run inputs whose previous row is an error
    scheduler_timeout_s: float = 20.0
    #: threads per worker: None caps the worker processes' OpenCV/torch/BLAS pools at the usable
    #: CPUs // the workers on that machine (at least 1); a number caps those and the video decoder
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.detect, DetectOptions):
            raise UsageError(f"detect must be DetectOptions, not {type(self.detect).__name__}")
        check_number("workers", self.workers, minimum=1, strict=False, whole=True, optional=True)
        check_number("threads", self.threads, minimum=1, strict=False, whole=True, optional=True)
        check_number("scheduler_timeout_s", self.scheduler_timeout_s)
        if self.scheduler is not None and (not isinstance(self.scheduler, str) or not self.scheduler.strip()):
            raise UsageError(f"scheduler must be an address such as tcp://host:8786, not {self.scheduler!r}")


@dataclass
class BatchResult:
    total: int = 0  # inputs found
    skipped: int = 0  # already in the output under this path
    reused: int = 0  # same content (and options) as another input: its row copied under this path
    done: int = 0  # measured now (ok + error)
    errors: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def todo(self) -> int:
        return self.total - self.skipped - self.reused

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def eta_s(self) -> float | None:
        if self.done == 0:
            return None
        return (self.todo - self.done) * self.elapsed_s / self.done


# -- inputs --------------------------------------------------------------------------------------
def _is_media(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in MEDIA_EXTENSIONS


def _manifest(path: str) -> list[str]:
    base = os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return out
    head = [h.strip().lower() for h in rows[0]]
    col = next((head.index(c) for c in ("path", "file", "filename", "media") if c in head), None)
    body = rows[1:] if col is not None else rows
    col = col or 0
    for r in body:
        if len(r) > col and r[col].strip():
            p = r[col].strip()
            out.append(p if os.path.isabs(p) else os.path.join(base, p))
    return out


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files, folders, globs and CSV manifests -> a list of paths (first occurrence kept)."""
    out: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                out.extend(os.path.join(root, f) for f in sorted(files) if _is_media(f))
        elif os.path.isfile(item) and item.lower().endswith(".csv"):
            out.extend(_manifest(item))
        elif not os.path.exists(item) and any(c in item for c in "*?["):
            out.extend(sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p)))
        else:
            out.append(item)  # a missing file becomes an error row
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def options_key(options: DetectOptions) -> str:
    d = options.to_dict()
    return json.dumps({k: d.get(k) for k in KEY_OPTIONS}, sort_keys=True)


def input_key(path: str, options: DetectOptions) -> str:
    """SHA-256 of the content and the options; for an unreadable input, of its name."""
    h = hashlib.sha256()
    h.update(options_key(options).encode())
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a named pipe, device or socket: never opened
            h.update(b"special:" + os.fsencode(os.path.abspath(path)))
            return h.hexdigest()[:32]
        with open(path, "rb") as fh:
            h.update(b"content:")
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        h.update(b"unreadable:" + os.fsencode(os.path.abspath(path)))
    return h.hexdigest()[:32]


# -- thread budget -------------------------------------------------------------------------------
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_budget(workers: int, cpus: int | None = None) -> int:
    """Threads per worker when ``workers`` workers share ``cpus`` CPUs."""
    return max(1, (cpus or usable_cpus()) // max(1, workers))


_applied_budget: tuple[int, bool] | None = None


def limit_threads(threads: int) -> None:
    """Cap this (worker) process's thread pools at ``threads``: OpenCV, torch when loaded,
    and the BLAS/OpenMP environment read by libraries loaded later.  Process-wide: call it
    in worker processes only, never in the caller's.  Cheap when nothing changed; call it
    again after work that may have imported torch."""
    global _applied_budget
    import sys

    torch = sys.modules.get("torch")
    state = (threads, torch is not None)
    if _applied_budget == state:
        return
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:
        pass
    if torch is not None:
        try:
            torch.set_num_threads(threads)
        except Exception:
            pass
    from ..parallel import set_thread_budget

    set_thread_budget(threads)  # one thread: no helper process beside a measurement
    _applied_budget = state


# -- one input (runs in a worker) ----------------------------------------------------------------
def process_one(path: str, key: str, options: dict, threads: int | None = None) -> dict:
    """Measure one input; always returns a row (status 'ok' or 'error').  ``threads``: the
    worker process's thread budget (see :func:`limit_threads`); None leaves it as it is."""
    if threads is not None:
        limit_threads(threads)
    try:
        return _measure(path, key, options)
    finally:
        if threads is not None:  # a learned method may have loaded torch just now
            limit_threads(threads)


def _measure(path: str, key: str, options: dict) -> dict:
    from ..api import detect
    from ..errors import AvsyncError

    t = time.perf_counter()
    try:
        report = detect(path, DetectOptions.from_dict(options))
    except AvsyncError as exc:
        return result_row(path, error=" ".join(str(exc).split()), key=key, elapsed_s=time.perf_counter() - t)
    except Exception as exc:  # a bug or an odd file: still one row
        msg = f"{path}: internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        return result_row(path, error=msg, key=key, elapsed_s=time.perf_counter() - t)
    return result_row(path, report, key=key, elapsed_s=time.perf_counter() - t)


# -- output --------------------------------------------------------------------------------------
class _Output:
    """Append-only JSONL or CSV (the columns of :data:`avsync.report.ROW_FIELDS`); reopening keeps
    the valid rows and drops a torn tail."""

    def __init__(self, path: str, as_csv: bool):
        self.path = path
        self.csv = as_csv
        self.rows: dict[str, dict] = {}  # key -> a row with that key
        self.inputs: set[tuple[str, str]] = set()  # (key, input) of every row
        lines = self._read()
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".batch-", dir=d)
        os.fchmod(fd, output_mode(path))  # the umask's mode (or the old file's), not mkstemp's 0600
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            if self.csv:
                w = csv_writer(fh)
                w.writeheader()
                for r in lines:
                    w.writerow(csv_cells(r))
            else:
                for r in lines:
                    fh.write(json.dumps(r, allow_nan=False) + "\n")
        os.replace(tmp, path)
        self.fh = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv_writer(self.fh) if self.csv else None

    def _read(self) -> list[dict]:
        rows: list[dict] = []
        if not os.path.isfile(self.path):
            return rows
        with open(self.path, newline="", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        if self.csv:
            complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
            for r in csv.DictReader(complete.splitlines()):
                if r.get("key") and r.get("status") in ("ok", "error"):
                    rows.append(r)
        else:
            for line in text.splitlines(keepends=True):
                if not line.endswith("\n"):
                    break  # torn tail
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if isinstance(r, dict) and r.get("key") and r.get("status") in ("ok", "error"):
                    rows.append(r)
        for r in rows:
            self.rows[r["key"]] = r
            self.inputs.add((r["key"], str(r.get("input") or "")))
        return rows

    def write(self, row: dict) -> None:
        if self.csv:
            self.writer.writerow(csv_cells(row))
        else:
            self.fh.write(json.dumps(row, allow_nan=False) + "\n")
        self.fh.flush()
        self.rows[row["key"]] = row
        self.inputs.add((row["key"], str(row.get("input") or "")))

    def close(self) -> None:
        self.fh.close()


# -- the run -------------------------------------------------------------------------------------
def run_batch(inputs: Iterable[str], out: str, options: BatchOptions = BatchOptions(),
              progress: Progress | None = None) -> BatchResult:
    """Measure every input not already in ``out``; append a row per input to ``out``.
    ``progress('files', measured, to_measure)`` hears each finished input (and the start)."""
    if not isinstance(options, BatchOptions):
        raise UsageError(f"options must be BatchOptions, not {type(options).__name__}")
    paths = expand_inputs(inputs)
    res = BatchResult(total=len(paths))
    output = _Output(out, options.csv)
    opts = options.detect.to_dict()
    if options.threads is not None:  # an explicit budget caps the video decoder too
        opts["threads"] = options.threads
    try:
        todo = []
        twins: dict[str, list[str]] = {}  # key -> further inputs with the same content: rows copied
        reuse: list[str] = []
        for p in paths:
            key = input_key(p, options.detect)
            prev = output.rows.get(key)
            redo = prev is not None and options.retry_errors and prev.get("status") == "error"
            if prev is not None and not redo:
                if (key, p) in output.inputs:
                    res.skipped += 1
                else:  # the same content under another name: its own row, the measurement reused
                    output.write(_as_input(prev, p))
                    res.reused += 1
                continue
            if key in twins:
                twins[key].append(p)
                continue
            twins[key] = []
            todo.append((p, key))
        todo.sort(key=lambda pk: -_size(pk[0]))  # largest first: no big straggler at the end
        res.started = time.monotonic()
        if progress is not None:
            progress("files", 0, res.todo)

        def record(row: dict) -> None:
            rows = [row] + [_as_input(row, p) for p in twins.get(row.get("key"), [])]
            for r in rows:
                output.write(r)
                res.done += 1
                res.errors += r.get("status") == "error"
            if progress is not None:
                progress("files", res.done, res.todo)

        if todo:
            if options.scheduler:
                _run_dask(todo, opts, options.scheduler, record, options.scheduler_timeout_s, options.threads)
            else:
                _run_local(todo, opts, options.workers, record, options.threads)
    finally:
        output.close()
    return res


def _as_input(row: dict, path: str) -> dict:
    """``row`` (of an input with the same content) as the row of ``path``."""
    out = {**row, "input": path}
    if isinstance(out.get("report"), dict):
        rep = dict(out["report"])
        if isinstance(rep.get("media"), dict):
            rep["media"] = {**rep["media"], "path": path}
        if isinstance(rep.get("fix"), dict) and isinstance(row.get("report", {}).get("media"), dict):
            old = row["report"]["media"].get("path")
            rep["fix"] = {k: (v.replace(str(old), path) if isinstance(v, str) and old else v)
                          for k, v in rep["fix"].items()}
        out["report"] = rep
    if isinstance(out.get("error"), str) and row.get("input"):
        out["error"] = out["error"].replace(str(row["input"]), path)
    return out


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _run_local(todo, opts: dict, workers: int | None, record, threads: int | None = None) -> None:
    import concurrent.futures as cf
    import multiprocessing

    n = max(1, min(workers or usable_cpus(), len(todo)))
    if n == 1:  # in this process: its thread pools are the caller's, left as they are
        for p, k in todo:
            record(process_one(p, k, opts))
        return
    budget = threads or thread_budget(n)
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init,
                                initargs=(budget, os.getpid())) as ex:
        futs = {ex.submit(process_one, p, k, opts, budget): (p, k) for p, k in todo}
        try:
            for f in cf.as_completed(futs):
                p, k = futs[f]
                try:
                    row = f.result()
                except Exception as exc:  # a worker died (out of memory, ...)
                    row = result_row(p, error=f"{p}: worker failed ({type(exc).__name__})", key=k)
                record(row)
        except KeyboardInterrupt:
            for f in futs:
                f.cancel()
            raise


def _worker_init(threads: int, parent: int) -> None:
    """A local batch worker: its thread budget, and it dies with the batch (kill -9 included)."""
    from .procs import watch_parent

    watch_parent(parent)
    limit_threads(threads)


def dask_thread_budget(client) -> int:
    """Threads per task slot on the cluster behind ``client``: for each machine, its usable
    CPUs // the task slots (worker threads) on it; the smallest over the machines."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        return 1
    cpus = client.run(usable_cpus)
    per_host: dict[str, list[int]] = {}
    for addr, w in workers.items():
        host = w.get("host") or addr
        c = cpus.get(addr) or 1
        slot = per_host.setdefault(host, [0, c])
        slot[0] += int(w.get("nthreads") or 1)
        slot[1] = max(slot[1], c)
    return min(thread_budget(n, c) for n, c in per_host.values())


def _run_dask(todo, opts: dict, address: str, record, timeout_s: float = 20.0, threads: int | None = None) -> None:
    try:
        from dask.distributed import Client, as_completed
    except ImportError as exc:
        raise UsageError(f"--scheduler needs the 'batch' extra: pip install 'avsync[batch]' ({exc})") from None

    try:
        client = Client(address, timeout=timeout_s)
    except Exception as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address} ({' '.join(str(exc).split())[:200]})") \
            from None
    try:
        if threads is None:
            try:
                threads = dask_thread_budget(client)
            except Exception:  # an old or odd scheduler: be conservative
                threads = 1
        futs = [client.submit(process_one, p, k, opts, threads, pure=False, key=f"avsync-{k}-{i}",
                              priority=len(todo) - i)
                for i, (p, k) in enumerate(todo)]
        where = {f.key: (p, k) for f, (p, k) in zip(futs, todo)}
        for f in as_completed(futs):
            p, k = where[f.key]
            try:
                row = f.result()
            except Exception as exc:
                msg = f"{p}: worker failed ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
                row = result_row(p, error=msg, key=k)
            record(row)
    finally:
        client.close()
