"""The one progress protocol, and its renderers on stderr.

Everything that reports progress calls ``progress(stage, done, total)``: ``stage`` is a short
word naming what is counted ('decode': seconds of media decoded; 'windows': timeline windows;
'files': batch inputs; 'trim', 'synth', 'features', 'epoch', ...), ``done`` out of ``total``.
:class:`ProgressBar` draws it as a bar (tqdm), :class:`CountLine` as ``label done/total``.
"""
from __future__ import annotations

import sys
from typing import Protocol

#: files shorter than this (seconds of media) get no progress bar
MIN_DURATION_S = 20.0


class Progress(Protocol):
    """``progress(stage, done, total)``; see the module docstring for the stages."""

    def __call__(self, stage: str, done: float, total: float) -> None: ...


class ProgressBar:
    """A :class:`Progress` drawing one self-overwriting tqdm bar ``label stage [###---] 42.0%``.

    It stays silent unless ``enabled``; with ``min_duration_s`` (detect) also until a 'decode'
    stage reports a total above it, so short media get no bar.  ``min_duration_s=None`` draws
    from the first call; ``counts`` adds ``done/total``.  A new stage restarts the bar on the
    same line; :meth:`close` ends it."""

    def __init__(self, label: str, enabled: bool, stream=None, min_duration_s: float | None = MIN_DURATION_S,
                 width: int = 30, counts: bool = False):
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.min_duration_s = min_duration_s
        self.width = width
        self.counts = counts  # show done/total (whole numbers: files, items)
        self.active = min_duration_s is None
        self._bar = None
        self._stage: str | None = None

    def __call__(self, stage: str, done: float, total: float) -> None:
        if not self.enabled:
            return
        if stage == "decode" and not self.active:
            self.active = total > self.min_duration_s
        if not self.active or not total or total <= 0:
            return
        try:
            bar = self._stage_bar(stage, total)
            bar.update(max(0, min(done, total)) - bar.n)
        except (OSError, ValueError):  # stderr gone
            self.enabled = False

    def _stage_bar(self, stage: str, total):
        if self._bar is None:
            import shutil

            from tqdm import tqdm

            # the terminal's size (80x24 where it says 0x0, as some pseudo-terminals do: tqdm would draw nothing)
            cols, rows = shutil.get_terminal_size()
            self._bar = tqdm(total=total, desc=f"{self.label} {stage:<7}", file=self.stream, leave=True,
                             ascii="-#", mininterval=0.1, ncols=cols, nrows=rows,
                             bar_format=f"{{desc}} [{{bar:{self.width}}}] {{percentage:5.1f}}% "
                                        + ("{n_fmt}/{total_fmt} " if self.counts else "")
                                        + "{elapsed}<{remaining}")
        elif stage != self._stage:
            self._bar.set_description_str(f"{self.label} {stage:<7}", refresh=False)
            self._bar.reset(total=total)
        self._stage = stage
        return self._bar

    def close(self) -> None:
        """End the bar's line (when one was drawn)."""
        if self._bar is not None:
            try:
                self._bar.close()
            except (OSError, ValueError):
                pass
            self._bar = None
            self._stage = None


class CountLine:
    """A :class:`Progress` drawing ``label done/total`` on one self-overwriting line (stderr),
    ended when ``done`` reaches ``total``."""

    def __init__(self, label: str, enabled: bool, stream=None):
        self.label = label
        self.enabled = enabled
        self.stream = stream

    def __call__(self, stage: str, done: float, total: float) -> None:
        if not self.enabled:
            return
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write(f"\r{self.label} {done}/{total}")
            if done >= total:
                stream.write("\n")
            stream.flush()
        except (OSError, ValueError):
            pass


__all__ = ["CountLine", "MIN_DURATION_S", "Progress", "ProgressBar"]
