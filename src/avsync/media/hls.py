"""HLS input: playlist parsing, segment fetching and in-memory decoding.

Only ``http``/``https`` URLs and local playlist files are accepted (never ``file:``,
``ftp:``, ``data:`` or anything else ffmpeg could open); segment URIs are resolved
against the playlist and must obey the same rule.  Segments are fetched whole into
memory and decoded by codec contexts that persist from segment to segment, so the
decoders keep their state (B-frame reordering, AAC overlap) across boundaries and
every frame keeps its container timestamp.

:class:`HlsSource` is a :class:`~avsync.media.MediaSource` (``avsync detect URL``);
:func:`follow` is the lower-level generator the live monitor uses: it yields one
:class:`SegmentData` per segment with its arrival time, reloads live playlists,
retries failed fetches and reports skipped segments instead of stopping.
"""
from __future__ import annotations

import io
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Callable, Iterator

import numpy as np

from ..errors import CannotOpen, DecodeError, NoAudio, NoVideo, UsageError
from .source import (AUDIO_GAP_S, AudioChunk, DecodeOptions, MediaInfo, MediaSource, VideoFrame, _grey,
                     _is_cover_art, _rotate, _frame_rotation, _short, analysis_size)

ALLOWED_SCHEMES = ("http", "https")
MAX_PLAYLIST_BYTES = 4 << 20
MAX_SEGMENT_BYTES = 256 << 20
USER_AGENT = "avsync-hls"


# -- locations ---------------------------------------------------------------------------------
def is_url(location: str) -> bool:
    """True for anything of the form ``scheme://...`` (a Windows drive letter is not a scheme)."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", str(location)))


def check_location(location: str) -> str:
    """Return ``location`` if it is an http(s) URL or a local path; raise :class:`UsageError` for
    any other ``scheme://`` (file, ftp, rtmp, ...)."""
    loc = os.fspath(location)
    if is_url(loc):
        scheme = urllib.parse.urlsplit(loc).scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise UsageError(f"{loc}: unsupported URL scheme {scheme!r}: only http(s) URLs and local "
                             "playlist files are accepted")
    return loc


def looks_like_hls(location: str) -> bool:
    """By name: ``.m3u8`` / ``.m3u`` (query strings ignored)."""
    path = urllib.parse.urlsplit(location).path if is_url(location) else location
    return path.lower().endswith((".m3u8", ".m3u"))


def resolve(base: str, uri: str) -> str:
    """``uri`` from a playlist at ``base``, made absolute; other schemes are refused."""
    uri = uri.strip()
    if is_url(uri) or uri.lower().startswith(("data:", "file:", "javascript:")):
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise CannotOpen(f"playlist refers to an unsupported URL scheme {scheme!r}", base)
        return uri
    if is_url(base):
        return urllib.parse.urljoin(base, uri)
    path = urllib.parse.unquote(uri.split("?")[0])
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(base)), path)


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


# -- playlists ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    uri: str  # absolute URL or path
    duration: float  # EXTINF, seconds
    seq: int  # media sequence number
    discontinuity: bool = False
    init_uri: str | None = None  # EXT-X-MAP (fragmented MP4)


@dataclass(frozen=True)
class Playlist:
    uri: str
    segments: list[Segment] = field(default_factory=list)
    target_duration: float = 0.0
    media_sequence: int = 0
    endlist: bool = False
    variants: list[tuple[int, str]] = field(default_factory=list)  # (bandwidth, uri) of a master playlist
    separate_audio: bool = False  # EXT-X-MEDIA audio renditions with their own URI

    @property
    def is_master(self) -> bool:
        return bool(self.variants)


def _attrs(text: str) -> dict[str, str]:
    out = {}
    for m in re.finditer(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text):
        out[m.group(1)] = m.group(2).strip('"')
    return out


def parse_playlist(text: str, uri: str) -> Playlist:
    """Parse an HLS playlist (media or master).  Raises :class:`CannotOpen` for anything else."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].lstrip("\ufeff").startswith("#EXTM3U"):
        raise CannotOpen("not an HLS playlist (no #EXTM3U header)", uri)
    segs: list[Segment] = []
    variants: list[tuple[int, str]] = []
    target = 0.0
    seq0 = 0
    endlist = separate_audio = False
    dur: float | None = None
    disc = False
    init: str | None = None
    pending_variant: int | None = None
    n = 0
    for ln in lines[1:]:
        if ln.startswith("#"):
            tag, _, value = ln.partition(":")
            if tag == "#EXTINF":
                try:
                    dur = float(value.split(",")[0])
                except ValueError:
                    raise CannotOpen(f"bad #EXTINF line {ln[:60]!r}", uri) from None
            elif tag == "#EXT-X-TARGETDURATION":
                try:
                    target = float(value)
                except ValueError:
                    pass
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                try:
                    seq0 = int(value)
                except ValueError:
                    pass
            elif tag == "#EXT-X-ENDLIST":
                endlist = True
            elif tag == "#EXT-X-DISCONTINUITY":
                disc = True
            elif tag == "#EXT-X-MAP":
                a = _attrs(value)
                if "URI" in a:
                    init = resolve(uri, a["URI"])
            elif tag == "#EXT-X-STREAM-INF":
                a = _attrs(value)
                try:
                    pending_variant = int(a.get("BANDWIDTH", "0"))
                except ValueError:
                    pending_variant = 0
            elif tag == "#EXT-X-MEDIA":
                a = _attrs(value)
                if a.get("TYPE") == "AUDIO" and a.get("URI"):
                    separate_audio = True
            elif tag == "#EXT-X-KEY":
                a = _attrs(value)
                if a.get("METHOD", "NONE") != "NONE":
                    raise CannotOpen("encrypted HLS streams are not supported", uri)
            continue
        if pending_variant is not None:
            variants.append((pending_variant, resolve(uri, ln)))
            pending_variant = None
            continue
        segs.append(Segment(resolve(uri, ln), dur if dur is not None else target, seq0 + n, disc, init))
        n += 1
        dur, disc = None, False
    return Playlist(uri, segs, target, seq0, endlist, variants, separate_audio)


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


# -- decoding ----------------------------------------------------------------------------------
@dataclass
class SegmentData:
    """One fetched segment (``data`` None when it was skipped) and when it arrived."""

    segment: Segment
    data: bytes | None
    arrived: float  # time.monotonic() when the bytes were complete
    error: str | None = None
    gap: bool = False  # segments were skipped (or a discontinuity) before this one


class SegmentDecoder:
    """Decodes successive segments with persistent codec contexts into analysis items."""

    def __init__(self, options: DecodeOptions = DecodeOptions(), label: str = "stream"):
        self.options = options
        self.label = label
        self._v = self._a = None  # codec contexts
        self._vname = self._aname = None
        self._resampler = None
        self._next_audio: Fraction | None = None
        self._size = None
        self._init: bytes | None = None
        self.params: dict = {}

    def reset_timeline(self) -> None:
        """After skipped segments or a discontinuity: audio restarts at its next timestamp."""
        self._next_audio = None
        self._resampler = None

    def decode(self, data: bytes, init: bytes | None = None) -> list[VideoFrame | AudioChunk]:
        import av

        blob = (init or b"") + data
        try:
            c = av.open(io.BytesIO(blob), metadata_errors="ignore")
        except Exception as exc:
            raise DecodeError(f"segment is not decodable media ({_short(exc)})", self.label) from None
        items: list = []
        try:
            v = next((s for s in c.streams.video if not _is_cover_art(s)), None)
            a = next((s for s in c.streams.audio if (s.codec_context.sample_rate or 0) > 0), None)
            self._note_params(v, a)
            streams = [s for s in (v, a) if s is not None]
            if not streams:
                return items
            for packet in c.demux(streams):
                if packet.size == 0:
                    continue
                is_video = packet.stream is v
                ctx = self._context(packet.stream, is_video)
                try:
                    frames = ctx.decode(packet)
                except (av.error.InvalidDataError, av.error.FFmpegError):
                    continue
                for frame in frames:
                    self._emit(frame, packet, is_video, items)
        except av.error.FFmpegError:
            pass  # a damaged tail: keep what was decoded
        finally:
            c.close()
        return items

    def _note_params(self, v, a) -> None:
        if v is not None and "video_fps" not in self.params:
            rate = v.average_rate or v.guessed_rate or v.base_rate
            fps = float(rate) if rate else 25.0
            self.params.update(video_fps=fps if 0 < fps <= 1000 else 25.0, width=v.codec_context.width,
                               height=v.codec_context.height, video_codec=v.codec_context.name)
        if a is not None and "audio_rate" not in self.params:
            self.params.update(audio_rate=a.codec_context.sample_rate, audio_channels=a.codec_context.channels,
                               audio_codec=a.codec_context.name)

    def _context(self, stream, is_video: bool):
        import av

        name = stream.codec_context.name
        if is_video:
            if self._v is None or self._vname != name:
                self._v = av.CodecContext.create(name, "r")
                if stream.codec_context.extradata:
                    self._v.extradata = stream.codec_context.extradata
                self._v.thread_type = "AUTO"
                self._vname = name
            return self._v
        if self._a is None or self._aname != name:
            self._a = av.CodecContext.create(name, "r")
            if stream.codec_context.extradata:
                self._a.extradata = stream.codec_context.extradata
            self._aname = name
        return self._a

    def _emit(self, frame, packet, is_video: bool, items: list) -> None:
        import av

        tb = frame.time_base or packet.time_base
        if frame.pts is None or tb is None:
            return
        pts = Fraction(frame.pts) * Fraction(tb)
        if is_video:
            if self._size is None:
                self._size = analysis_size(frame.width, frame.height, self.options.max_side)
            items.append(VideoFrame(pts=pts, image=_rotate(_grey(frame, self._size), _frame_rotation(frame))))
            return
        rate = self.options.audio_rate
        if self._next_audio is not None and float(pts - self._next_audio) < -1.0:
            self.reset_timeline()  # timestamps went back: a new timeline
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        if self._next_audio is None:
            self._next_audio = pts
        elif float(pts - self._next_audio) > AUDIO_GAP_S:
            gap = int(round(float(pts - self._next_audio) * rate))
            items.append(AudioChunk(self._next_audio, np.zeros(gap, np.float32), rate))
            self._next_audio += Fraction(gap, rate)
        frame.pts = None
        for out in self._resampler.resample(frame):
            data = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            if data.size:
                items.append(AudioChunk(self._next_audio, data, rate))
                self._next_audio += Fraction(data.size, rate)


# -- following a playlist ----------------------------------------------------------------------
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


# -- a MediaSource over HLS --------------------------------------------------------------------
class HlsSource(MediaSource):
    """An HLS playlist as a media source (VOD; of a live playlist, the segments listed when opened)."""

    def __init__(self, uri: str, follow_options: FollowOptions = FollowOptions()):
        self.path = check_location(os.fspath(uri))
        self.follow_options = follow_options
        if not is_url(self.path) and not os.path.isfile(self.path):
            raise CannotOpen("no such file", self.path)
        self._playlist = load_playlist(self.path, follow_options.timeout_s)
        if not self._playlist.segments:
            raise CannotOpen("playlist has no segments", self.path)
        first = self._playlist.segments[0]
        probe = SegmentDecoder(label=self.path)
        init = fetch(first.init_uri, follow_options.timeout_s) if first.init_uri else None
        items = probe.decode(fetch(first.uri, follow_options.timeout_s), init)
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


__all__ = ["FetchError", "FollowOptions", "HlsSource", "Playlist", "Segment", "SegmentData", "SegmentDecoder",
           "check_location", "fetch", "follow", "is_url", "load_playlist", "looks_like_hls", "parse_playlist"]
