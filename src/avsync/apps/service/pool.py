"""The service's worker processes: a bounded number of slots, each task with a deadline, every
task cancellable.

A task runs in a worker process of its own slot (spawned, reused from task to task); cancelling
it or passing its deadline kills that process (the only way to stop C code that is decoding or a
socket read) and the slot is free again at once; the next task gets a fresh process.  Work in
flight (running + waiting for a slot) is bounded by ``capacity``: beyond it, :class:`Busy`.
Every worker process exits as soon as the server process is gone (kill -9 included)."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time

from ..procs import watch_parent


class Busy(Exception):
    pass


class Cancelled(Exception):
    """The task was cancelled (DELETE of its job, or the server stopping)."""


class DeadlinePassed(Exception):
    def __init__(self, deadline_s: float):
        super().__init__(f"did not finish within its deadline of {deadline_s:g} s")
        self.deadline_s = deadline_s


class WorkerDied(Exception):
    """The worker process died under the task (out of memory, a crash in a codec, ...)."""


def _serve(conn, parent: int, initializer) -> None:  # the worker process's main loop
    watch_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when a worker stops
    if initializer is not None:
        initializer()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args = msg
        try:
            out = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - sent back to the server
            out = ("exc", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        try:
            conn.send(out)
        except (OSError, ValueError):
            return


class _Proc:
    def __init__(self, initializer):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, os.getpid(), initializer), daemon=True,
                                name="avsync-worker")
        self.proc.start()
        child.close()
        self._close_lock = threading.Lock()

    def _close_conn(self) -> None:
        # shutdown() and the task's runner thread may both kill the same worker: closing the pipe twice
        # at once double-closes its descriptor (EBADF, or worse, another file that reused the number).
        with self._close_lock:
            if not self.conn.closed:
                self.conn.close()

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:
            pass
        self.proc.join(5)
        self._close_conn()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.kill()
        else:
            self._close_conn()


class _Task:
    def __init__(self, fn, args, task_id, deadline_s):
        self.fn, self.args, self.id, self.deadline_s = fn, args, task_id, deadline_s
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.cancelled = threading.Event()


class WorkerPool:
    """``workers`` slots; at most ``capacity`` tasks in flight (see the module's description)."""

    def __init__(self, workers: int, capacity: int, initializer=None, poll_s: float = 0.1):
        self.workers = max(1, workers)
        self.capacity = max(1, capacity)
        self.initializer = initializer
        self.poll_s = poll_s
        self.inflight = 0
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.workers)
        self._idle: list[_Proc] = []
        self._tasks: dict[str, _Task] = {}
        self._running: dict[int, _Proc] = {}
        self._closed = threading.Event()
        # worker processes are started from one long-lived thread: Linux's parent-death signal fires
        # when the *thread* that started a process ends, not only the process
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="avsync-spawner")

    # -- the count of work in flight -------------------------------------------------------------
    def reserve(self, force: bool = False) -> None:
        with self._lock:
            if self._closed.is_set() or (not force and self.inflight >= self.capacity):
                raise Busy()
            self.inflight += 1

    def release(self) -> None:
        with self._lock:
            self.inflight = max(0, self.inflight - 1)

    # -- tasks -------------------------------------------------------------------------------------
    def submit(self, fn, *args, task_id: str | None = None, deadline_s: float | None = None,
               on_crash=None, release: bool = True) -> concurrent.futures.Future:
        """Run ``fn(*args)`` in a worker process.  The future's result is ``fn``'s, or the exception
        :class:`Cancelled`, :class:`DeadlinePassed`, :class:`WorkerDied`, or a ``RuntimeError`` with
        ``fn``'s own exception in one line; ``on_crash(exc)`` hears about any of those.  ``release``:
        release a reserved slot count when it ends."""
        task = _Task(fn, args, task_id, deadline_s)
        if task_id is not None:
            with self._lock:
                self._tasks[task_id] = task

        def run():
            try:
                task.future.set_result(self._run(task))
            except BaseException as exc:  # noqa: BLE001
                task.future.set_exception(exc)
                if on_crash is not None:
                    try:
                        on_crash(exc)
                    except Exception:
                        pass
            finally:
                if task_id is not None:
                    with self._lock:
                        if self._tasks.get(task_id) is task:
                            del self._tasks[task_id]
                if release:
                    self.release()

        threading.Thread(target=run, name=f"avsync-task-{task_id or 'sync'}", daemon=True).start()
        return task.future

    def cancel(self, task_id: str) -> bool:
        """Stop the task ``task_id`` (waiting or running); its slot is free when this returns."""
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            return False
        task.cancelled.set()
        try:
            task.future.exception(timeout=10)
        except Exception:
            pass
        return True

    def _run(self, task: _Task):
        start = time.monotonic()
        until = None if task.deadline_s is None else start + task.deadline_s
        while not self._slots.acquire(timeout=self.poll_s):  # wait for a free slot
            self._check(task, until)
        proc = None
        try:
            self._check(task, until)
            with self._lock:
                proc = self._idle.pop() if self._idle else None
            if proc is None or not proc.proc.is_alive():
                if proc is not None:
                    proc.kill()
                proc = self._spawner.submit(_Proc, self.initializer).result()
            with self._lock:
                self._running[id(task)] = proc
            proc.conn.send((task.fn, task.args))
            while True:
                try:
                    ready = proc.conn.poll(self.poll_s)
                except (OSError, EOFError):
                    ready = True
                if ready:
                    try:
                        kind, value = proc.conn.recv()
                    except (EOFError, OSError):
                        proc.kill()
                        proc = None
                        self._check(task, until)  # killed by shutdown: Cancelled
                        raise WorkerDied("the worker process died") from None
                    with self._lock:
                        if not self._closed.is_set():
                            self._idle.append(proc)
                            proc = None
                    if kind == "ok":
                        return value
                    raise RuntimeError(value)
                if not proc.proc.is_alive():
                    code = proc.proc.exitcode
                    proc.kill()
                    proc = None
                    self._check(task, until)
                    raise WorkerDied(f"the worker process died (exit code {code})")
                try:
                    self._check(task, until)
                except BaseException:
                    proc.kill()
                    proc = None
                    raise
        finally:
            with self._lock:
                self._running.pop(id(task), None)
            if proc is not None:  # not handed back: the pool is closing
                proc.stop()
            self._slots.release()

    def _check(self, task: _Task, until: float | None) -> None:
        if task.cancelled.is_set() or self._closed.is_set():
            raise Cancelled()
        if until is not None and time.monotonic() > until:
            raise DeadlinePassed(task.deadline_s)

    def shutdown(self, grace_s: float = 0.0) -> None:
        """Stop taking work; wait up to ``grace_s`` for running tasks, then kill every worker process."""
        end = time.monotonic() + max(0.0, grace_s)
        while time.monotonic() < end:
            with self._lock:
                if not self._running:
                    break
            time.sleep(0.05)
        self._closed.set()
        with self._lock:
            procs = list(self._running.values()) + self._idle
            self._idle = []
        for p in procs:
            p.kill()
        self._spawner.shutdown(wait=False)
