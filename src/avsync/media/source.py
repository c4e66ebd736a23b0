"""Media sources: open a file (or, later, a stream), describe it, decode it once.

A :class:`MediaSource` is a context manager.  :meth:`MediaSource.decode` walks the
container once, in packet order, and yields :class:`VideoFrame` and
:class:`AudioChunk` objects already converted to what the analysis needs (small
grey frames at the native frame rate; mono float audio at a fixed rate).  Every
item carries its presentation time as an exact :class:`fractions.Fraction` taken
from the container, so streams that start at different times, edit lists,
re-muxed timestamp offsets and variable frame rates are all honoured.

Memory is bounded by what the consumer keeps: nothing here buffers more than
one decoded frame.
"""
from __future__ import annotations

import math
import os
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

from ..errors import CannotOpen, DecodeError, NoAudio, NoVideo

#: gaps in the audio timeline longer than this are filled with silence
AUDIO_GAP_S = 0.02


@dataclass(frozen=True)
class MediaInfo:
    """What the container says about a piece of media (no decoding needed)."""

    path: str
    duration_s: float
    video_fps: float | None
    audio_rate: int | None
    width: int | None
    height: int | None
    audio_channels: int | None = None
    rotation: int = 0
    video_start_s: float | None = None
    audio_start_s: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    format_name: str | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio_rate is not None

    @property
    def has_video(self) -> bool:
        return self.video_fps is not None

    def to_dict(self) -> dict:
        """The ``media`` object of the report."""
        return {k: v for k, v in asdict(self).items()}


@dataclass
class VideoFrame:
    """One decoded picture, grey and downscaled, at its presentation time."""

    pts: Fraction  # seconds, exact
    image: np.ndarray  # uint8, (H, W); (H, W, 3) BGR with DecodeOptions.colour

    @property
    def t(self) -> float:
        return float(self.pts)


@dataclass
class AudioChunk:
    """Consecutive mono samples; ``start`` is the time of the first one."""

    start: Fraction  # seconds, exact
    samples: np.ndarray  # float32, mono (int16 with DecodeOptions.audio_format "s16")
    rate: int

    @property
    def t(self) -> float:
        return float(self.start)


@dataclass(frozen=True)
class DecodeOptions:
    """What to decode and at which analysis rates."""

    audio_rate: int = 16000
    #: longest side of the grey analysis frames (smaller frames are kept as they are)
    max_side: int = 640
    video: bool = True
    audio: bool = True
    #: stop after this much media time (None: the whole file)
    max_duration_s: float | None = None
    #: skip the codec's in-loop deblocking filter (H.264/HEVC honour it): ~20 % less decode
    #: CPU; the blocking it leaves is averaged away when frames shrink to ``max_side``
    fast_video: bool = True
    #: colour pictures (uint8 (H, W, 3) in OpenCV's BGR order) instead of grey
    colour: bool = False
    #: audio sample format: "flt" (float32 in [-1, 1]) or "s16" (int16, as ffmpeg writes 16-bit PCM)
    audio_format: str = "flt"
    #: video decoder threads: None lets FFmpeg choose (frame/slice threads, about one per core);
    #: 1 decodes in the calling thread only (for many decodes side by side, e.g. batch workers)
    threads: int | None = None


class MediaSource(ABC):
    """An opened piece of media.  Use as a context manager."""

    path: str

    @property
    @abstractmethod
    def info(self) -> MediaInfo: ...

    @abstractmethod
    def decode(self, options: DecodeOptions = DecodeOptions()) -> Iterator[VideoFrame | AudioChunk]:
        """Yield decoded items in container order (audio and video interleaved)."""

    def close(self) -> None:  # pragma: no cover - trivial
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def require(self, audio: bool = True, video: bool = True) -> None:
        """Raise :class:`NoAudio` / :class:`NoVideo` when a needed stream is missing."""
        if video and not self.info.has_video:
            raise NoVideo("no video stream", self.path)
        if audio and not self.info.has_audio:
            raise NoAudio("no audio stream", self.path)


#: demuxers that accept almost any bytes (plain text shown as a picture, ...)
_NOT_MEDIA_FORMATS = {"tty": "text", "txt": "text"}


def _is_cover_art(stream) -> bool:
    try:
        return bool(stream.disposition & 0x400)  # AV_DISPOSITION_ATTACHED_PIC
    except Exception:  # pragma: no cover - very old PyAV
        return False


def _frame_rotation(frame) -> int:
    """Display rotation in degrees, as ffmpeg's autorotate applies it (clockwise)."""
    rot = getattr(frame, "rotation", 0) or 0
    return int(round(-rot)) % 360


def _rotate(img: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 90:
        return np.ascontiguousarray(np.rot90(img, k=-1))
    if rotation == 180:
        return np.ascontiguousarray(img[::-1, ::-1])
    if rotation == 270:
        return np.ascontiguousarray(np.rot90(img, k=1))
    return img


_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray",
                 "yuv410p", "yuv411p", "yuv440p"}


def _grey(frame, size: tuple[int, int]) -> np.ndarray:
    """The frame's luma at the analysis size.  For planar YUV the Y plane IS the grey
    picture: take it directly and shrink it with an area filter (several times faster
    than a full swscale conversion); other pixel formats go through swscale."""
    import cv2

    if frame.format.name in _LUMA_FORMATS:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        if (frame.width, frame.height) == size:
            return y.copy()
        return cv2.resize(y, size, interpolation=cv2.INTER_AREA)
    img = frame.reformat(width=size[0], height=size[1], format="gray").to_ndarray()
    return np.ascontiguousarray(img[:, : size[0]])


def _bgr(frame, size: tuple[int, int]) -> np.ndarray:
    """The frame in OpenCV's BGR order at ``size`` (swscale, bicubic when resizing)."""
    if (frame.width, frame.height) == size:
        return frame.to_ndarray(format="bgr24")
    return frame.reformat(width=size[0], height=size[1], format="bgr24", interpolation="BICUBIC").to_ndarray()


def analysis_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size of the grey analysis frames: aspect kept, longest side <= max_side, even."""
    scale = min(1.0, max_side / max(width, height))
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def open_container(path: str):
    """``av.open`` for reading with the project's one-line errors (:class:`CannotOpen`): no such
    file, a directory, an empty file, or bytes PyAV cannot read as media.  URLs go straight to PyAV."""
    import av  # local: keeps ``import avsync`` cheap

    path = os.fspath(path)
    if not str(path).startswith(("http://", "https://")):
        if not os.path.exists(path):
            raise CannotOpen("no such file", path)
        if os.path.isdir(path):
            raise CannotOpen("is a directory, not a media file", path)
        if os.path.getsize(path) == 0:
            raise CannotOpen("empty file (0 bytes)", path)
    try:
        return av.open(path, metadata_errors="ignore")
    except Exception as exc:  # av.error.* and OSError
        raise CannotOpen(f"cannot open as media ({_short(exc)})", path) from None


class FileSource(MediaSource):
    """A local file (or anything PyAV can open by name)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._container = open_container(self.path)
        fmt = getattr(self._container.format, "name", "") or ""
        if fmt in _NOT_MEDIA_FORMATS:
            self.close()
            raise CannotOpen(f"not a media file (read as {_NOT_MEDIA_FORMATS[fmt]})", self.path)
        try:
            self._info = self._probe()
        except Exception as exc:
            self.close()
            raise CannotOpen(f"cannot read the stream parameters ({_short(exc)})", self.path) from None

    # -- description -------------------------------------------------------------------
    def _video_stream(self):
        for s in self._container.streams.video:
            if not _is_cover_art(s) and s.codec_context is not None:
                return s
        return None

    def _audio_stream(self):
        for s in self._container.streams.audio:
            if s.codec_context is not None and (s.codec_context.sample_rate or 0) > 0:
                return s
        return None

    def _probe(self) -> MediaInfo:
        c = self._container
        v, a = self._video_stream(), self._audio_stream()
        fps = None
        width = height = None
        vstart = astart = None
        rotation = 0
        if v is not None:
            rate = v.average_rate or v.guessed_rate or v.base_rate
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
        import av

        try:
            with av.open(self.path, metadata_errors="ignore") as peek:
                stream = None
                for s in peek.streams.video:
                    if s.index == v.index:
                        stream = s
                if stream is None:
                    return 0
                for n, packet in enumerate(peek.demux(stream)):
                    if n > 64:
                        break
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError:
                        continue
                    for frame in frames:
                        return _frame_rotation(frame)
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
        import av

        c = self._container
        if c is None:
            raise CannotOpen("source is closed", self.path)
        v = self._video_stream() if options.video else None
        a = self._audio_stream() if options.audio else None
        streams = [s for s in (v, a) if s is not None]
        if not streams:
            return
        if v is not None:
            if options.threads is None or options.threads > 1:
                v.thread_type = "AUTO"
                if options.threads is not None:
                    v.codec_context.thread_count = options.threads
            else:
                v.codec_context.thread_count = 1
            if options.fast_video:
                v.codec_context.options = {**v.codec_context.options, "skip_loop_filter": "all"}
        sample_dtype = np.int16 if options.audio_format == "s16" else np.float32
        resampler = (
            av.AudioResampler(format="s16" if sample_dtype is np.int16 else "flt", layout="mono",
                              rate=options.audio_rate) if a is not None else None
        )
        size = None
        next_audio: Fraction | None = None  # exact time of the next resampled sample
        rate = options.audio_rate
        produced = False
        limit = options.max_duration_s
        first_t: float | None = None
        try:
            for packet in c.demux(streams):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue  # a damaged packet: skip it, keep going
                for frame in frames:
                    if frame.pts is None or frame.time_base is None:
                        continue
                    pts = Fraction(frame.pts) * Fraction(frame.time_base)
                    if first_t is None:
                        first_t = float(pts)
                    if limit is not None and float(pts) - first_t > limit:
                        return
                    if packet.stream is v:
                        rot = _frame_rotation(frame)
                        if size is None:
                            size = analysis_size(frame.width, frame.height, options.max_side)
                        img = _bgr(frame, size) if options.colour else _grey(frame, size)
                        produced = True
                        yield VideoFrame(pts=pts, image=_rotate(img, rot))
                    else:
                        if next_audio is None:
                            next_audio = pts
                        elif float(pts - next_audio) > AUDIO_GAP_S:
                            gap = int(round(float(pts - next_audio) * rate))
                            yield AudioChunk(next_audio, np.zeros(gap, sample_dtype), rate)
                            next_audio += Fraction(gap, rate)
                        frame.pts = None  # let the resampler count samples itself
                        for out in resampler.resample(frame):
                            data = out.to_ndarray().reshape(-1).astype(sample_dtype, copy=False)
                            if data.size:
                                produced = True
                                yield AudioChunk(next_audio, data, rate)
                                next_audio += Fraction(data.size, rate)
            if resampler is not None and next_audio is not None:
                for out in resampler.resample(None):
                    data = out.to_ndarray().reshape(-1).astype(sample_dtype, copy=False)
                    if data.size:
                        yield AudioChunk(next_audio, data, rate)
                        next_audio += Fraction(data.size, rate)
        except av.error.FFmpegError as exc:
            if not produced:
                raise DecodeError(f"cannot decode ({_short(exc)})", self.path) from None
            # truncated or corrupt tail: keep what was decoded


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # PyAV messages repeat the file name; keep the reason
    text = text.split(": '")[0]
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    return " ".join(text.split())[:200]


def open_media(path: str | os.PathLike) -> MediaSource:
    """Open a media file, or an HLS playlist (``.m3u8``: an http(s) URL or a local file).

    URLs other than http(s) are refused with :class:`avsync.errors.UsageError`."""
    p = os.fspath(path)
    if isinstance(p, str):
        from .hls import HlsSource, check_location, is_url, looks_like_hls

        if is_url(p):
            check_location(p)
        if looks_like_hls(p):
            return HlsSource(p)
    return FileSource(path)
