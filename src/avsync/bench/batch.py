"""Batch scaling benchmark: ``avsync bench batch MEDIA_DIR [--inputs 100] [--workers 1,2] [--repeat R]``.

Makes ``--inputs`` inputs in a temporary folder: variants of the real clips found under
MEDIA_DIR (each clip re-timed by a different offset with :func:`avsync.media.remux.fix_file`:
packets copied, so every variant is a distinct real file) plus one corrupt file.  Then,
for each engine (``--engines local,dask``: ``avsync batch``'s own process pool, the default
path, and a Dask ``LocalCluster`` of processes with one thread each, whose workers are warmed
first: imports and face models loaded, not timed) and each worker count, times
:func:`avsync.apps.batch.run_batch` over all inputs into a fresh output; finally reruns the
last batch to show that everything is skipped.  ``--repeat R`` runs the settings R
times, interleaved, on the same inputs, so that a change in the machine's load hits all.  Prints every run (wall time, the workers' CPU time, the
per-worker thread budget, the load average), the speed-up of each round and their
median, and the row counts.  Each worker gets the batch's default thread budget
(usable CPUs // workers for its OpenCV/torch/BLAS pools, FFmpeg's own decoder threads)
unless ``--threads N`` caps all of them at N.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time


def _clips(dirs: list[str], max_seconds: float) -> list[str]:
    from ..apps.batch import expand_inputs
    from ..media import open_media

    out = []
    for p in expand_inputs(dirs):
        try:
            with open_media(p) as src:
                i = src.info
                if i.has_audio and i.has_video and 0 < i.duration_s <= max_seconds:
                    out.append(p)
        except Exception:
            continue
    return out


def make_inputs(dirs: list[str], n: int, folder: str, max_seconds: float = 8.0) -> list[str]:
    from ..media.remux import fix_file

    clips = _clips(dirs, max_seconds)
    if not clips:
        from ..errors import UsageError

        raise UsageError(f"no usable clips (audio+video, <= {max_seconds:g} s) under {', '.join(dirs)}")
    paths = []
    i = 0
    while len(paths) < n - 1:
        src = clips[i % len(clips)]
        offset = -300.0 + 40.0 * (i // len(clips)) + 7.0 * (i % 5)
        ext = ".mkv"
        dst = os.path.join(folder, f"v{i:03d}_{os.path.splitext(os.path.basename(src))[0]}{ext}")
        try:
            fix_file(src, dst, offset)
            paths.append(dst)
        except Exception:
            clips.remove(src)
            if not clips:
                raise SystemExit("no clip could be re-timed")
            continue
        i += 1
    bad = os.path.join(folder, "zz_corrupt.mp4")
    with open(bad, "wb") as fh:
        fh.write(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    paths.append(bad)
    return paths


def _warm():
    from ..features.faces import landmarks_available
    from .. import api  # noqa: F401

    landmarks_available()
    return os.getpid()


def _cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _own_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _answers(rows: list[dict]) -> dict:
    """input -> (status, offset_ms, confidence) of a batch output."""
    out = {}
    for r in rows:
        rep = r.get("report") if isinstance(r.get("report"), dict) else {}
        out[os.path.basename(str(r.get("input")))] = (r.get("status"), rep.get("offset_ms"), rep.get("confidence"))
    return out


def _media_minutes(rows: list[dict]) -> float:
    total = 0.0
    for r in rows:
        rep = r.get("report") if isinstance(r.get("report"), dict) else {}
        d = (rep.get("media") or {}).get("duration_s") if isinstance(rep.get("media"), dict) else None
        total += float(d or 0.0)
    return total / 60.0


def _compare(x: dict, y: dict) -> str:
    """Whether two runs' answers agree input by input."""
    keys = sorted(set(x) | set(y))
    diff = [k for k in keys if x.get(k) != y.get(k)]
    if not diff:
        return f"identical for all {len(keys)} inputs (status, offset, confidence)"
    return f"{len(diff)} of {len(keys)} inputs differ: " + ", ".join(diff[:5])


ENGINES = ("local", "dask")


def _round(engine: str, k: int, tmp: str, out: str, threads: int | None):
    """One timed batch over ``tmp`` into ``out`` with ``k`` workers: (wall, workers' CPU, this
    process's own CPU, thread budget, the result, the rows, the load before and after)."""
    from ..apps.batch import BatchOptions, dask_thread_budget, run_batch, thread_budget

    if engine == "local":  # avsync batch's default: a process pool (1 worker: in this process)
        budget = threads or (None if k == 1 else thread_budget(k))
        _warm()  # one worker runs here: its models loaded before the clock, as the Dask workers' are
        # (a pool's fresh worker processes load theirs inside the timed run: what a batch pays)
        tree0, own0, load0 = _cpu_s(), _own_cpu_s(), os.getloadavg()[0]
        t = time.perf_counter()
        res = run_batch([tmp], out, BatchOptions(workers=k, threads=threads))
        wall = time.perf_counter() - t
        tree, own = _cpu_s() - tree0, _own_cpu_s() - own0
        # one worker runs in this process: all of it is the worker's; else the pool's children
        cpu, own = (tree, 0.0) if k == 1 else (tree - own, own)
        rows = [json.loads(x) for x in open(out, encoding="utf-8")]
        return wall, cpu, own, budget, res, rows, load0, os.getloadavg()[0]
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cl, Client(cl) as client:
        client.run(_warm)
        budget = threads or dask_thread_budget(client)
        cpu0 = sum(client.run(_cpu_s).values())
        own0 = _own_cpu_s()
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        res = run_batch([tmp], out, BatchOptions(scheduler=cl.scheduler_address, threads=threads))
        wall = time.perf_counter() - t
        cpu = sum(client.run(_cpu_s).values()) - cpu0
        own = _own_cpu_s() - own0
        load1 = os.getloadavg()[0]
        rows = [json.loads(x) for x in open(out, encoding="utf-8")]
        return wall, cpu, own, budget, res, rows, load0, load1


def main(args: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore", message="Port .* is already in use")

    from ..apps.batch import BatchOptions, run_batch
    from ..errors import UsageError

    counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    engines = [e.strip() for e in str(getattr(args, "engines", None) or ",".join(ENGINES)).split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise UsageError(f"unknown engine {bad[0]!r}; choose from {', '.join(ENGINES)}")
    tmp = tempfile.mkdtemp(prefix="avsync-bench-batch-")
    try:
        t = time.perf_counter()
        inputs = make_inputs(args.dirs, args.inputs, tmp, args.max_seconds)
        print(f"inputs: {len(inputs)} ({len(inputs) - 1} re-timed variants of real clips + 1 corrupt) "
              f"made in {time.perf_counter() - t:.1f} s; cpus {os.cpu_count()}; engines {', '.join(engines)} "
              "(local: avsync batch's process pool, the default; dask: a LocalCluster, as --scheduler)", flush=True)
        times = {(e, k): [] for e in engines for k in counts}
        cpus = {(e, k): [] for e in engines for k in counts}
        answers: dict = {}
        last_out = None
        repeat = max(1, getattr(args, "repeat", 1) or 1)
        threads = getattr(args, "threads", None)
        for rnd in range(repeat):  # interleaved, so a change in the machine's load hits every setting
            for engine in engines:
                for k in counts:
                    out = os.path.join(tmp, f"results_{engine}_{k}_{rnd}.jsonl")
                    wall, cpu, own, budget, res, rows, load0, load1 = _round(engine, k, tmp, out, threads)
                    times[(engine, k)].append(wall)
                    cpus[(engine, k)].append(cpu)
                    errs = [r for r in rows if r["status"] == "error"]
                    answers.setdefault((engine, k), {}).update(_answers(rows))
                    media_min = _media_minutes(rows)
                    print(f"{'round ' + str(rnd + 1) + ': ' if repeat > 1 else ''}{engine}, workers {k} (thread "
                          f"budget {budget or 'of the caller'}{'' if threads else ', decoder threads by FFmpeg'}): "
                          f"{wall:.1f} s wall, workers' CPU {cpu:.1f} s ({cpu / max(res.done, 1):.2f} s per input, "
                          f"{cpu / wall:.2f} cores busy on average; this process (client, scheduler, output) "
                          f"{own:.1f} s), load average {load0:.1f} -> {load1:.1f}", flush=True)
                    print(f"  {len(rows)} rows over {media_min:.2f} min of media: workers' CPU "
                          f"{cpu / max(media_min, 1e-9):.1f} s per media minute, throughput "
                          f"{len(rows) / wall * 60:.1f} inputs / {media_min / wall * 60:.2f} media min per minute; "
                          f"{len(errs)} error row(s): {'; '.join(r['error'] for r in errs)[:120]}", flush=True)
                    last_out = out
        t = time.perf_counter()
        again = run_batch([tmp], last_out, BatchOptions(workers=counts[-1]))
        print(f"rerun into the last output: {again.skipped} of {again.total} skipped, {again.done} measured, "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        if len(counts) >= 2:
            a, b = counts[0], counts[-1]
            for engine in engines:
                ups = [x / y for x, y in zip(times[(engine, a)], times[(engine, b)])]
                med = statistics.median(ups)
                eff = [u * a / b for u in ups]
                print(f"{engine}: parallel efficiency {b} vs {a} workers (throughput with {b} / ({b}/{a} x "
                      f"throughput with {a})): median {100 * statistics.median(eff):.0f} % (rounds: "
                      + ", ".join(f"{100 * e:.0f} %" for e in eff) + f"); speed-up median {med:.2f}x; workers' "
                      f"CPU per round {a}: " + ", ".join(f"{c:.1f}" for c in cpus[(engine, a)]) + f" s, {b}: "
                      + ", ".join(f"{c:.1f}" for c in cpus[(engine, b)]) + " s", flush=True)
        keys = list(answers)
        for key in keys[1:]:
            print(f"results {keys[0][0]} x{keys[0][1]} vs {key[0]} x{key[1]}: {_compare(answers[keys[0]], answers[key])}",
                  flush=True)
        if args.keep:
            print(f"kept {tmp} ({last_out})")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
