"""Bounded read-ahead: decode in a background thread while the consumer computes features."""
from __future__ import annotations

import queue
import threading
from typing import Iterator

#: decoded items (small grey frames or audio chunks) the decode thread may run ahead:
#: at most ~40 MB of 640-px frames, enough to cover the face-model load at start
PREFETCH_DEPTH = 160


class Prefetch:
    """Run ``items`` in a background thread, ``depth`` items ahead: decoding (which
    releases the GIL inside FFmpeg) overlaps with the face analysis of earlier frames.
    The thread starts at once, not at the first ``next``.  Memory stays bounded by
    ``depth`` small frames; errors re-raise in the consumer; leaving the ``with`` block
    stops the thread whether or not the items were consumed."""

    _DONE = object()

    def __init__(self, items: Iterator, depth: int = 32):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._work, args=(items,), name="avsync-decode", daemon=True)
        self._th.start()

    def _put(self, it) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(it, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, items: Iterator) -> None:
        try:
            for it in items:
                if not self._put(it):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)

    def __iter__(self):
        while True:
            it = self._q.get()
            if it is self._DONE:
                return
            if isinstance(it, BaseException):
                raise it
            yield it

    def close(self) -> None:
        self._stop.set()
        self._th.join(timeout=5)

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
