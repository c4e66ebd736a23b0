"""An HLS playlist as a :class:`~avsync.media.base.MediaSource` (``avsync detect URL``).

Segments are fetched whole into memory and decoded by codec contexts that persist from segment
to segment, so the decoders keep their state (B-frame reordering, AAC overlap) across
boundaries and every frame keeps its container timestamp."""
from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Iterator

from ...errors import CannotOpen, DecodeError
from ..base import AudioChunk, DecodeOptions, MediaInfo, MediaSource, VideoFrame
from .decoder import SegmentDecoder
from .fetch import FollowOptions, fetch, follow, load_playlist
from .urls import UrlPolicy, check_location, is_url


class HlsSource(MediaSource):
    """An HLS playlist as a media source (VOD; of a live playlist, the segments listed when opened)."""

    def __init__(self, uri: str, follow_options: FollowOptions = FollowOptions()):
        self.path = check_location(os.fspath(uri))
        self.follow_options = follow_options
        if not is_url(self.path) and not os.path.isfile(self.path):
            raise CannotOpen("no such file", self.path)
        policy = follow_options.policy or UrlPolicy.for_top(self.path)
        self.follow_options = follow_options = replace(follow_options, policy=policy)
        t = follow_options.timeout_s
        self._playlist = load_playlist(self.path, t, policy, time.monotonic() + t)
        if not self._playlist.segments:
            raise CannotOpen("playlist has no segments", self.path)
        first = self._playlist.segments[0]
        probe = SegmentDecoder(label=self.path)
        init = fetch(first.init_uri, t, policy=policy, deadline=time.monotonic() + t,
                     byterange=first.init_byterange) if first.init_uri else None
        items = probe.decode(fetch(first.uri, t, policy=policy, deadline=time.monotonic() + t,
                                   byterange=first.byterange), init)
        p = probe.params
        v0 = next((float(i.pts) for i in items if isinstance(i, VideoFrame)), None)
        a0 = next((float(i.start) for i in items if isinstance(i, AudioChunk)), None)
        duration = sum(s.duration for s in self._playlist.segments)
        self._info = MediaInfo(path=self.path, duration_s=round(duration, 6), video_fps=p.get("video_fps"),
                               audio_rate=p.get("audio_rate"), width=p.get("width"), height=p.get("height"),
                               audio_channels=p.get("audio_channels"), video_start_s=v0, audio_start_s=a0,
                               video_codec=p.get("video_codec"), audio_codec=p.get("audio_codec"),
                               format_name="hls")

    @property
    def info(self) -> MediaInfo:
        return self._info

    def decode(self, options: DecodeOptions = DecodeOptions()) -> Iterator[VideoFrame | AudioChunk]:
        dec = SegmentDecoder(options, self.path)
        first_t = None
        produced = False
        # a live playlist is read as the snapshot listed when it was opened
        last_seq = None if self._playlist.endlist else self._playlist.segments[-1].seq
        for sd in follow(self.path, replace(self.follow_options, live_edge_segments=10**9)):
            if last_seq is not None and sd.segment.seq > last_seq:
                break
            if sd.data is None:
                continue
            if sd.gap:
                dec.reset_timeline()
            try:
                items = dec.decode(sd.data)
            except DecodeError:
                continue
            for it in items:
                if isinstance(it, VideoFrame) and not options.video:
                    continue
                if isinstance(it, AudioChunk) and not options.audio:
                    continue
                t = it.t
                first_t = t if first_t is None else first_t
                if options.max_duration_s is not None and t - first_t > options.max_duration_s:
                    return
                produced = True
                yield it
        if not produced:
            raise DecodeError("no segment could be decoded", self.path)


def open_hls(uri: str) -> HlsSource:
    return HlsSource(uri)
