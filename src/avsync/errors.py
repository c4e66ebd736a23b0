"""One error hierarchy for everything that can go wrong with a piece of media.

Every error carries the path it concerns and a one-line reason, so the CLI can
print ``path: reason`` and exit with code 3 without a traceback.
"""
from __future__ import annotations


class AvsyncError(Exception):
    """Base class of every error avsync raises on purpose."""

    exit_code = 3

    def __init__(self, reason: str, path: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def __str__(self) -> str:  # one line, always
        msg = " ".join(str(self.reason).split())
        if not self.path:
            return msg
        path = str(self.path)
        if any(ord(c) < 32 or ord(c) == 127 for c in path):  # keep it one line
            path = path.encode("unicode_escape").decode("ascii")
        return f"{path}: {msg}"


class MediaError(AvsyncError):
    """The media cannot be used for the analysis asked for."""


class CannotOpen(MediaError):
    """The file does not exist, is not readable, or is not a media file PyAV understands."""


class NoAudio(MediaError):
    """The media has no (decodable) audio stream."""


class NoVideo(MediaError):
    """The media has no (decodable) video stream, or only a cover picture."""


class TooShort(MediaError):
    """The media is too short to measure anything."""


class DecodeError(MediaError):
    """Decoding failed part-way (corrupt or truncated data) before anything usable came out."""


class CannotMeasure(MediaError):
    """The offset could not be measured reliably (``report``: the measurement that was made)."""

    def __init__(self, reason: str, path: str | None = None, report=None):
        super().__init__(reason, path)
        self.report = report


class UsageError(AvsyncError):
    """Bad options or arguments (exit code 2)."""

    exit_code = 2


class MissingWeights(UsageError):
    """A learned method was asked for without a weights file."""
