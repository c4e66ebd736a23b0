"""The media layer's vocabulary: what a source is, what decoding yields, and the small PyAV helpers
every reader shares.

A :class:`MediaSource` is a context manager.  :meth:`MediaSource.decode` walks the media once, in
container order, and yields :class:`VideoFrame` and :class:`AudioChunk` objects already converted
to what the analysis needs (small grey frames at the native frame rate; mono float audio at a fixed
rate, by default).  Every item carries its presentation time as an exact :class:`fractions.Fraction`
taken from the container, so streams that start at different times, edit lists, re-muxed timestamp
offsets and variable frame rates are all honoured.

Memory is bounded by what the consumer keeps: decoding buffers no more than one decoded frame.
"""
from __future__ import annotations

import functools
import os
import re
import stat
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

from ..errors import CannotOpen, NoAudio, NoVideo

#: gaps in the audio timeline longer than this are filled with silence
AUDIO_GAP_S = 0.02
#: a stream's timestamps that jump ahead by more than this (or back by more than DISCONTINUITY_BACK_S)
#: are a discontinuity, never a gap to fill: memory stays bounded whatever the timestamps say
DISCONTINUITY_S = 60.0
DISCONTINUITY_BACK_S = 1.0


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
    #: the audio track measured (its number among the audio streams) and how many there are
    audio_stream: int | None = None
    audio_tracks: int | None = None
    #: the longest duration the container or its streams' headers declare (a frame count at the
    #: frame rate counts too: an AVI's header keeps it when the file is cut short); None: unknown
    declared_duration_s: float | None = None

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
    """One decoded picture at its presentation time (grey and downscaled unless asked otherwise)."""

    pts: Fraction  # seconds, exact
    image: np.ndarray  # uint8, (H, W); (H, W, 3) with DecodeOptions.colour
    #: the same picture, grey, at each of DecodeOptions.extra_sides
    extra: tuple = ()

    @property
    def t(self) -> float:
        return float(self.pts)


@dataclass
class AudioChunk:
    """Consecutive samples; ``start`` is the time of the first one."""

    start: Fraction  # seconds, exact
    #: float32 (int16 with DecodeOptions.audio_format "s16"); (n,) mono, (n, channels) otherwise
    samples: np.ndarray
    rate: int

    @property
    def t(self) -> float:
        return float(self.start)


@dataclass(frozen=True)
class DecodeOptions:
    """What to decode and at which analysis rates."""

    #: audio sample rate (None: the stream's own)
    audio_rate: int | None = 16000
    #: longest side of the analysis pictures (smaller pictures are kept as they are)
    max_side: int = 640
    video: bool = True
    audio: bool = True
    #: stop after this much media time (None: the whole file)
    max_duration_s: float | None = None
    #: skip the codec's in-loop deblocking filter (H.264/HEVC honour it): ~20 % less decode
    #: CPU; the blocking it leaves is averaged away when frames shrink to ``max_side``
    fast_video: bool = True
    #: False: grey pictures (the luma plane, area-filtered); True or "bgr": colour in OpenCV's BGR
    #: order (bicubic when scaled); "rgb": colour in RGB order (swscale's default filter); "jpeg":
    #: BGR after the SyncNet reference's JPEG round trip (ffmpeg's MJPEG encoder at its default rate
    #: control, read back as OpenCV does: :mod:`avsync.media.jpeg`), every picture of the stream in order
    colour: bool | str = False
    #: audio sample format: "flt" (float32 in [-1, 1]), "fltp" (the same, planar before conversion)
    #: or "s16" (int16, as ffmpeg writes 16-bit PCM)
    audio_format: str = "flt"
    #: audio channel layout: "mono", "stereo", ...; None: mono for a one-channel stream, else stereo
    audio_layout: str | None = "mono"
    #: video decoder threads: None lets FFmpeg choose (frame/slice threads, about one per core);
    #: 1 decodes in the calling thread only (for many decodes side by side, e.g. batch workers)
    threads: int | None = None
    #: turn pictures upright as the stream's display matrix says
    rotate: bool = True
    #: fill gaps in the audio timeline (longer than AUDIO_GAP_S) with silence
    fill_gaps: bool = True
    #: only pictures with ``t0 <= t < t1`` (container seconds, 1 us slack; t1 None: to the end)
    video_span: tuple[float, float | None] | None = None
    #: grey copies of every picture with these longest sides (VideoFrame.extra), from the same decode
    extra_sides: tuple[int, ...] = ()


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


# -- PyAV helpers --------------------------------------------------------------------------------
def short_reason(exc: BaseException) -> str:
    """A PyAV / OS error as a short one-line reason (without the file name PyAV repeats)."""
    text = str(exc).strip() or type(exc).__name__
    text = text.split(": '")[0]
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    return " ".join(text.split())[:200]


def open_container(path: str):
    """``av.open`` for reading with the project's one-line errors (:class:`CannotOpen`): no such
    file, a directory, an empty file, or bytes PyAV cannot read as media.  URLs go straight to PyAV."""
    import av  # local: keeps ``import avsync`` cheap

    path = os.fspath(path)
    if not str(path).startswith(("http://", "https://")):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise CannotOpen("no such file", path) from None
        except OSError as exc:
            raise CannotOpen(f"cannot open ({exc.strerror or exc})", path) from None
        if stat.S_ISDIR(st.st_mode):
            raise CannotOpen("is a directory, not a media file", path)
        if not stat.S_ISREG(st.st_mode):  # opening a named pipe would wait for a writer forever
            kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "special")
            raise CannotOpen(f"not a regular file ({kind})", path)
        if st.st_size == 0:
            raise CannotOpen("empty file (0 bytes)", path)
        _refuse_indirect(path)
        options = {"format_whitelist": _direct_formats()}
    else:
        options = {}
    try:
        return av.open(path, metadata_errors="ignore", container_options=options)
    except Exception as exc:  # av.error.* and OSError
        raise CannotOpen(f"cannot open as media ({short_reason(exc)})", path) from None


#: demuxers that read other resources than the file itself (playlists, concat lists, network
#: sessions, capture devices, filter graphs, file-name patterns): never used for a local file, so a
#: file that holds a playlist cannot make FFmpeg fetch URLs or read other local files
INDIRECT_FORMATS = frozenset({
    "hls", "applehttp", "dash", "concat", "imf", "sdp", "rtp", "rtsp", "sap", "image2", "lavfi", "alsa", "oss",
    "fbdev", "kmsgrab", "x11grab", "video4linux2", "v4l2", "webm_dash_manifest", "avfoundation", "dshow",
    "gdigrab", "jack", "pulse", "openal", "android_camera", "decklink", "bluray", "libcdio", "dvdvideo", "srt_live",
})


@functools.lru_cache(maxsize=1)
def _direct_formats() -> str:
    """FFmpeg's ``format_whitelist`` for local files: every demuxer but :data:`INDIRECT_FORMATS`."""
    import av

    names: set[str] = set()
    for f in av.formats_available:
        try:
            fmt = av.format.ContainerFormat(f, "r")
        except Exception:
            continue
        names.update(n for n in (fmt.name or "").split(",") if n)
    return ",".join(sorted(names - INDIRECT_FORMATS))


_TEXT_HEADS = ((b"#EXTM3U", "an HLS playlist, not a media file"),
               (b"ffconcat version", "a concat list, not a media file"))


def _refuse_indirect(path: str) -> None:
    """A local file that is a playlist or a list of other files is not media (nothing it names is read)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return  # av.open reports it
    head = head.lstrip(b"\xef\xbb\xbf").lstrip()
    for magic, reason in _TEXT_HEADS:
        if head.startswith(magic):
            raise CannotOpen(reason, path)


def _umask() -> int:
    """The process's umask, read without changing it where /proc tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def output_mode(dst: str) -> int:
    """The permission bits a file written to ``dst`` should get: those of the file it replaces, or
    what ``open()`` would give a new file (0666 less the umask); mkstemp's 0600 is never kept."""
    try:
        return os.stat(dst).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


@contextmanager
def atomic_output(dst: str, prefix: str = ".tmp-", suffix: str = ""):
    """A temporary path in ``dst``'s folder to write to; renamed to ``dst`` when the block ends
    normally, removed when it raises, so a file under its final name is always whole.  The file
    gets the mode a plain ``open()`` would give it (:func:`output_mode`)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=os.path.dirname(os.path.abspath(dst)))
    try:
        os.fchmod(fd, output_mode(dst))
    finally:
        os.close(fd)
    try:
        yield tmp
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def is_cover_art(stream) -> bool:
    """An attached picture (album art), not a video."""
    try:
        return bool(stream.disposition & 0x400)  # AV_DISPOSITION_ATTACHED_PIC
    except Exception:  # pragma: no cover - very old PyAV
        return False


def video_stream(container):
    """The first real video stream (cover art skipped), or None."""
    for s in container.streams.video:
        if not is_cover_art(s) and s.codec_context is not None:
            return s
    return None


def audio_stream(container, index: int | None = None):
    """The first audio stream with a sample rate, or None; ``index``: the audio track of that
    number (0 = the first audio stream of the file) or :class:`CannotOpen` when there is none."""
    if index is not None:
        tracks = list(container.streams.audio)
        if not 0 <= index < len(tracks):
            raise CannotOpen(f"no audio track {index} (the file has {len(tracks)}: "
                             f"{', '.join(str(i) for i in range(len(tracks))) or 'none'})")
        return tracks[index]
    for s in container.streams.audio:
        if s.codec_context is not None and (s.codec_context.sample_rate or 0) > 0:
            return s
    return None


def audio_tracks(container) -> list[dict]:
    """Every audio stream: {index (among the audio tracks), codec, channels, rate, language}."""
    out = []
    for i, s in enumerate(container.streams.audio):
        ctx = s.codec_context
        out.append({"index": i, "codec": ctx.name if ctx else None, "channels": ctx.channels if ctx else None,
                    "rate": ctx.sample_rate if ctx else None,
                    "language": (s.metadata or {}).get("language")})
    return out


def frame_rate(stream) -> Fraction | None:
    """The stream's nominal frame rate as the container states it (average, guessed or base)."""
    return stream.average_rate or stream.guessed_rate or stream.base_rate


def frame_rotation(frame) -> int:
    """Display rotation in degrees, as ffmpeg's autorotate applies it (clockwise)."""
    rot = getattr(frame, "rotation", 0) or 0
    return int(round(-rot)) % 360


def rotate(img: np.ndarray, rotation: int) -> np.ndarray:
    """``img`` turned clockwise by ``rotation`` degrees (a multiple of 90)."""
    if rotation == 90:
        return np.ascontiguousarray(np.rot90(img, k=-1))
    if rotation == 180:
        return np.ascontiguousarray(img[::-1, ::-1])
    if rotation == 270:
        return np.ascontiguousarray(np.rot90(img, k=1))
    return img


def analysis_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size of the analysis pictures: aspect kept, longest side <= max_side, even."""
    scale = min(1.0, max_side / max(width, height))
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray",
                 "yuv410p", "yuv411p", "yuv440p"}


def grey_image(frame, size: tuple[int, int]) -> np.ndarray:
    """The frame's luma at ``size``.  For planar YUV the Y plane IS the grey picture: take it
    directly and shrink it with an area filter (several times faster than a full swscale
    conversion); other pixel formats go through swscale."""
    import cv2

    if frame.format.name in _LUMA_FORMATS:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        if (frame.width, frame.height) == size:
            return y.copy()
        return cv2.resize(y, size, interpolation=cv2.INTER_AREA)
    img = frame.reformat(width=size[0], height=size[1], format="gray").to_ndarray()
    return np.ascontiguousarray(img[:, : size[0]])


def bgr_image(frame, size: tuple[int, int]) -> np.ndarray:
    """The frame in OpenCV's BGR order at ``size`` (swscale, bicubic when resizing)."""
    if (frame.width, frame.height) == size:
        return frame.to_ndarray(format="bgr24")
    return frame.reformat(width=size[0], height=size[1], format="bgr24", interpolation="BICUBIC").to_ndarray()


def rgb_image(frame, size: tuple[int, int]) -> np.ndarray:
    """The frame in RGB order at ``size`` (swscale with its default filter)."""
    return frame.to_ndarray(width=size[0], height=size[1], format="rgb24")
