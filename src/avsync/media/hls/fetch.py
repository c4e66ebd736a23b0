"""Fetching HLS bytes and following a playlist (VOD to its end, live as it grows).

:func:`follow` is the generator the live monitor and :class:`~avsync.media.hls.HlsSource` use: it
yields one :class:`SegmentData` per segment with its arrival time, reloads live playlists,
retries failed fetches and reports skipped segments instead of stopping.
"""
from __future__ import annotations

import http.client
import os
import socket
import stat
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Iterator

from ...errors import CannotOpen
from .playlist import Playlist, Segment, parse_playlist
from .urls import UrlPolicy, check_location, is_url

MAX_PLAYLIST_BYTES = 4 << 20
MAX_SEGMENT_BYTES = 256 << 20
USER_AGENT = "avsync-hls"


class FetchError(CannotOpen):
    """A playlist or segment could not be fetched (``status`` is the HTTP status when there is one;
    ``retry`` False when trying again cannot help: too large, refused by the policy, deadline)."""

    def __init__(self, reason: str, path: str | None = None, status: int | None = None, retry: bool = True):
        super().__init__(reason, path)
        self.status = status
        self.retry = retry


MAX_REDIRECTS = 5
_CHUNK = 1 << 16


def _connector(policy: UrlPolicy, host: str):
    """``socket.create_connection`` for http.client that connects only to addresses the policy
    allows for ``host`` (checked on the address actually connected to)."""

    def create(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, *args, **kwargs):
        h, port = address
        try:
            infos = socket.getaddrinfo(h, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise FetchError(f"cannot resolve the host ({exc.strerror or exc})") from None
        err: Exception | None = None
        for family, type_, proto, _, sockaddr in infos:
            if not policy.address_ok(host, sockaddr[0]):
                err = FetchError("refused: the host is on a loopback, private or link-local address", retry=False)
                continue
            sock = socket.socket(family, type_, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                err = exc
        raise err if err is not None else FetchError("cannot resolve the host")

    return create


def _remaining(deadline: float | None, timeout: float) -> float:
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("deadline passed before the transfer was complete", retry=False)
    return min(timeout, left)


class _Watchdog:
    """Shuts a connection's socket down at the deadline, so no header or body trickle outlives it."""

    def __init__(self, conn, deadline: float | None):
        self.conn = conn
        self.fired = False
        self.timer = None
        if deadline is not None:
            self.timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
            self.timer.daemon = True
            self.timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = getattr(self.conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _http_get(url: str, policy: UrlPolicy, timeout: float, max_bytes: int, deadline: float | None,
              byterange: tuple[int, int] | None) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        url = policy.check(url)
        parts = urllib.parse.urlsplit(url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=_remaining(deadline, timeout))
        conn._create_connection = _connector(policy, parts.hostname or "")
        dog = _Watchdog(conn, deadline)
        try:
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            if byterange is not None:
                headers["Range"] = f"bytes={byterange[0]}-{byterange[0] + byterange[1] - 1}"
            conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=headers)
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                to = resp.getheader("Location")
                if not to:
                    raise FetchError(f"HTTP {resp.status} without a Location", None, resp.status)
                url = urllib.parse.urljoin(url, to.strip())  # checked by the policy at the top of the loop
                continue
            if resp.status >= 400:
                raise FetchError(f"HTTP {resp.status} {resp.reason}", None, resp.status,
                                 retry=resp.status >= 500 or resp.status in (408, 429))
            length = resp.getheader("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > max_bytes:
                raise FetchError(f"larger than {max_bytes} bytes ({int(length)} announced)", retry=False)
            buf = bytearray()
            while True:
                if conn.sock is not None:
                    conn.sock.settimeout(_remaining(deadline, timeout))
                chunk = resp.read1(_CHUNK)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > max_bytes:
                    raise FetchError(f"larger than {max_bytes} bytes", retry=False)
            if dog.fired:
                raise FetchError("deadline passed before the transfer was complete", retry=False)
            if length is not None and length.strip().isdigit() and len(buf) < int(length):
                raise FetchError(f"transfer cut short ({len(buf)} of {int(length)} bytes)")
            if byterange is not None and resp.status == 200:  # a server without ranges: cut it here
                buf = buf[byterange[0]:byterange[0] + byterange[1]]
            return bytes(buf)
        except FetchError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if dog.fired or (deadline is not None and time.monotonic() >= deadline):
                raise FetchError("deadline passed before the transfer was complete", retry=False) from None
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise FetchError(f"cannot fetch ({reason})") from None
        finally:
            dog.cancel()
            conn.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects", retry=False)


def fetch(location: str, timeout: float = 10.0, max_bytes: int = MAX_SEGMENT_BYTES, *,
          policy: UrlPolicy | None = None, deadline: float | None = None,
          byterange: tuple[int, int] | None = None) -> bytes:
    """The bytes at an http(s) URL or a local path (at most ``max_bytes``), as ``policy`` allows
    (default: :meth:`UrlPolicy.for_top` of ``location``).  ``timeout`` bounds each network wait,
    ``deadline`` (a ``time.monotonic()`` value) the whole transfer, redirects included."""
    policy = policy or UrlPolicy.for_top(location)
    if is_url(location):
        check_location(location)
        try:
            return _http_get(location, policy, timeout, max_bytes, deadline, byterange)
        except FetchError as exc:
            exc.path = location
            raise
        except CannotOpen as exc:  # refused by the policy
            raise FetchError(exc.reason, location, retry=False) from None
    try:
        policy.check(location)
    except CannotOpen as exc:
        raise FetchError(exc.reason, location, retry=False) from None
    try:
        st = os.stat(location)
        if not stat.S_ISREG(st.st_mode):
            raise FetchError("not a regular file", location, retry=False)
        if (byterange[1] if byterange else st.st_size) > max_bytes:
            raise FetchError(f"larger than {max_bytes} bytes", location, retry=False)
        with open(location, "rb") as fh:
            if byterange is not None:
                fh.seek(byterange[0])
                return fh.read(byterange[1])
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise FetchError(f"cannot read ({exc.strerror or exc})", location) from None
    if len(data) > max_bytes:
        raise FetchError(f"larger than {max_bytes} bytes", location, retry=False)
    return data


def load_playlist(uri: str, timeout: float = 10.0, policy: UrlPolicy | None = None,
                  deadline: float | None = None) -> Playlist:
    """Fetch and parse ``uri``; a master playlist is followed to its first variant (every fetch
    checked by ``policy``, default :meth:`UrlPolicy.for_top` of ``uri``)."""
    policy = policy or UrlPolicy.for_top(uri)
    for _ in range(3):
        data = fetch(uri, timeout, MAX_PLAYLIST_BYTES, policy=policy, deadline=deadline)
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
    #: the deadline of one segment (every try, redirects included) and of one playlist load
    timeout_s: float = 10.0
    retries: int = 2  # per segment, before it is skipped (not for what cannot change: too large, refused)
    reconnect_s: float = 30.0  # give up when the playlist stays unreachable this long
    poll_s: float | None = None  # live playlist reload interval (default: half the target duration)
    live_edge_segments: int = 3  # on joining a live stream, start this many segments from its end
    #: give up on a live playlist that gets no new segment for this long (default: the larger of
    #: reconnect_s and 6 target durations)
    stall_s: float | None = None
    #: what may be fetched (default: :meth:`UrlPolicy.for_top` of the playlist)
    policy: UrlPolicy | None = None
    #: a larger segment is skipped (announced by Content-Length: not downloaded at all)
    max_segment_bytes: int = MAX_SEGMENT_BYTES


def follow(uri: str, options: FollowOptions = FollowOptions(),
           on_event: Callable[[str, dict], None] | None = None,
           stop: Callable[[], bool] | None = None,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[SegmentData]:
    """Yield every segment of the playlist at ``uri`` in order, following a live playlist
    until it ends (``#EXT-X-ENDLIST``), ``stop()`` returns True, it stays unreachable for
    ``options.reconnect_s`` or gets no new segment for ``options.stall_s``.  ``on_event(kind, info)``
    hears about 'reconnect', 'skip', 'discontinuity' and 'behind' (segments dropped because the
    playlist slid past them).  Every location is checked by ``options.policy``."""
    check_location(uri)
    policy = options.policy or UrlPolicy.for_top(uri)
    emit = on_event or (lambda kind, info: None)

    def deadline() -> float:
        return time.monotonic() + options.timeout_s

    pl = load_playlist(uri, options.timeout_s, policy, deadline())
    media_uri = pl.uri
    if pl.separate_audio:
        raise CannotOpen("separate audio renditions are not supported (muxed audio+video segments only)", uri)
    next_seq: int | None = None
    if not pl.endlist and pl.segments:
        next_seq = pl.segments[max(0, len(pl.segments) - options.live_edge_segments)].seq
    init_cache: dict[tuple, bytes] = {}
    failing_since: float | None = None
    last_new = time.monotonic()
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
        if new:
            last_new = time.monotonic()
        for seg in new:
            if stop is not None and stop():
                return
            data, err = None, None
            until = deadline()  # one deadline for the segment, every try included
            init_key = (seg.init_uri, seg.init_byterange)
            for attempt in range(options.retries + 1):
                try:
                    if seg.init_uri and init_key not in init_cache:
                        init_cache[init_key] = fetch(seg.init_uri, options.timeout_s, options.max_segment_bytes,
                                                     policy=policy, deadline=until, byterange=seg.init_byterange)
                    data = fetch(seg.uri, options.timeout_s, options.max_segment_bytes, policy=policy,
                                 deadline=until, byterange=seg.byterange)
                    break
                except CannotOpen as exc:
                    err = exc.reason
                    if not getattr(exc, "retry", True) or attempt >= options.retries:
                        break
                    pause = min(1.0, 0.25 * (attempt + 1))
                    if time.monotonic() + pause >= until:
                        break
                    sleep(pause)
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
                data = init_cache[init_key] + data
            yield SegmentData(seg, data, arrived, None, gap or seg.discontinuity)
            gap = False
        if pl.endlist:
            return
        stall = options.stall_s if options.stall_s is not None else max(options.reconnect_s,
                                                                          6 * (pl.target_duration or 2.0))
        if time.monotonic() - last_new > stall:
            raise FetchError(f"live playlist got no new segment for {stall:g} s", uri, retry=False)
        # live: reload the playlist
        wait = options.poll_s if options.poll_s is not None else max(0.2, (pl.target_duration or 2.0) / 2)
        sleep(wait)
        while True:
            if stop is not None and stop():
                return
            try:
                pl = load_playlist(media_uri, options.timeout_s, policy, deadline())
                if failing_since is not None:
                    emit("reconnected", {"after_s": round(time.monotonic() - failing_since, 2)})
                failing_since = None
                break
            except CannotOpen as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    emit("reconnect", {"reason": exc.reason})
                if now - failing_since > options.reconnect_s or not getattr(exc, "retry", True):
                    raise FetchError(f"playlist unreachable for {now - failing_since:.0f} s ({exc.reason})",
                                     uri, retry=False) from None
                sleep(min(2.0, wait))
