"""The media layer: sources with exact timestamps, one streaming decode walk, clips, remuxing.

:func:`open_media` picks the source: an HLS playlist (:mod:`.hls`) or a file (:mod:`.file`)."""
from __future__ import annotations

import os

from ..errors import CannotOpen
from .base import AudioChunk, DecodeOptions, MediaInfo, MediaSource, VideoFrame, analysis_size
from .file import FileSource


_playlists = {"allowed": True}


def refuse_playlists() -> None:
    """From now on this process opens every path as a media file, never as a playlist that
    points elsewhere (the service's worker processes: an upload is a file, whatever its name)."""
    _playlists["allowed"] = False


def playlists_allowed() -> bool:
    return _playlists["allowed"]


def open_media(path: str | os.PathLike, audio_index: int | None = None) -> MediaSource:
    """Open a media file, or an HLS playlist (``.m3u8``: an http(s) URL or a local file);
    ``audio_index`` picks the audio track of a file (None: the first).

    URLs other than http(s) are refused with :class:`avsync.errors.UsageError`; after
    :func:`refuse_playlists`, a playlist or URL is refused with :class:`avsync.errors.CannotOpen`."""
    p = os.fspath(path)
    if isinstance(p, str):
        from .hls import HlsSource, check_location, is_url, looks_like_hls

        if not _playlists["allowed"]:
            if is_url(p):
                raise CannotOpen("URLs are not opened here (media files only)", None)
            if looks_like_hls(p):
                raise CannotOpen("an HLS playlist, not a media file: playlists are never followed here", p)
            return FileSource(path, audio_index)
        if is_url(p):
            check_location(p)
        if looks_like_hls(p):
            return HlsSource(p)
    return FileSource(path, audio_index)


__all__ = ["AudioChunk", "DecodeOptions", "FileSource", "MediaInfo", "MediaSource", "VideoFrame",
           "analysis_size", "open_media", "playlists_allowed", "refuse_playlists"]
