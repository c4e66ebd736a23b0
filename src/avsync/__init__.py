"""avsync: find and fix audio-video synchronisation faults.

>>> from avsync import detect, fix, DetectOptions
>>> report = detect("clip.mp4", DetectOptions(tolerance="bt1359-accept"))
>>> report.offset_ms, report.confidence, report.verdict
>>> fix("clip.mp4", "fixed.mp4").after.verdict
"""
from __future__ import annotations

__version__ = "0.1.0"

from .api import analyse, detect, fix  # noqa: E402
from .errors import AvsyncError, CannotOpen, MediaError, NoAudio, NoVideo, TooShort, UsageError  # noqa: E402
from .media import open_media  # noqa: E402
from .options import DetectOptions  # noqa: E402
from .report import FixResult, Report  # noqa: E402

__all__ = ["AvsyncError", "CannotOpen", "DetectOptions", "FixResult", "MediaError", "NoAudio", "NoVideo", "Report",
           "TooShort", "UsageError", "analyse", "detect", "fix", "open_media", "__version__"]
