"""The service's worker pool (issue 14): every task has a deadline and can be cancelled; either
frees its slot at once, and no worker process outlives the pool."""
from __future__ import annotations

import os
import time

import pytest

from avsync.apps.service.pool import Busy, Cancelled, DeadlinePassed, WorkerPool


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_cancel_and_deadline_free_the_slot():
    pool = WorkerPool(1, 3)
    try:
        assert pool.submit(os.getpid).result(timeout=60) != os.getpid()
        pid = pool.submit(os.getpid).result(timeout=60)  # the worker process is reused
        t = time.monotonic()
        pool.reserve()
        hung = pool.submit(time.sleep, 3600, task_id="job-1")
        time.sleep(0.5)
        assert pool.cancel("job-1")
        with pytest.raises(Cancelled):
            hung.result(timeout=5)
        assert not _alive(pid)  # its process was stopped
        assert pool.inflight == 0
        late = pool.submit(time.sleep, 3600, deadline_s=1.0)
        with pytest.raises(DeadlinePassed):
            late.result(timeout=10)
        assert pool.submit(abs, -5).result(timeout=60) == 5  # the one slot works again
        assert time.monotonic() - t < 30
    finally:
        pool.shutdown()


def test_capacity_and_shutdown_kills_workers():
    pool = WorkerPool(1, 1)
    pool.reserve()
    with pytest.raises(Busy):
        pool.reserve()
    f = pool.submit(time.sleep, 3600)
    pid = None
    deadline = time.monotonic() + 30
    while pid is None and time.monotonic() < deadline:
        procs = list(pool._running.values())
        pid = procs[0].proc.pid if procs else None
        time.sleep(0.05)
    t = time.monotonic()
    pool.shutdown(grace_s=0.5)
    assert time.monotonic() - t < 5
    with pytest.raises(Cancelled):
        f.result(timeout=5)
    time.sleep(0.2)
    assert pid is not None and not _alive(pid)
