"""Fetching HLS bytes and following a playlist (VOD to its end, live as it grows).

:func:`follow` is the generator the live monitor and :class:`~avsync.media.hls.HlsSource` use: it
yields one :class:`SegmentData` per segment with its arrival time, reloads live playlists,
retries failed fetches and reports skipped segments instead of stopping.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterator

from ...errors import CannotOpen
from .playlist import Playlist, Segment, parse_playlist
from .urls import check_location, is_url

MAX_PLAYLIST_BYTES = 4 << 20
MAX_SEGMENT_BYTES = 256 << 20
USER_AGENT = "avsync-hls"


class FetchError(CannotOpen):
    """A playlist or segment could not be fetched (``status`` is the HTTP status when there is one)."""

    def __init__(self, reason: str, path: str | None = None, status: int | None = None):
        super().__init__(reason, path)
        self.status = status


def fetch(location: str, timeout: float = 10.0, max_bytes: int = MAX_SEGMENT_BYTES) -> bytes:
    """The bytes at an http(s) URL or a local path (at most ``max_bytes``)."""
    if is_url(location):
        check_location(location)
        req = urllib.request.Request(location, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (scheme checked)
                data = resp.read(max_bytes + 1)
        except urllib.error.HTTPError as exc:
            raise FetchError(f"HTTP {exc.code} {exc.reason}", location, exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"cannot fetch ({' '.join(str(reason).split())[:200]})", location) from None
    else:
        try:
            with open(location, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise FetchError(f"cannot read ({exc.strerror or exc})", location) from None
    if len(data) > max_bytes:
        raise FetchError(f"larger than {max_bytes} bytes", location)
    return data


def load_playlist(uri: str, timeout: float = 10.0) -> Playlist:
    """Fetch and parse ``uri``; a master playlist is followed to its first variant."""
    for _ in range(3):
        data = fetch(uri, timeout, MAX_PLAYLIST_BYTES)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CannotOpen("not an HLS playlist (not UTF-8 text)", uri) from None
        pl = parse_playlist(text, uri)
        if not pl.is_master:
            return pl
        uri = pl.variants[0][1]  # the first listed: the author's default
    raise CannotOpen("master playlists nested too deep", uri)


@dataclass
class SegmentData:
    """One fetched segment (``data`` None when it was skipped) and when it arrived."""

    segment: Segment
    data: bytes | None
    arrived: float  # time.monotonic() when the bytes were complete
    error: str | None = None
    gap: bool = False  # segments were skipped (or a discontinuity) before this one


@dataclass(frozen=True)
class FollowOptions:
    timeout_s: float = 10.0  # one HTTP request
    retries: int = 2  # per segment, before it is skipped
    reconnect_s: float = 30.0  # give up when the playlist stays unreachable this long
    poll_s: float | None = None  # live playlist reload interval (default: half the target duration)
    live_edge_segments: int = 3  # on joining a live stream, start this many segments from its end


def follow(uri: str, options: FollowOptions = FollowOptions(),
           on_event: Callable[[str, dict], None] | None = None,
           stop: Callable[[], bool] | None = None,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[SegmentData]:
    """Yield every segment of the playlist at ``uri`` in order, following a live playlist
    until it ends (``#EXT-X-ENDLIST``), ``stop()`` returns True or it stays unreachable for
    ``options.reconnect_s``.  ``on_event(kind, info)`` hears about 'reconnect', 'skip',
    'discontinuity' and 'behind' (segments dropped because the playlist slid past them)."""
    check_location(uri)
    emit = on_event or (lambda kind, info: None)
    pl = load_playlist(uri, options.timeout_s)
    media_uri = pl.uri
    if pl.separate_audio:
        raise CannotOpen("separate audio renditions are not supported (muxed audio+video segments only)", uri)
    next_seq: int | None = None
    if not pl.endlist and pl.segments:
        next_seq = pl.segments[max(0, len(pl.segments) - options.live_edge_segments)].seq
    init_cache: dict[str, bytes] = {}
    failing_since: float | None = None
    gap = False
    while True:
        if stop is not None and stop():
            return
        if next_seq is not None and pl.segments and pl.segments[-1].seq < next_seq - 1:
            # the media sequence went backwards: the stream was restarted; follow the new one
            emit("discontinuity", {"seq": pl.segments[0].seq, "restart": True})
            next_seq = pl.segments[max(0, len(pl.segments) - options.live_edge_segments)].seq
            gap = True
        new = [s for s in pl.segments if next_seq is None or s.seq >= next_seq]
        if next_seq is not None and pl.segments and pl.segments[0].seq > next_seq:
            emit("behind", {"missed": pl.segments[0].seq - next_seq})
            gap = True
        for seg in new:
            if stop is not None and stop():
                return
            data, err = None, None
            for attempt in range(options.retries + 1):
                try:
                    if seg.init_uri and seg.init_uri not in init_cache:
                        init_cache[seg.init_uri] = fetch(seg.init_uri, options.timeout_s)
                    data = fetch(seg.uri, options.timeout_s)
                    break
                except CannotOpen as exc:
                    err = exc.reason
                    if attempt < options.retries:
                        sleep(min(1.0, 0.25 * (attempt + 1)))
            arrived = time.monotonic()
            next_seq = seg.seq + 1
            if data is None:
                emit("skip", {"seq": seg.seq, "uri": seg.uri, "reason": err})
                yield SegmentData(seg, None, arrived, err, gap or seg.discontinuity)
                gap = True
                continue
            if seg.discontinuity:
                emit("discontinuity", {"seq": seg.seq})
            if seg.init_uri:
                data = init_cache[seg.init_uri] + data
            yield SegmentData(seg, data, arrived, None, gap or seg.discontinuity)
            gap = False
        if pl.endlist:
            return
        # live: reload the playlist
        wait = options.poll_s if options.poll_s is not None else max(0.2, (pl.target_duration or 2.0) / 2)
        sleep(wait)
        while True:
            if stop is not None and stop():
                return
            try:
                pl = load_playlist(media_uri, options.timeout_s)
                if failing_since is not None:
                    emit("reconnected", {"after_s": round(time.monotonic() - failing_since, 2)})
                failing_since = None
                break
            except CannotOpen as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    emit("reconnect", {"reason": exc.reason})
                if now - failing_since > options.reconnect_s:
                    raise FetchError(f"playlist unreachable for {options.reconnect_s:g} s ({exc.reason})",
                                     uri) from None
                sleep(min(2.0, wait))
