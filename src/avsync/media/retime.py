"""Re-time one audio track against the picture: per-segment shifts and speed (conform) changes.

:func:`shift_file` (:mod:`.remux`) moves a whole stream, which cannot correct an offset that
changes mid-file.  Here the chosen audio track is decoded, cut and shifted piece by piece (or
resampled along a straight line, for a conform drift) and re-encoded; the picture and every
other track are copied packet for packet (no re-encoding).  PyAV only: no ffmpeg command line.

The offsets use the contract's sign (> 0: the audio leads, so it is delayed): once re-timed,
the audio heard at picture time ``t`` is the input's audio at ``t - offset(t)``.  Where that
lies before the input's audio starts or after it ends the output is silent.  A short
cross-fade at every piece boundary keeps the cut from clicking.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import AvsyncError, MediaError
from .base import atomic_output, is_cover_art, open_container, short_reason

#: cross-fade at each boundary between pieces (seconds)
CROSSFADE_S = 0.01

#: audio codecs each container takes; another input codec is re-encoded as the first one
_CONTAINER_AUDIO = {
    "mp4": ("aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"),
    "mov": ("aac", "pcm_s16le", "pcm_s24le", "alac", "mp3", "ac3"),
    "avi": ("pcm_s16le", "mp3", "ac3", "mp2"),
    "mpegts": ("aac", "mp2", "mp3", "ac3", "eac3"),
    "webm": ("opus", "vorbis"),
    "mpeg": ("mp2", "mp3", "ac3"),
}
#: encoders that cannot be used for our own encoding (decode-only or fixed-rate ones)
_FALLBACK = {"matroska": "flac", "mp4": "aac", "mov": "aac", "avi": "pcm_s16le", "mpegts": "aac",
             "webm": "opus", "mpeg": "mp2"}


@dataclass(frozen=True)
class Piece:
    """From ``start_s`` (picture time) on, until the next piece: cancel ``offset_ms`` plus
    ``slope`` ms per second since ``start_s`` (a conform drift)."""

    start_s: float
    offset_ms: float
    slope: float = 0.0


def _layout_name(ctx) -> str:
    """A channel layout encoders accept ('1 channels', an unspecified layout, becomes 'mono')."""
    n = ctx.channels or 1
    name = ctx.layout.name if ctx.layout else ""
    if not name or "channels" in name:
        return {1: "mono", 2: "stereo", 6: "5.1"}.get(n, name or "mono")
    return name


def _decode_audio(inp, stream) -> tuple[np.ndarray, int, float]:
    """The whole track as float32 (channels, samples), its rate and its start time (s)."""
    import av

    rate = stream.codec_context.sample_rate
    layout = _layout_name(stream.codec_context)
    res = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    chunks, t0 = [], None
    try:
        for packet in inp.demux(stream):
            for frame in packet.decode():
                if t0 is None and frame.pts is not None and frame.time_base:
                    t0 = float(frame.pts * frame.time_base)
                for f in res.resample(frame):
                    chunks.append(f.to_ndarray())
        for f in res.resample(None):
            chunks.append(f.to_ndarray())
    except av.error.FFmpegError as exc:
        if not chunks:
            raise MediaError(f"cannot decode the audio ({short_reason(exc)})") from None
    if not chunks:
        raise MediaError("the audio track holds no samples")
    return np.concatenate(chunks, axis=1).astype(np.float32), rate, (t0 or 0.0)


def render(samples: np.ndarray, rate: int, t0: float, pieces: list[Piece],
           crossfade_s: float = CROSSFADE_S) -> np.ndarray:
    """The re-timed track: ``samples`` (channels, n) starting at ``t0`` s, pieces applied."""
    ch, n = samples.shape
    out = np.zeros_like(samples)
    t = t0 + np.arange(n) / rate
    starts = [p.start_s for p in pieces]
    bounds = np.searchsorted(t, starts[1:]) if len(pieces) > 1 else np.array([], int)
    edges = [0, *[int(b) for b in bounds], n]
    for p, a, b in zip(pieces, edges[:-1], edges[1:]):
        if b <= a:
            continue
        if p.slope == 0.0:
            shift = int(round(p.offset_ms / 1000.0 * rate))  # whole samples: an exact copy
            src = np.arange(a, b) - shift
            ok = (src >= 0) & (src < n)
            out[:, a:b][:, ok] = samples[:, src[ok]]
        else:
            tt = t[a:b]
            pos = (tt - (p.offset_ms + p.slope * (tt - p.start_s)) / 1000.0 - t0) * rate
            xp = np.arange(n)
            for c in range(ch):
                out[c, a:b] = np.interp(pos, xp, samples[c], left=0.0, right=0.0)
    k = int(crossfade_s * rate)
    if k > 1:
        ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
        for b in edges[1:-1]:
            lo, hi = max(0, b - k), min(n, b + k)
            out[:, lo:b] *= ramp[::-1][: b - lo]
            out[:, b:hi] *= ramp[: hi - b]
    return out


def _encode(ostream, data: np.ndarray, rate: int, layout: str, t0: float) -> list:
    """Encoded packets of ``data`` (channels, n) for ``ostream``, timestamps from ``t0``."""
    import av

    packets = []
    step = ostream.codec_context.frame_size or 1024
    start = int(round(t0 * rate))
    for i in range(0, data.shape[1], step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, i:i + step]), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start + i
        frame.time_base = Fraction(1, rate)
        packets.extend(ostream.encode(frame))
    packets.extend(ostream.encode(None))
    return packets


def retime_streams(src: str, dst: str, pieces: list[Piece], audio_index: int | None = None) -> None:
    """Write ``dst``: ``src``'s picture and other tracks copied, the audio track ``audio_index``
    (its number among the audio tracks; None: the first) re-timed by ``pieces`` and re-encoded."""
    import av

    if not pieces:
        raise MediaError("nothing to re-time", src)
    for p in pieces:
        if not all(math.isfinite(x) for x in (p.start_s, p.offset_ms, p.slope)):
            raise MediaError("a re-timing piece is not a finite number", src)
    pieces = sorted(pieces, key=lambda p: p.start_s)
    inp = open_container(src)
    try:
        audio = [s for s in inp.streams.audio]
        video = [s for s in inp.streams.video if not is_cover_art(s)]
        if not video or not audio:
            raise MediaError("needs both an audio and a video stream to re-time", src)
        k = 0 if audio_index is None else audio_index
        if not 0 <= k < len(audio):
            raise MediaError(f"no audio track {k} (the file has {len(audio)})", src)
        target = audio[k]
        samples, rate, t0 = _decode_audio(inp, target)
        layout = _layout_name(target.codec_context)
        fixed = render(samples, rate, t0, pieces)
    except MediaError as exc:
        inp.close()
        if exc.path is None:
            exc.path = src
        raise
    except Exception:
        inp.close()
        raise
    try:
        from .remux import format_for

        fmt = format_for(dst)
        try:
            out = av.open(dst, mode="w", format=fmt)
        except Exception as exc:
            raise MediaError(f"cannot write this container ({short_reason(exc)})", dst) from None
        try:
            _write(inp, out, video, audio, target, fixed, rate, layout, t0, dst)
        finally:
            try:
                out.close()
            except Exception:
                pass
    finally:
        inp.close()


def _audio_codec(fmt_name: str, codec: str) -> str:
    allowed = next((v for k, v in _CONTAINER_AUDIO.items() if k in fmt_name.split(",")), None)
    if allowed is None or codec in allowed:
        return codec
    return _FALLBACK.get(fmt_name.split(",")[0], allowed[0])


def _write(inp, out, video, audio, target, fixed, rate, layout, t0, dst) -> None:
    import av

    fmt_name = out.format.name
    omap = {}
    for s in video + [a for a in audio if a is not target]:
        try:
            omap[s.index] = out.add_stream_from_template(s)
        except Exception as exc:
            raise MediaError(f"cannot copy {s.type} stream {s.index} into {fmt_name} ({short_reason(exc)})",
                             dst) from None
    codec = _audio_codec(fmt_name, target.codec_context.name)
    try:
        ost = out.add_stream(codec, rate=rate)
    except Exception:
        codec = _FALLBACK.get(fmt_name.split(",")[0], "aac")
        ost = out.add_stream(codec, rate=rate)
    ost.codec_context.layout = layout
    if target.codec_context.bit_rate and codec == target.codec_context.name:
        ost.codec_context.bit_rate = target.codec_context.bit_rate
    ost.time_base = Fraction(1, rate)
    try:
        packets = _encode(ost, fixed, rate, layout, t0)
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot encode the audio as {codec} ({short_reason(exc)})", dst) from None
    for p in packets:
        p.stream = ost
    queue = list(packets)
    qi = 0
    inp.seek(0)
    try:
        for packet in inp.demux(list(omap and [inp.streams[i] for i in omap])):
            if packet.dts is None and packet.pts is None:
                continue
            tp = packet.dts if packet.dts is not None else packet.pts
            t = float(tp * packet.time_base)
            while qi < len(queue) and queue[qi].pts is not None and float(queue[qi].pts * queue[qi].time_base) <= t:
                out.mux(queue[qi])
                qi += 1
            packet.stream = omap[packet.stream.index]
            out.mux(packet)
        while qi < len(queue):
            out.mux(queue[qi])
            qi += 1
    except av.error.FFmpegError as exc:
        raise MediaError(f"remux failed ({short_reason(exc)})", dst) from None


def retime_file(src: str | os.PathLike, dst: str | os.PathLike, pieces: list[Piece],
                audio_index: int | None = None) -> str:
    """:func:`retime_streams` into a temporary file next to ``dst``, renamed into place."""
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
            retime_streams(src, tmp, pieces, audio_index)
    except AvsyncError as exc:
        if tmp is not None and exc.path == tmp:
            exc.path = dst
        raise
    return dst


def pieces_from_segments(segments) -> list[Piece]:
    """One constant piece per segment (objects with start_s, offset_ms); the first from time 0."""
    segs = sorted(segments, key=lambda g: g.start_s)
    return [Piece(0.0 if i == 0 else float(g.start_s), float(g.offset_ms)) for i, g in enumerate(segs)]


def pieces_from_drift(intercept_ms: float, ms_per_min: float) -> list[Piece]:
    """One straight-line piece: cancel ``intercept_ms + ms_per_min / 60 * t``."""
    return [Piece(0.0, float(intercept_ms), float(ms_per_min) / 60.0)]
