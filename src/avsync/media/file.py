"""A local media file (or anything PyAV opens by name) as a :class:`~avsync.media.base.MediaSource`."""
from __future__ import annotations

import math
import os
from typing import Iterator

from ..errors import CannotOpen
from .base import (AudioChunk, DecodeOptions, MediaInfo, MediaSource, VideoFrame, audio_stream, frame_rate,
                   frame_rotation, open_container, short_reason, video_stream)
from .decode import Decoder, configure_video, decoded_frames

#: demuxers that accept almost any bytes (plain text shown as a picture, ...)
NOT_MEDIA_FORMATS = {"tty": "text", "txt": "text"}


class FileSource(MediaSource):
    """A local file (or anything PyAV can open by name)."""

    def __init__(self, path: str | os.PathLike, audio_index: int | None = None):
        self.path = os.fspath(path)
        self.audio_index = audio_index
        self._container = open_container(self.path)
        fmt = getattr(self._container.format, "name", "") or ""
        if fmt in NOT_MEDIA_FORMATS:
            self.close()
            raise CannotOpen(f"not a media file (read as {NOT_MEDIA_FORMATS[fmt]})", self.path)
        try:
            self._info = self._probe()
        except CannotOpen as exc:
            self.close()
            exc.path = self.path
            raise
        except Exception as exc:
            self.close()
            raise CannotOpen(f"cannot read the stream parameters ({short_reason(exc)})", self.path) from None

    # -- description -------------------------------------------------------------------
    def _probe(self) -> MediaInfo:
        c = self._container
        v, a = video_stream(c), audio_stream(c, self.audio_index)
        fps = None
        width = height = None
        vstart = astart = None
        rotation = 0
        if v is not None:
            rate = frame_rate(v)
            fps = float(rate) if rate else None
            if not fps or not math.isfinite(fps) or fps <= 0 or fps > 1000:
                fps = 25.0
            width, height = v.codec_context.width or None, v.codec_context.height or None
            if v.start_time is not None and v.time_base:
                vstart = float(v.start_time * v.time_base)
            rotation = self._peek_rotation(v)
        if a is not None and a.start_time is not None and a.time_base:
            astart = float(a.start_time * a.time_base)
        duration = 0.0
        if c.duration:
            duration = c.duration / 1_000_000
        else:
            for s in (v, a):
                if s is not None and s.duration and s.time_base:
                    duration = max(duration, float(s.duration * s.time_base))
        declared = duration
        for s in (v, a):
            if s is not None and s.duration and s.time_base:
                declared = max(declared, float(s.duration * s.time_base))
        if v is not None and fps and (v.frames or 0) > 0:
            declared = max(declared, v.frames / fps)
        return MediaInfo(
            path=self.path,
            duration_s=round(duration, 6),
            video_fps=fps,
            audio_rate=a.codec_context.sample_rate if a is not None else None,
            width=width,
            height=height,
            audio_channels=(a.codec_context.channels if a is not None else None),
            rotation=rotation,
            video_start_s=vstart,
            audio_start_s=astart,
            video_codec=v.codec_context.name if v is not None else None,
            audio_codec=a.codec_context.name if a is not None else None,
            format_name=c.format.name,
            audio_stream=(list(c.streams.audio).index(a) if a is not None else None),
            audio_tracks=len(c.streams.audio),
            declared_duration_s=round(declared, 6) if declared > 0 else None,
        )

    def _peek_rotation(self, v) -> int:
        """Display rotation (degrees clockwise) of the video stream.

        PyAV does not expose the stream's display matrix, only each decoded frame's,
        so the first frame is decoded from a second, throw-away handle (local
        files only; the main handle stays at the start)."""
        rot = str((v.metadata or {}).get("rotate", "") or "").strip()
        if rot.lstrip("-").isdigit():
            return int(rot) % 360
        if str(self.path).startswith(("http://", "https://")):
            return 0
        try:
            with open_container(self.path) as peek:
                stream = next((s for s in peek.streams.video if s.index == v.index), None)
                if stream is None:
                    return 0
                for _, frame in decoded_frames(peek, [stream], max_packets=65):
                    return frame_rotation(frame)
        except Exception:
            pass
        return 0

    @property
    def info(self) -> MediaInfo:
        return self._info

    def close(self) -> None:
        c = getattr(self, "_container", None)
        if c is not None:
            c.close()
            self._container = None

    # -- decoding ----------------------------------------------------------------------
    def decode(self, options: DecodeOptions = DecodeOptions()) -> Iterator[VideoFrame | AudioChunk]:
        c = self._container
        if c is None:
            raise CannotOpen("source is closed", self.path)
        v = video_stream(c) if options.video else None
        a = audio_stream(c, self.audio_index) if options.audio else None
        if v is not None:
            configure_video(v, options)
        dec = Decoder(options, self.path)
        yield from dec.walk(c, v, a)
        #: timestamp jumps met (the walk ended at the first): see :class:`~avsync.media.decode.Decoder`
        self.discontinuities = dec.discontinuities
        #: the error that ended the walk early (``at_s``, ``reason``), or None
        self.decode_error = dec.error
