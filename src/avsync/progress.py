"""A small progress bar on stderr, fed by the ``progress`` callback of :func:`avsync.detect`."""
from __future__ import annotations

import sys
import time

#: files shorter than this (seconds of media) get no progress bar
MIN_DURATION_S = 20.0


class ProgressBar:
    """``progress(stage, done, total)`` callable drawing one self-overwriting line.

    It stays silent unless ``enabled`` and the media is long: the 'decode' stage
    reports seconds of media, so the bar switches itself on when its total exceeds
    ``min_duration_s``."""

    def __init__(self, label: str, enabled: bool, stream=None, min_duration_s: float = MIN_DURATION_S,
                 width: int = 30):
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.min_duration_s = min_duration_s
        self.width = width
        self.active = False
        self.drawn = False
        self._last = 0.0

    def __call__(self, stage: str, done: float, total: float) -> None:
        if not self.enabled:
            return
        if stage == "decode" and not self.active:
            self.active = total > self.min_duration_s
        if not self.active or not total or total <= 0:
            return
        now = time.monotonic()
        frac = max(0.0, min(1.0, float(done) / float(total)))
        if frac < 1.0 and now - self._last < 0.1:
            return
        self._last = now
        n = int(round(frac * self.width))
        bar = "#" * n + "-" * (self.width - n)
        try:
            self.stream.write(f"\r{self.label} {stage:<7} [{bar}] {frac * 100:5.1f}%")
            self.stream.flush()
            self.drawn = True
        except (OSError, ValueError):
            self.enabled = False

    def close(self) -> None:
        if self.drawn:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self.drawn = False
