"""Using a second core inside one measurement: the process's thread budget, a forked helper
for independent pieces of work, and children that die with their parent.

Nothing here changes a result: work split this way is the same code on the same data, and a
helper that fails is redone here."""
from __future__ import annotations

import os
import select
import signal
import sys
import time
from typing import Callable, Sequence

#: this process's thread budget when one was set (a batch worker: apps.batch.limit_threads)
_budget: int | None = None
#: modules whose thread pools are not safe across ``fork``: loaded, no fork
FORK_UNSAFE = ("torch", "onnxruntime")
#: a forked helper gets this many times the time its half took here, plus the grace, before it is
#: killed and its half redone here (a helper stuck on a lock copied mid-use must not hang detect)
HELPER_PATIENCE = 4.0
HELPER_GRACE_S = 10.0


def set_thread_budget(threads: int | None) -> None:
    """Cap what one measurement may use: with one thread, no helper process runs beside it."""
    global _budget
    _budget = threads


def second_core() -> bool:
    """True when this process may use more than one core: the thread budget when one was set,
    else the CPUs this process may run on."""
    if _budget is not None:
        return _budget > 1
    try:
        return len(os.sched_getaffinity(0)) > 1
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) > 1


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (``PR_SET_PDEATHSIG``).  The parent
    is the *thread* that started this process: start workers from a thread that lives as long as
    the pool (the main thread, or a dedicated one)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def halves(fn: Callable[[Sequence, int], list], items: Sequence, min_items: int = 16) -> list:
    """``fn(items, share)`` with the second half of ``items`` done by a forked copy of this
    process on a second core, when there is one, there are at least ``min_items`` and no
    fork-unsafe runtime is loaded; ``share`` is how many items each item done here stands for
    (2 while a helper does as many, for progress).  ``fn`` returns one picklable result per
    item; the results come back in order.  A helper that fails is redone here."""
    if len(items) < min_items or not hasattr(os, "fork") or not second_core() or any(
            m in sys.modules for m in FORK_UNSAFE):
        return fn(items, 1)
    import pickle

    half = len(items) // 2
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the helper: the second half, pickled into the pipe, then gone
        try:
            os.close(r)
            die_with_parent()
            data = pickle.dumps(fn(items[half:], 0))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    data, complete = b"", False
    try:
        t = time.monotonic()
        mine = fn(items[:half], 2)
        data, complete = _read_all(r, HELPER_PATIENCE * (time.monotonic() - t) + HELPER_GRACE_S)
    finally:
        os.close(r)
        if not complete:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    try:
        theirs = pickle.loads(data)
    except Exception:
        theirs = None
    if not isinstance(theirs, list) or len(theirs) != len(items) - half:
        theirs = fn(items[half:], 0)
    return mine + theirs


def _read_all(fd: int, timeout_s: float) -> tuple[bytes, bool]:
    """What is written to pipe ``fd`` until its writer closes it (then True), or until
    ``timeout_s`` runs out (then False)."""
    chunks = []
    end = time.monotonic() + timeout_s
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b"".join(chunks), False
        b = os.read(fd, 1 << 16)
        if not b:
            return b"".join(chunks), True
        chunks.append(b)
