"""The job store: locations (paths, sqlite:/// URLs, postgresql:// URLs, refused others), the
store interface, and the same tests run against both stores behind it (SQLite; PostgreSQL on a
throwaway server, skipped with the reason only when none can be started)."""
from __future__ import annotations

import os
import time

import pytest

from avsync.apps.service.store import (MAX_ATTEMPTS, Job, JobStore, JobStoreBase, SQLiteJobStore, UnsupportedDatabase,
                                      open_job_store, parse_db_url)


@pytest.mark.parametrize("loc, path", [
    ("jobs.sqlite3", "jobs.sqlite3"),
    ("/abs/dir/jobs.db", "/abs/dir/jobs.db"),
    ("sqlite:///rel/jobs.db", "rel/jobs.db"),
    ("sqlite:////abs/jobs.db", "/abs/jobs.db"),
    ("SQLite:///x.db", "x.db"),
])
def test_sqlite_locations(loc, path):
    assert parse_db_url(loc) == ("sqlite", path)


@pytest.mark.parametrize("loc, words", [
    ("postgresql://alice:s3cret@127.0.0.1:1/avsync", "cannot use the job database postgresql://127.0.0.1:1/avsync"),
    ("postgresql+psycopg://alice:s3cret@127.0.0.1:1/avsync", "cannot use the job database"),
    ("mysql://alice:s3cret@db/avsync", "server databases are not supported"),
    ("ftp://alice:s3cret@db/avsync", "unknown scheme"),
    ("ali:s3cret@x://y", "unknown scheme"),
    ("sqlite://", "needs a path"),
    ("sqlite:///:memory:", "cannot be shared"),
    ("sqlite:///jobs.db?mode=ro&s3cret", "options are not supported"),
    ("sqlite+pysqlite:///jobs.db", "no driver choice"),
    ("", "empty"),
])
def test_other_locations_are_one_line_errors_without_secrets(loc, words):
    with pytest.raises(UnsupportedDatabase) as info:
        open_job_store(loc)
    msg = str(info.value)
    assert words in msg
    assert "\n" not in msg and "s3cret" not in msg
    assert isinstance(info.value, ValueError)  # the serve command turns it into a usage error


def test_sqlite_url_and_path_open_the_same_store(tmp_path):
    path = tmp_path / "sub" / "jobs.db"
    a = open_job_store(f"sqlite:///{path}")  # an absolute path gives sqlite:////...
    assert isinstance(a, SQLiteJobStore) and isinstance(a, JobStoreBase) and JobStore is SQLiteJobStore
    job = a.create("detect", "clip.mp4", None, {"method": "lips"})
    b = open_job_store(str(path))
    assert b.get(job.id).options == {"method": "lips"}
    c = open_job_store(a.url)  # what the worker processes are handed
    assert c.update(job.id, progress=0.5) and b.get(job.id).progress == 0.5


def test_postgres_locations():
    assert parse_db_url("postgres://u:p@h:5/db") == ("postgresql", "postgresql://u:p@h:5/db")
    assert parse_db_url("postgresql+psycopg://u@h/db?sslmode=require") == ("postgresql",
                                                                           "postgresql://u@h/db?sslmode=require")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The location of an empty job store of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "jobs.db")
    return request.getfixturevalue("postgres_server").new_database()


def test_store_lifecycle_and_recovery(store_url, tmp_path):
    store = open_job_store(store_url)
    media = tmp_path / "up.mp4"
    media.write_bytes(b"x")
    running = store.create("detect", "a", str(media), {})
    queued = store.create("detect", "b", str(media), {})
    lost = store.create("detect", "c", str(tmp_path / "gone.mp4"), {})
    assert store.start(running.id).status == "running"
    assert store.count() == 3 and store.count("queued") == 2
    again = {j.id: j for j in store.recover()}
    assert set(again) == {running.id, queued.id}
    assert again[running.id].status == "queued" and again[running.id].attempts == 1
    assert store.get(lost.id).status == "failed" and "lost" in store.get(lost.id).error
    for _ in range(MAX_ATTEMPTS - 1):
        store.start(running.id)
    store.recover()
    assert store.get(running.id).status == "failed"
    store.update(queued.id, status="done", report={"offset_ms": 1.0})
    assert store.start(queued.id) is None  # finished jobs are not started again
    assert store.delete(queued.id).id == queued.id and store.get(queued.id) is None
    assert not store.update(queued.id, progress=1.0)


class _DictStore(JobStoreBase):
    """A minimal second implementation: the interface is all that recover() needs."""

    url = "dict:"

    def __init__(self):
        self.jobs: dict[str, Job] = {}

    def create(self, kind, name, media_path, options, plot_path=None, job_id=None):
        now = time.time()
        j = Job(job_id or f"j{len(self.jobs)}", kind, "queued", 0.0, None, name, media_path, options, None, None,
                plot_path, 0, now, now)
        self.jobs[j.id] = j
        return j

    def get(self, job_id):
        return self.jobs.get(job_id)

    def update(self, job_id, **fields):
        j = self.jobs.get(job_id)
        if j is None:
            return False
        for k, v in fields.items():
            setattr(j, k, v)
        return True

    def start(self, job_id):
        j = self.jobs.get(job_id)
        if j is None or j.status not in ("queued", "running"):
            return None
        j.status, j.attempts = "running", j.attempts + 1
        return j

    def delete(self, job_id):
        return self.jobs.pop(job_id, None)

    def unfinished(self):
        return sorted((j for j in self.jobs.values() if j.status in ("queued", "running")), key=lambda j: j.created)

    def count(self, status=None):
        return sum(status is None or j.status == status for j in self.jobs.values())


def test_the_interface_carries_recovery(tmp_path):
    with pytest.raises(TypeError):
        JobStoreBase()  # abstract
    store = _DictStore()
    media = tmp_path / "m.mp4"
    media.write_bytes(b"x")
    j = store.create("detect", "m", str(media), {})
    store.start(j.id)
    assert [x.id for x in store.recover()] == [j.id] and store.get(j.id).status == "queued"
    os.unlink(media)
    store.start(j.id)
    store.recover()
    assert store.get(j.id).status == "failed"


def test_serve_refuses_an_unreachable_server_database_in_one_line(tmp_path, capsys):
    from avsync.cli.main import main

    data = tmp_path / "data"
    rc = main(["serve", "--db", "postgresql://alice:s3cret@127.0.0.1:1/avsync", "--data-dir", str(data)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("avsync: --db: "), err
    assert "s3cret" not in err and "Traceback" not in err
    assert not data.exists()  # refused before anything was created


def test_store_is_shared_between_processes(store_url):
    """What the service relies on: a worker process reopens the store by its url."""
    import subprocess
    import sys

    store = open_job_store(store_url)
    job = store.create("detect", "a", None, {"method": "motion"})
    code = ("import sys; from avsync.apps.service.store import open_job_store as o\n"
            "s = o(sys.argv[1]); j = s.start(sys.argv[2]); s.update(j.id, progress=0.25, stage='decode')")
    subprocess.run([sys.executable, "-c", code, store.url, job.id], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    j = store.get(job.id)
    assert (j.status, j.attempts, j.progress, j.stage) == ("running", 1, 0.25, "decode")
    with pytest.raises(ValueError):
        store.update(job.id, **{"status = 'done' --": 1})  # column names are never taken as given


def test_kill_9_of_a_worker_mid_job_loses_nothing(store_url):
    """A worker process killed with -9 while it writes progress: the job is still there, running,
    and recovery queues it again (attempt counted), then fails it after MAX_ATTEMPTS."""
    import signal
    import subprocess
    import sys

    store = open_job_store(store_url)
    job = store.create("monitor", "live", None, {})
    code = ("import sys, time; from avsync.apps.service.store import open_job_store as o\n"
            "s = o(sys.argv[1]); s.start(sys.argv[2]); print('started', flush=True)\n"
            "i = 0\n"
            "while True:\n"
            "    i += 1; s.update(sys.argv[2], progress=(i % 100) / 100.0, stage='windows')\n")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        p = subprocess.Popen([sys.executable, "-c", code, store.url, job.id], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert p.stdout.readline().strip() == "started"
        time.sleep(0.3)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        j = store.get(job.id)
        assert j is not None and j.status == "running" and j.attempts == attempt
        again = store.recover()
        if attempt < MAX_ATTEMPTS:
            assert [x.id for x in again] == [job.id] and store.get(job.id).status == "queued"
    assert store.get(job.id).status == "failed" and store.count() == 1
