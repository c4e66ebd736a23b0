"""The media layer: sources with exact timestamps, one streaming decode walk, clips, remuxing.

:func:`open_media` picks the source: an HLS playlist (:mod:`.hls`) or a file (:mod:`.file`)."""
from __future__ import annotations

import os

from .base import AudioChunk, DecodeOptions, MediaInfo, MediaSource, VideoFrame, analysis_size
from .file import FileSource


def open_media(path: str | os.PathLike, audio_index: int | None = None) -> MediaSource:
    """Open a media file, or an HLS playlist (``.m3u8``: an http(s) URL or a local file);
    ``audio_index`` picks the audio track of a file (None: the first).

    URLs other than http(s) are refused with :class:`avsync.errors.UsageError`."""
    p = os.fspath(path)
    if isinstance(p, str):
        from .hls import HlsSource, check_location, is_url, looks_like_hls

        if is_url(p):
            check_location(p)
        if looks_like_hls(p):
            return HlsSource(p)
    return FileSource(path, audio_index)


__all__ = ["AudioChunk", "DecodeOptions", "FileSource", "MediaInfo", "MediaSource", "VideoFrame",
           "analysis_size", "open_media"]
