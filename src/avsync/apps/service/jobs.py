"""The job store and the functions the worker processes run.

Every state change goes through the database, written by whichever process makes it
(the server creates and recovers jobs; the worker process marks them running, reports
progress, stores the report or the error), so the store stays the single truth when
the server dies: on the next start, :meth:`JobStoreBase.recover` re-queues the jobs
that were queued or running (or marks them failed once they have been interrupted
``MAX_ATTEMPTS`` times, or their upload is gone).

The store is reached by a location: a file path or a ``sqlite:///PATH`` URL
(``sqlite:///rel/path`` relative, ``sqlite:////abs/path`` absolute).  :func:`open_job_store`
turns it into a store; :class:`JobStoreBase` is the interface a server-database store
would implement (none ships: it could not be tested here), so any other scheme
(``postgresql://``, ``mysql://`` ...) is refused with a one-line
:class:`UnsupportedDatabase` error that never echoes the URL's credentials.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass

#: a job interrupted this many times (server killed while it ran) is marked failed
MAX_ATTEMPTS = 2
STATUSES = ("queued", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT,
    name TEXT,
    media_path TEXT,
    options TEXT,
    report TEXT,
    error TEXT,
    plot_path TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""


class UnsupportedDatabase(ValueError):
    """A job database location this build cannot use (one line, no credentials)."""


_SERVER_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "cockroachdb")


def parse_db_url(url_or_path: str) -> tuple[str, str]:
    """A job database location -> (scheme, target).

    A plain path (no ``scheme://``) and ``sqlite:///PATH`` give ``("sqlite", PATH)``;
    ``sqlite:///rel`` is relative, ``sqlite:////abs`` absolute (SQLAlchemy's spelling).
    Anything else raises :class:`UnsupportedDatabase`."""
    s = str(url_or_path)
    if "://" not in s:
        if not s.strip():
            raise UnsupportedDatabase("empty job database path")
        return "sqlite", s
    scheme = s.split("://", 1)[0].lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.\-]{0,30}", scheme):
        raise UnsupportedDatabase("job database URL with an unknown scheme; use a file path or sqlite:///PATH")
    base = scheme.split("+", 1)[0]
    if base != "sqlite":
        kind = "server databases are not supported yet" if base in _SERVER_SCHEMES else "unknown scheme"
        # the scheme only: a server URL may hold a password
        raise UnsupportedDatabase(f"job database {scheme}://...: {kind}; use a file path or sqlite:///PATH")
    if scheme != "sqlite":
        raise UnsupportedDatabase(f"job database {scheme}://...: no driver choice; use sqlite:///PATH")
    if not s[:10].lower() == "sqlite:///":
        raise UnsupportedDatabase("job database sqlite:// needs a path: sqlite:///relative or sqlite:////absolute")
    path = s[len("sqlite:///"):]
    if "?" in path:
        raise UnsupportedDatabase("job database sqlite:///PATH?...: URL options are not supported")
    if not path or path == ":memory:":
        raise UnsupportedDatabase("job database sqlite:///:memory: (or no path) cannot be shared with the worker "
                                  "processes; give a file path")
    return "sqlite", path


def db_path_from(url_or_path: str) -> str:
    """``sqlite:///rel``, ``sqlite:////abs/path`` or a plain path -> a file path."""
    return parse_db_url(url_or_path)[1]


def open_job_store(url_or_path: str) -> "JobStoreBase":
    """The job store at a location (see :func:`parse_db_url`)."""
    scheme, target = parse_db_url(url_or_path)
    if scheme == "sqlite":
        return SQLiteJobStore(target)
    raise UnsupportedDatabase(f"job database {scheme}://...: not supported")  # pragma: no cover


@dataclass
class Job:
    id: str
    kind: str
    status: str
    progress: float
    stage: str | None
    name: str | None
    media_path: str | None
    options: dict
    report: dict | None
    error: str | None
    plot_path: str | None
    attempts: int
    created: float
    updated: float

    def public(self) -> dict:
        """What ``GET /api/jobs/{id}`` shows (no server paths)."""
        d = {"id": self.id, "kind": self.kind, "status": self.status, "progress": round(self.progress, 4),
             "stage": self.stage, "name": self.name, "attempts": self.attempts, "created": self.created,
             "updated": self.updated, "error": self.error}
        if self.status == "done":
            d["report_url"] = f"/api/jobs/{self.id}/report"
            if self.plot_path:
                d["plot_url"] = f"/api/jobs/{self.id}/plot.png"
        return d


class JobStoreBase(ABC):
    """What the service needs from a job store.  Every method is safe to call from
    several threads and processes at once; ``url`` reopens the same store in a worker
    process (:func:`open_job_store`)."""

    url: str

    @abstractmethod
    def create(self, kind: str, name: str | None, media_path: str | None, options: dict,
               plot_path: str | None = None, job_id: str | None = None) -> Job: ...

    @abstractmethod
    def get(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def update(self, job_id: str, **fields) -> bool:
        """Set columns of a job; False when it no longer exists (deleted)."""

    @abstractmethod
    def start(self, job_id: str) -> Job | None:
        """Mark running and count the attempt, atomically; None when the job is gone or finished."""

    @abstractmethod
    def delete(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def unfinished(self) -> list[Job]:
        """Jobs queued or running, oldest first."""

    @abstractmethod
    def count(self, status: str | None = None) -> int: ...

    def recover(self) -> list[Job]:
        """After a restart: jobs to run again (queued, or running when the server died and
        not yet interrupted ``MAX_ATTEMPTS`` times); the others are marked failed."""
        again = []
        for job in self.unfinished():
            if job.status == "running" and job.attempts >= MAX_ATTEMPTS:
                self.update(job.id, status="failed",
                            error=f"interrupted by server stops {job.attempts} times; not retried")
            elif job.kind != "monitor" and (not job.media_path or not os.path.isfile(job.media_path)):
                self.update(job.id, status="failed", error="the uploaded file was lost when the server stopped")
            else:
                if job.status == "running":
                    self.update(job.id, status="queued", stage="resumed after a server restart")
                again.append(self.get(job.id))
        return [j for j in again if j is not None]


class SQLiteJobStore(JobStoreBase):
    """Jobs in one SQLite file (WAL); safe to use from several threads and processes."""

    def __init__(self, path: str):
        self.path = db_path_from(path)
        self.url = self.path
        d = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(d, exist_ok=True)
        self._lock = threading.Lock()
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute(_SCHEMA)

    @contextmanager
    def _conn(self):
        c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            c.execute("PRAGMA busy_timeout=30000")
            yield c
        finally:
            c.close()

    def create(self, kind: str, name: str | None, media_path: str | None, options: dict,
               plot_path: str | None = None, job_id: str | None = None) -> Job:
        now = time.time()
        jid = job_id or uuid.uuid4().hex
        with self._lock, self._conn() as c:
            c.execute("INSERT INTO jobs (id, kind, status, progress, name, media_path, options, plot_path, created,"
                      " updated) VALUES (?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?)",
                      (jid, kind, name, media_path, json.dumps(options), plot_path, now, now))
        return self.get(jid)

    def get(self, job_id: str) -> Job | None:
        with self._conn() as c:
            c.row_factory = sqlite3.Row
            row = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["options"] = json.loads(d["options"] or "{}")
        d["report"] = json.loads(d["report"]) if d["report"] else None
        return Job(**d)

    def update(self, job_id: str, **fields) -> bool:
        """Set columns of a job; False when it no longer exists (deleted)."""
        if "report" in fields and fields["report"] is not None:
            fields["report"] = json.dumps(fields["report"], allow_nan=False)
        fields["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._conn() as c:
            cur = c.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))
            return cur.rowcount > 0

    def start(self, job_id: str) -> Job | None:
        """Mark running and count the attempt; None when the job is gone or already finished."""
        with self._conn() as c:
            cur = c.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, updated = ? "
                            "WHERE id = ? AND status IN ('queued', 'running')", (time.time(), job_id))
            if cur.rowcount == 0:
                return None
        return self.get(job_id)

    def delete(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None:
            return None
        with self._conn() as c:
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return job

    def unfinished(self) -> list[Job]:
        with self._conn() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running') "
                                           "ORDER BY created")]
        return [j for j in (self.get(i) for i in ids) if j is not None]

    def count(self, status: str | None = None) -> int:
        with self._conn() as c:
            if status is None:
                return int(c.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            return int(c.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)).fetchone()[0])


#: the SQLite store under its former name
JobStore = SQLiteJobStore


# -- work done in the worker processes ------------------------------------------------------------
def _one_line(exc: BaseException, name: str) -> str:
    from ...errors import AvsyncError

    if isinstance(exc, AvsyncError):
        return f"{name}: {' '.join(str(exc.reason).split())}"
    return f"{name}: internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"


def detect_dict(media_path: str, name: str, options: dict, progress=None, plot_path: str | None = None,
                with_plot_b64: bool = False, with_segments: bool = False) -> dict:
    """The detect report of ``media_path`` as a dict, shown under the upload's ``name``."""
    from ...api import DetectOptions, detect

    report = detect(media_path, DetectOptions(**options), progress)
    report.media = {**report.media, "path": name}
    d = report.to_dict()
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
        d["segments"] = classify_segments(media_path)
    return d


def classify_segments(media_path: str):
    """The segment labels of ``avsync classify`` when that module is installed, else None."""
    import importlib

    try:
        mod = importlib.import_module("avsync.classify")
    except Exception:
        return None
    fn = getattr(mod, "classify", None)
    if fn is None:
        return None
    try:
        res = fn(media_path)
    except Exception as exc:
        return {"error": " ".join(str(exc).split())[:200]}
    if hasattr(res, "to_dict"):
        res = res.to_dict()
    if isinstance(res, dict):
        return res.get("segments", res)
    return res


def run_sync(media_path: str, name: str, options: dict, analyze: bool) -> dict:
    """``/api/detect`` and ``/api/analyze`` in a worker: the report, or {'error', 'status'}."""
    from ...errors import AvsyncError, UsageError

    try:
        return {"report": detect_dict(media_path, name, options, with_plot_b64=analyze, with_segments=analyze)}
    except UsageError as exc:
        return {"error": _one_line(exc, name), "status": 422}
    except AvsyncError as exc:
        return {"error": _one_line(exc, name), "status": 422}
    except Exception as exc:  # unexpected: still one line, reported as a media problem
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


def remove_upload(media_path: str) -> None:
    """Delete an upload and its private folder."""
    try:
        os.unlink(media_path)
    except OSError:
        pass
    try:
        os.rmdir(os.path.dirname(media_path))
    except OSError:
        pass


def _monitor_job(job: Job, progress) -> dict:
    from ..monitor import Monitor, MonitorOptions

    o = job.options
    events: list[dict] = []
    opts = MonitorOptions(window_s=float(o.get("window_s", 5.0)), max_windows=int(o.get("max_windows", 6)),
                          tolerance=o.get("tolerance", "ebu-r37"), method=o.get("method", "auto"),
                          min_window_s=min(float(o.get("window_s", 5.0)), 2.5))

    def on_event(ev):
        events.append(ev.to_dict())
        if ev.kind == "window":
            progress("windows", len([e for e in events if e["type"] == "window"]), opts.max_windows)

    summary = Monitor(o["url"], opts, on_event).run()
    return {"schema": "avsync.monitor/1", "url": o["url"], "events": events, "summary": summary.to_dict()}
