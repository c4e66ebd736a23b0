"""avsync: find and fix audio-video synchronisation faults.

>>> from avsync import detect, DetectOptions
>>> report = detect("clip.mp4", DetectOptions(tolerance="ebu-r37"))
>>> report.offset_ms, report.confidence, report.verdict
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import DetectOptions, analyse, detect  # noqa: E402
from .errors import AvsyncError, CannotOpen, MediaError, NoAudio, NoVideo, TooShort  # noqa: E402
from .media import open_media  # noqa: E402
from .report import Report  # noqa: E402

__all__ = ["AvsyncError", "CannotOpen", "DetectOptions", "MediaError", "NoAudio", "NoVideo", "Report",
           "TooShort", "analyse", "detect", "open_media", "__version__"]
