"""Re-time the streams of a file without re-encoding (the ``avsync fix`` back end).

:func:`shift_streams` copies every audio and video packet of ``src`` into ``dst``
and adds a delay to the timestamps of one side: a positive delay moves the audio
later, a negative one moves the video later instead, so no timestamp is ever
made negative.  The container format follows ``dst``'s extension.

Containers without per-packet timestamps for audio (AVI) cannot carry an audio
start delay; for PCM audio the delay is written as leading silence (exact, no
re-encoding of the content); for other audio codecs in AVI a :class:`MediaError`
explains that another container (``.mkv``, ``.mov``, ``.mp4``) is needed.

:func:`fix_file` turns a measured offset (contract sign: > 0, the audio leads)
into the delay that cancels it and writes the result atomically: to a temporary
name in the destination folder first, then :func:`os.replace`.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction

from ..errors import AvsyncError, MediaError
from .base import atomic_output, is_cover_art, open_container, short_reason

#: containers whose audio timing is implied by the byte count, not by timestamps
_NO_AUDIO_DELAY_FORMATS = {"avi"}

#: extension -> libavformat muxer name, for the common ones guessing may get wrong
_FORMATS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".mka": "matroska",
    ".webm": "webm", ".avi": "avi", ".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts",
    ".mpg": "mpeg", ".mpeg": "mpeg", ".flv": "flv", ".3gp": "3gp", ".nut": "nut",
}


def format_for(dst: str) -> str | None:
    """The libavformat muxer for ``dst``'s extension (None: let PyAV guess)."""
    ext = os.path.splitext(dst)[1].lower()
    if not ext:
        return None
    return _FORMATS.get(ext)


def _silence_packets(stream, delay_s: float):
    """Leading PCM silence for ``stream`` lasting ``delay_s`` (yields (bytes, n_samples))."""
    ctx = stream.codec_context
    name = ctx.name
    if not name.startswith("pcm_"):
        return None
    rate = ctx.sample_rate
    channels = ctx.channels or 1
    bits = {"u8": 8, "s8": 8, "s16le": 16, "s16be": 16, "s24le": 24, "s32le": 32, "f32le": 32,
            "f64le": 64}.get(name[4:])
    if not bits or not rate:
        return None
    fill = b"\x80" if name == "pcm_u8" else b"\x00"
    n = int(round(delay_s * rate))
    out = []
    step = max(1, rate // 25)
    done = 0
    while done < n:
        k = min(step, n - done)
        out.append((fill * (k * channels * bits // 8), k))
        done += k
    return out


def shift_streams(src: str | os.PathLike, dst: str | os.PathLike, audio_delay_s: float) -> None:
    """Copy ``src`` to ``dst`` (no re-encoding) with the audio delayed by ``audio_delay_s``.

    Negative values delay the video by ``-audio_delay_s`` instead.  Every audio and
    video stream is copied; the container is chosen by ``dst``'s extension.
    Raises :class:`CannotOpen` / :class:`MediaError` with a one-line reason."""
    import av

    src, dst = os.fspath(src), os.fspath(dst)
    if not math.isfinite(audio_delay_s):
        raise MediaError("the delay is not a finite number", src)
    inp = open_container(src)
    fmt = format_for(dst)
    try:
        streams = [s for s in inp.streams if s.type in ("video", "audio") and not is_cover_art(s)]
        if not any(s.type == "video" for s in streams) or not any(s.type == "audio" for s in streams):
            raise MediaError("needs both an audio and a video stream to re-time", src)
        try:
            out = av.open(dst, mode="w", format=fmt)
        except Exception as exc:
            raise MediaError(f"cannot write this container ({short_reason(exc)})", dst) from None
        try:
            _copy(inp, out, streams, audio_delay_s, src, dst)
        finally:
            try:
                out.close()
            except Exception:
                pass
    finally:
        inp.close()


def _copy(inp, out, streams, audio_delay_s: float, src: str, dst: str) -> None:
    import av

    delayed_type = "audio" if audio_delay_s > 0 else "video"
    delay = abs(audio_delay_s)
    fmt_name = out.format.name
    omap = {}
    for s in streams:
        try:
            omap[s.index] = out.add_stream_from_template(s)
        except Exception as exc:
            raise MediaError(f"cannot copy {s.type} stream {s.index} ({s.codec_context.name}) into "
                             f"{fmt_name} ({short_reason(exc)})", dst) from None
    pad = {}  # stream index -> list of silent payloads (AVI + PCM audio delay)
    if delayed_type == "audio" and delay > 0 and fmt_name in _NO_AUDIO_DELAY_FORMATS:
        for s in streams:
            if s.type == "audio":
                p = _silence_packets(s, delay)
                if p is None:
                    raise MediaError(f"{fmt_name} cannot delay {s.codec_context.name} audio without "
                                     "re-encoding; write .mkv, .mov or .mp4 instead", dst)
                pad[s.index] = p
    shifts = {}
    for s in streams:
        if s.type == delayed_type and delay > 0 and s.index not in pad:
            tb = s.time_base
            shifts[s.index] = int(round(Fraction(delay).limit_denominator(1_000_000) / tb)) if tb else 0
        else:
            shifts[s.index] = 0
    first_pts: dict[int, int] = {}
    try:
        for packet in inp.demux(streams):
            if packet.size == 0 and packet.pts is None and packet.dts is None:
                continue  # a flush packet
            i = packet.stream.index
            ost = omap[i]
            if i in pad:
                # write the silence in front of the first audio packet, in its time base
                tb = packet.time_base
                start = packet.pts if packet.pts is not None else (packet.dts or 0)
                t = start
                rate = packet.stream.codec_context.sample_rate
                for payload, n in pad.pop(i):
                    sp = av.Packet(payload)
                    sp.pts = sp.dts = t
                    sp.time_base = tb
                    sp.duration = int(round(Fraction(n, rate) / tb))
                    sp.stream = ost
                    out.mux(sp)
                    t += sp.duration
                shifts[i] = t - start
            k = shifts[i]
            if k:
                if packet.pts is not None:
                    packet.pts += k
                if packet.dts is not None:
                    packet.dts += k
            if packet.pts is not None:
                first_pts.setdefault(i, packet.pts)
            packet.stream = ost
            out.mux(packet)
    except MediaError:
        raise
    except av.error.FFmpegError as exc:
        raise MediaError(f"remux failed ({short_reason(exc)})", dst) from None
    if not first_pts:
        raise MediaError("no packets to copy", src)


def shift_file(src: str | os.PathLike, dst: str | os.PathLike, audio_delay_s: float) -> str:
    """:func:`shift_streams` into a temporary file next to ``dst``, then rename it into place."""
    src, dst = os.fspath(src), os.fspath(dst)
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise MediaError("output folder does not exist", dst)
    if os.path.abspath(src) == os.path.abspath(dst):
        raise MediaError("output must differ from the input", dst)
    root, ext = os.path.splitext(os.path.basename(dst))
    tmp = None
    try:
        with atomic_output(dst, prefix=f".{root}.", suffix=f".partial{ext}") as tmp:
            shift_streams(src, tmp, audio_delay_s)
    except AvsyncError as exc:
        if tmp is not None and exc.path == tmp:
            exc.path = dst  # name the file the user asked for, not the temporary one
        raise
    return dst


def fix_file(src: str | os.PathLike, dst: str | os.PathLike, offset_ms: float) -> str:
    """Write a corrected copy of ``src``: ``offset_ms`` > 0 (audio leads) delays the audio by
    that much; ``offset_ms`` < 0 (audio lags) delays the video.  Returns ``dst``."""
    if offset_ms is None or not math.isfinite(offset_ms):
        raise MediaError("no offset to correct", os.fspath(src))
    return shift_file(src, dst, offset_ms / 1000.0)


def copy_packets(inp, out, omap: dict, offsets: dict | None = None, need_pts: bool = False) -> None:
    """Mux the packets of ``inp``'s streams in ``omap`` (input index -> output stream) into ``out``
    unchanged (no re-encoding), their timestamps moved by ``offsets[index]`` (in the stream's
    time base).  Packets without a dts (with ``need_pts``, or without a pts) are dropped."""
    offsets = offsets or {}
    for p in inp.demux([s for s in inp.streams if s.index in omap]):
        if p.dts is None or (need_pts and p.pts is None):
            continue
        k = offsets.get(p.stream.index, 0)
        if k:
            p.pts += k
            p.dts += k
        p.stream = omap[p.stream.index]
        out.mux(p)


def packet_span(src: str | os.PathLike) -> float:
    """End of the last audio or video packet (pts + duration) in seconds, from a demux (no decoding)."""
    dur = 0.0
    with open_container(os.fspath(src)) as probe:
        for p in probe.demux([s for s in probe.streams if s.type in ("audio", "video")]):
            if p.pts is not None:
                dur = max(dur, float((p.pts + (p.duration or 0)) * p.time_base))
    return dur


def loop_file(src: str | os.PathLike, dst: str | os.PathLike, min_seconds: float) -> float:
    """Concatenate ``src`` with itself into ``dst`` (Matroska; timestamps re-based, no re-encode)
    until it lasts ``min_seconds``; returns the resulting duration."""
    import av

    src, dst = os.fspath(src), os.fspath(dst)
    dur = packet_span(src)
    if not dur:
        raise MediaError("unknown duration", src)
    loops = max(1, int(-(-min_seconds // dur)))
    with open_container(src) as first:
        streams = [s for s in first.streams if s.type in ("audio", "video")]
        out = av.open(dst, "w", format="matroska")
        omap = {s.index: out.add_stream_from_template(s) for s in streams}
        tbs = {s.index: s.time_base for s in streams}
    last: dict[int, int] = {}  # stream index -> the last dts muxed (input time base)
    try:
        for k in range(loops):
            with open_container(src) as inp:
                shift = {i: int(round(k * dur / tb)) for i, tb in tbs.items()}
                for p in inp.demux([s for s in inp.streams if s.index in omap]):
                    if p.dts is None or p.pts is None:
                        continue
                    i = p.stream.index
                    p.pts += shift[i]
                    p.dts += shift[i]
                    # a stream that starts before 0 (AAC priming: -1024 samples) overlaps the
                    # previous copy's end: its packets at or before the last dts are left out
                    if i in last and p.dts <= last[i]:
                        continue
                    last[i] = p.dts
                    p.stream = omap[i]
                    out.mux(p)
    finally:
        out.close()
    return loops * dur
