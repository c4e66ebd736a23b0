"""The job store: locations (paths, sqlite:/// URLs, refused server URLs), the store
interface and the SQLite store behind it."""
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
    ("postgresql://alice:s3cret@db.example:5432/avsync", "server databases are not supported"),
    ("postgresql+psycopg://alice:s3cret@db/avsync", "server databases are not supported"),
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


def test_sqlite_store_lifecycle_and_recovery(tmp_path):
    store = open_job_store(str(tmp_path / "jobs.db"))
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


def test_serve_refuses_a_server_database_url_in_one_line(tmp_path, capsys):
    from avsync.cli.main import main

    data = tmp_path / "data"
    rc = main(["serve", "--db", "postgresql://alice:s3cret@db/avsync", "--data-dir", str(data)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("avsync: --db: "), err
    assert "s3cret" not in err and "Traceback" not in err
    assert not data.exists()  # refused before anything was created
