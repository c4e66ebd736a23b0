"""HLS playlist text -> :class:`Playlist` (media or master), parsed by the ``m3u8`` package; no I/O here.

URIs are resolved against the playlist's own location (:func:`.urls.resolve`: RFC 3986 joining
for URLs); whether they may be fetched is decided when they are fetched (:class:`.urls.UrlPolicy`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import CannotOpen
from .urls import resolve


@dataclass(frozen=True)
class Segment:
    uri: str  # absolute URL or path
    duration: float  # EXTINF, seconds
    seq: int  # media sequence number
    discontinuity: bool = False
    init_uri: str | None = None  # EXT-X-MAP (fragmented MP4)
    byterange: tuple[int, int] | None = None  # (offset, length) of EXT-X-BYTERANGE
    init_byterange: tuple[int, int] | None = None


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


def _range(spec: str | None, uri: str, ends: dict[str, int]) -> tuple[int, int] | None:
    """``length[@offset]`` -> (offset, length); without an offset, from where the previous range of the
    same resource ended."""
    if not spec:
        return None
    n, _, o = str(spec).partition("@")
    try:
        length = int(n)
        offset = int(o) if o else ends.get(uri, 0)
    except ValueError:
        raise CannotOpen(f"bad byte range {str(spec)[:40]!r}", None) from None
    if length <= 0 or offset < 0:
        raise CannotOpen(f"bad byte range {str(spec)[:40]!r}", None)
    ends[uri] = offset + length
    return offset, length


def parse_playlist(text: str, uri: str) -> Playlist:
    """Parse an HLS playlist (media or master).  Raises :class:`CannotOpen` for anything else."""
    import m3u8

    if not text.lstrip("\ufeff \t\r\n").startswith("#EXTM3U"):
        raise CannotOpen("not an HLS playlist (no #EXTM3U header)", uri)
    try:
        pl = m3u8.loads(text.lstrip("\ufeff \t\r\n"))
    except Exception as exc:
        raise CannotOpen(f"not a valid HLS playlist ({' '.join(str(exc).split())[:120]})", uri) from None
    if pl.is_variant:
        variants = []
        for v in pl.playlists:
            bw = getattr(v.stream_info, "bandwidth", None) or 0
            variants.append((int(bw), resolve(uri, v.uri)))
        separate = any((m.type or "").upper() == "AUDIO" and m.uri for m in pl.media)
        return Playlist(uri, [], float(pl.target_duration or 0), int(pl.media_sequence or 0), bool(pl.is_endlist),
                        variants, separate)
    target = float(pl.target_duration or 0)
    seq0 = int(pl.media_sequence or 0)
    segs: list[Segment] = []
    ends: dict[str, int] = {}
    for i, s in enumerate(pl.segments):
        if not s.uri:
            continue
        key = getattr(s, "key", None)
        if key is not None and (key.method or "NONE").upper() != "NONE":
            raise CannotOpen("encrypted HLS streams are not supported", uri)
        init = s.init_section
        init_uri = resolve(uri, init.uri) if init is not None and init.uri else None
        init_range = _range(getattr(init, "byterange", None), init_uri or "", {}) if init_uri else None
        seg_uri = resolve(uri, s.uri)
        dur = float(s.duration) if s.duration is not None else target
        segs.append(Segment(seg_uri, dur, seq0 + i, bool(s.discontinuity), init_uri,
                            _range(s.byterange, seg_uri, ends), init_range))
    return Playlist(uri, segs, target, seq0, bool(pl.is_endlist), [], False)
