"""The work the service's worker processes run: ``/api/detect`` and ``/api/analyze`` requests
(:func:`run_sync`) and stored jobs (:func:`run_job`: status, progress, report or error all go to
the job store, :mod:`.store`)."""
from __future__ import annotations

import os
import time

from .store import Job, open_job_store
from .uploads import remove_upload


def _one_line(exc: BaseException, name: str) -> str:
    from ...errors import AvsyncError

    if isinstance(exc, AvsyncError):
        return f"{name}: {' '.join(str(exc.reason).split())}"
    return f"{name}: internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"


def fixed_path_for(plot_path: str, name: str) -> str:
    """Where a job's corrected file goes: next to its plot, with the upload's extension."""
    ext = os.path.splitext(name)[1].lower() or ".mkv"
    if ext not in (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv"):
        ext = ".mkv"
    return os.path.splitext(plot_path)[0] + ".fixed" + ext


def detect_dict(media_path: str, name: str, options: dict, progress=None, plot_path: str | None = None,
                with_plot_b64: bool = False, with_segments: bool = False) -> dict:
    """The detect report of ``media_path`` as a dict, shown under the upload's ``name``; with a
    ``plot_path`` (a stored job), an out-of-sync file's correction is written next to the plot
    (``fixed_file`` in the dict says whether it was, or why not)."""
    from ...api import detect, fix_from_report
    from ...options import DetectOptions

    report = detect(media_path, DetectOptions.from_dict(options), progress)
    fixed = None
    if plot_path and report.verdict == "out_of_sync":
        target = fixed_path_for(plot_path, name)
        try:
            fix_from_report(media_path, target, report)
            fixed = {"written": True}
        except Exception as exc:  # the report stands without the corrected file
            fixed = {"written": False, "reason": " ".join(str(getattr(exc, "reason", exc)).split())[:200]}
    report.media = {**report.media, "path": name}
    d = report.to_dict()
    if fixed is not None:
        d["fixed_file"] = fixed
    if plot_path or with_plot_b64:
        from ...plot import plot_report

        target = plot_path or media_path + ".plot.png"
        tmp = target + ".tmp.png"
        plot_report(report, tmp)
        os.replace(tmp, target)
        if with_plot_b64:
            import base64

            with open(target, "rb") as fh:
                d["plot_png_base64"] = base64.b64encode(fh.read()).decode("ascii")
            if not plot_path:
                os.unlink(target)
    if with_segments:
        # the 1-s labels of the classifier (the report's own 'segments' are its pieces of constant offset)
        d["labels"] = classify_segments(media_path)
    return d


def classify_segments(media_path: str) -> list[dict] | dict:
    """The 1-s segment labels of ``avsync classify`` (:func:`avsync.classify.segments.classify`,
    the shipped model): a list of segments, or ``{'error': reason}`` when it cannot run (no torch,
    no model, unusable media)."""
    try:
        from ...classify.segments import classify

        return classify(media_path).to_dict()["segments"]
    except ImportError as exc:
        return {"error": f"the segment classifier needs the 'classify' extra: pip install 'avsync[classify]' "
                         f"({' '.join(str(exc).split())[:120]})"}
    except Exception as exc:
        return {"error": " ".join(str(exc).split())[:200] or type(exc).__name__}


def run_sync(media_path: str, name: str, options: dict, analyze: bool) -> dict:
    """``/api/detect`` and ``/api/analyze`` in a worker: the report, or {'error', 'status'}."""
    try:
        return {"report": detect_dict(media_path, name, options, with_plot_b64=analyze, with_segments=analyze)}
    except Exception as exc:  # bad options, bad media or unexpected: one line, 422
        return {"error": _one_line(exc, name), "status": 422}


class _Orphaned(Exception):
    pass


def run_job(db_url: str, job_id: str) -> str:
    """Run one stored job to completion (status, progress, report or error all go to the store)."""
    store = open_job_store(db_url)
    job = store.start(job_id)
    if job is None:
        return "gone"
    parent = os.getppid()
    last = [0.0]

    def progress(stage: str, done: float, total: float) -> None:
        if os.getppid() != parent:  # the server died: stop, the restarted one resumes the job
            raise _Orphaned()
        now = time.monotonic()
        if now - last[0] < 0.5:
            return
        last[0] = now
        frac = 0.0 if not total else max(0.0, min(1.0, float(done) / float(total)))
        overall = 0.9 * frac if stage == "decode" else 0.9 + 0.1 * frac
        if not store.update(job_id, progress=overall, stage=stage):
            raise _Orphaned()

    try:
        if job.kind == "monitor":
            report = _monitor_job(job, progress)
        else:
            report = detect_dict(job.media_path, job.name or "upload", job.options, progress, job.plot_path)
    except _Orphaned:
        return "orphaned"
    except Exception as exc:
        store.update(job_id, status="failed", error=_one_line(exc, job.name or "upload"), stage=None)
        _cleanup_media(job)
        return "failed"
    if store.update(job_id, status="done", progress=1.0, stage=None, report=report):
        _cleanup_media(job)
    elif job.plot_path:  # deleted while it ran: leave nothing behind
        try:
            os.unlink(job.plot_path)
        except OSError:
            pass
    return "done"


def _cleanup_media(job: Job) -> None:
    if job.media_path and job.kind != "monitor":
        remove_upload(job.media_path)


def monitor_options(o: dict):
    """The :class:`avsync.apps.monitor.MonitorOptions` of a monitor job's options (url, window_s,
    max_windows, tolerance, method); :class:`avsync.errors.UsageError` when they are bad."""
    from ...media.hls import FollowOptions, UrlPolicy
    from ..monitor import MonitorOptions

    window_s = o.get("window_s", 5.0)
    given = {k: o[k] for k in ("method", "tolerance") if k in o}
    # no allow-list stored: nothing may be fetched (jobs of older servers had none; the API always stores it)
    policy = UrlPolicy.allow_list(o.get("allow") or (), bool(o.get("allow_private", False)))
    return MonitorOptions(window_s=window_s, max_windows=o.get("max_windows", 6),
                          min_window_s=min(window_s, 2.5), follow=FollowOptions(policy=policy), **given)


def _monitor_job(job: Job, progress) -> dict:
    from ..monitor import Monitor

    o = job.options
    events: list[dict] = []
    opts = monitor_options(o)

    def on_event(ev):
        events.append(ev.to_dict())
        if ev.kind == "window":
            progress("windows", len([e for e in events if e["type"] == "window"]), opts.max_windows)

    summary = Monitor(o["url"], opts, on_event).run()
    return {"schema": "avsync.monitor/1", "url": o["url"], "events": events, "summary": summary.to_dict()}
