"""The job store: the :class:`JobStoreBase` interface, the SQLite store and :func:`parse_db_url`.

Every state change goes through the database, written by whichever process makes it
(the server creates and recovers jobs; the worker process (:mod:`.worker`) marks them running,
reports progress, stores the report or the error), so the store stays the single truth when
the server dies: on the next start, :meth:`JobStoreBase.recover` re-queues the jobs
that were queued or running (or marks them failed once they have been interrupted
``MAX_ATTEMPTS`` times, or their upload is gone).

The store is reached by a location: a file path or a ``sqlite:///PATH`` URL
(``sqlite:///rel/path`` relative, ``sqlite:////abs/path`` absolute) for the embedded SQLite store,
or a ``postgresql://user:password@host:port/dbname`` URL for the PostgreSQL store (psycopg 3;
table ``avsync_jobs``), which several ``serve`` processes can share.  :func:`open_job_store`
turns a location into a store; any other scheme (``mysql://`` ...) is refused with a one-line
:class:`UnsupportedDatabase` error that never echoes the URL's credentials.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import urllib.parse
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
    updated REAL NOT NULL,
    owner TEXT
)
"""


class UnsupportedDatabase(ValueError):
    """A job database location this build cannot use (one line, no credentials)."""


_SERVER_SCHEMES = ("mysql", "mariadb", "mssql", "oracle", "cockroachdb")
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg3", "postgres+psycopg")

#: the columns a job update may set
COLUMNS = ("kind", "status", "progress", "stage", "name", "media_path", "options", "report", "error", "plot_path",
           "attempts", "created", "updated", "owner")


def redact(url: str) -> str:
    """A database URL without its credentials (for messages)."""
    try:
        p = urllib.parse.urlsplit(url)
        host = p.hostname or ""
        port = f":{p.port}" if p.port else ""
    except ValueError:
        return url.split("://", 1)[0] + "://..."
    return f"{p.scheme}://{host}{port}{p.path}"


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
    if scheme in _POSTGRES_SCHEMES:
        return "postgresql", "postgresql://" + s.split("://", 1)[1]
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
    if scheme == "postgresql":
        return PostgresJobStore(target)
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
    #: who created it (a fingerprint of its API key; None without keys): only they see it
    owner: str | None = None

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
               plot_path: str | None = None, job_id: str | None = None, owner: str | None = None) -> Job: ...

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
            if "owner" not in {r[1] for r in c.execute("PRAGMA table_info(jobs)")}:  # a store of an older version
                try:
                    c.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
                except sqlite3.OperationalError:  # another process added it just now
                    pass

    @contextmanager
    def _conn(self):
        c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            c.execute("PRAGMA busy_timeout=30000")
            yield c
        finally:
            c.close()

    def create(self, kind: str, name: str | None, media_path: str | None, options: dict,
               plot_path: str | None = None, job_id: str | None = None, owner: str | None = None) -> Job:
        now = time.time()
        jid = job_id or uuid.uuid4().hex
        with self._lock, self._conn() as c:
            c.execute("INSERT INTO jobs (id, kind, status, progress, name, media_path, options, plot_path, created,"
                      " updated, owner) VALUES (?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?)",
                      (jid, kind, name, media_path, json.dumps(options), plot_path, now, now, owner))
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
        _check_columns(fields)
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


def _check_columns(fields: dict) -> None:
    bad = [k for k in fields if k not in COLUMNS]
    if bad:
        raise ValueError(f"unknown job columns: {', '.join(sorted(bad))}")


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS avsync_jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    stage TEXT,
    name TEXT,
    media_path TEXT,
    options TEXT,
    report TEXT,
    error TEXT,
    plot_path TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    owner TEXT
)
"""
_PG_FIELDS = "id, kind, status, progress, stage, name, media_path, options, report, error, plot_path, attempts, " \
             "created, updated, owner"


class PostgresJobStore(JobStoreBase):
    """Jobs in a PostgreSQL table (``avsync_jobs``) through psycopg 3: every server and worker
    process that opens the same URL shares them.  Each call is one autocommit statement (the
    state changes that must be atomic, such as :meth:`start`, are single statements)."""

    def __init__(self, url: str, connect_timeout: float = 10.0):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise UnsupportedDatabase("job database postgresql://...: needs psycopg: pip install "
                                      "'avsync[postgres]'") from None
        self.url = url
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        try:
            with self._conn() as c, c.transaction():
                # one process creates the table; the others wait (CREATE ... IF NOT EXISTS can race)
                c.execute("SELECT pg_advisory_xact_lock(7411301)")
                c.execute(_PG_SCHEMA)
                c.execute("ALTER TABLE avsync_jobs ADD COLUMN IF NOT EXISTS owner TEXT")
        except UnsupportedDatabase:
            raise
        except Exception as exc:
            raise UnsupportedDatabase(f"cannot use the job database {redact(url)} ({_pg_reason(exc, url)})") \
                from None

    @contextmanager
    def _conn(self):
        """This thread's connection (reopened when it broke)."""
        import psycopg

        c = getattr(self._local, "conn", None)
        if c is None or c.closed or c.broken:
            c = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)))
            self._local.conn = c
        try:
            yield c
        except psycopg.OperationalError:
            try:
                c.close()
            finally:
                self._local.conn = None
            raise

    @staticmethod
    def _job(row) -> Job | None:
        if row is None:
            return None
        (jid, kind, status, progress, stage, name, media_path, options, report, error, plot_path, attempts,
         created, updated, owner) = row
        return Job(jid, kind, status, float(progress), stage, name, media_path, json.loads(options or "{}"),
                   json.loads(report) if report else None, error, plot_path, int(attempts), float(created),
                   float(updated), owner)

    def create(self, kind: str, name: str | None, media_path: str | None, options: dict,
               plot_path: str | None = None, job_id: str | None = None, owner: str | None = None) -> Job:
        now = time.time()
        jid = job_id or uuid.uuid4().hex
        with self._conn() as c:
            row = c.execute(f"INSERT INTO avsync_jobs (id, kind, status, progress, name, media_path, options, "
                            f"plot_path, created, updated, owner) VALUES (%s, %s, 'queued', 0, %s, %s, %s, %s, %s, "
                            f"%s, %s) RETURNING {_PG_FIELDS}",
                            (jid, kind, name, media_path, json.dumps(options), plot_path, now, now, owner)).fetchone()
        return self._job(row)

    def get(self, job_id: str) -> Job | None:
        with self._conn() as c:
            return self._job(c.execute(f"SELECT {_PG_FIELDS} FROM avsync_jobs WHERE id = %s", (job_id,)).fetchone())

    def update(self, job_id: str, **fields) -> bool:
        _check_columns(fields)
        if "report" in fields and fields["report"] is not None:
            fields["report"] = json.dumps(fields["report"], allow_nan=False)
        if "options" in fields and not isinstance(fields["options"], str):
            fields["options"] = json.dumps(fields["options"])
        fields["updated"] = time.time()
        cols = ", ".join(f"{k} = %s" for k in fields)
        with self._conn() as c:
            cur = c.execute(f"UPDATE avsync_jobs SET {cols} WHERE id = %s", (*fields.values(), job_id))
            return cur.rowcount > 0

    def start(self, job_id: str) -> Job | None:
        with self._conn() as c:
            row = c.execute(f"UPDATE avsync_jobs SET status = 'running', attempts = attempts + 1, updated = %s "
                            f"WHERE id = %s AND status IN ('queued', 'running') RETURNING {_PG_FIELDS}",
                            (time.time(), job_id)).fetchone()
        return self._job(row)

    def delete(self, job_id: str) -> Job | None:
        with self._conn() as c:
            return self._job(c.execute(f"DELETE FROM avsync_jobs WHERE id = %s RETURNING {_PG_FIELDS}",
                                       (job_id,)).fetchone())

    def unfinished(self) -> list[Job]:
        with self._conn() as c:
            rows = c.execute(f"SELECT {_PG_FIELDS} FROM avsync_jobs WHERE status IN ('queued', 'running') "
                             "ORDER BY created").fetchall()
        return [self._job(r) for r in rows]

    def count(self, status: str | None = None) -> int:
        with self._conn() as c:
            if status is None:
                return int(c.execute("SELECT COUNT(*) FROM avsync_jobs").fetchone()[0])
            return int(c.execute("SELECT COUNT(*) FROM avsync_jobs WHERE status = %s", (status,)).fetchone()[0])


def _pg_reason(exc: BaseException, url: str) -> str:
    """One line from a driver error, without the URL's password."""
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    try:
        pw = urllib.parse.urlsplit(url).password
    except ValueError:
        pw = None
    if pw:
        text = text.replace(pw, "***").replace(urllib.parse.quote(pw), "***")
    return text


#: the SQLite store under its former name
JobStore = SQLiteJobStore
