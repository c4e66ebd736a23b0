"""HLS playlist text -> :class:`Playlist` (media or master); no I/O here."""
from __future__ import annotations

import re
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
