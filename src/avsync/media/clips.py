"""Read a stretch of a clip into memory and write a new clip from arrays (PyAV only).

Used by the dataset tools: trimming AVE events and rendering synthetic samples.
Everything is re-encoded (H.264 + AAC in MP4), which is exact to the frame and the
sample: the output starts at the requested time, whatever the key-frame layout of
the source.  Outputs go to a temporary name in the destination folder and are
renamed when complete, so a file that exists under its final name is whole.

The encode loops (:func:`encode_video`, :func:`encode_audio`) also serve the synthetic
clips (:mod:`avsync.media.synth`) and the shift benchmark.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import MediaError, NoVideo
from .base import AudioChunk, DecodeOptions, atomic_output, audio_stream, open_container, video_stream
from .decode import Decoder, configure_video

#: longest side of the pictures written by the dataset tools (larger sources are scaled down)
MAX_SIDE = 640
#: time base of the written video stream (fine enough for any frame timing)
VIDEO_TB = Fraction(1, 90000)


@dataclass
class Clip:
    """Decoded pictures of [t0, t1) and the WHOLE audio track of a source."""

    path: str
    t0: float
    t1: float
    frames: list  # RGB uint8 (H, W, 3)
    frame_times: np.ndarray  # seconds, container time
    fps: Fraction
    audio: np.ndarray | None  # float32 (channels, n), whole track
    audio_rate: int
    audio_start: float  # container time of audio[:, 0]
    duration_s: float

    def audio_between(self, a0: float, a1: float) -> np.ndarray:
        """Audio of container times [a0, a1), zeros where the track has none."""
        n = int(round((a1 - a0) * self.audio_rate))
        ch = self.audio.shape[0] if self.audio is not None else 1
        out = np.zeros((ch, max(n, 0)), np.float32)
        if self.audio is None or n <= 0:
            return out
        i0 = int(round((a0 - self.audio_start) * self.audio_rate))
        s0, s1 = max(i0, 0), min(i0 + n, self.audio.shape[1])
        if s1 > s0:
            out[:, s0 - i0 : s1 - i0] = self.audio[:, s0:s1]
        return out


def probe_duration(path: str) -> float:
    """Container duration in seconds (clear error when the file is not usable media)."""
    from . import open_media

    with open_media(path) as src:
        info = src.info
        if not info.has_video:
            raise NoVideo("no video stream", path)
        return float(info.duration_s)


def read_clip(path: str, t0: float = 0.0, t1: float | None = None, max_side: int = MAX_SIDE) -> Clip:
    """Pictures with ``t0 <= pts < t1`` (container seconds, RGB, not rotated) and the whole audio
    track (float, the source's rate, mono or stereo, gaps not filled)."""
    path = os.fspath(path)
    container = open_container(path)
    frames, times = [], []
    chunks: list[np.ndarray] = []
    audio_start = None
    rate = 0
    try:
        v, a = video_stream(container), audio_stream(container)
        if v is None:
            raise NoVideo("no video stream", path)
        rate_v = v.average_rate or v.guessed_rate or Fraction(25)
        fps = Fraction(rate_v).limit_denominator(1001) if rate_v else Fraction(25)
        if fps <= 0 or fps > 1000:
            fps = Fraction(25)
        dur = container.duration / 1_000_000 if container.duration else 0.0
        if a is not None:
            rate = int(a.codec_context.sample_rate)
        opts = DecodeOptions(audio_rate=None, max_side=max_side, fast_video=False, colour="rgb",
                             audio_format="fltp", audio_layout=None, rotate=False, fill_gaps=False,
                             video_span=(t0, t1))
        configure_video(v, opts)
        for item in Decoder(opts, path).walk(container, v, a):
            if isinstance(item, AudioChunk):
                if audio_start is None:
                    audio_start = item.t
                chunks.append(item.samples)
            else:
                frames.append(item.image)
                times.append(item.t)
    finally:
        container.close()
    if not frames:
        raise NoVideo(f"no video frames between {t0:.2f} s and {t1 if t1 is not None else dur:.2f} s", path)
    order = np.argsort(times, kind="stable")
    frames = [frames[i] for i in order]
    audio = None
    if chunks:  # (n,) mono or (n, 2) stereo chunks -> (channels, n)
        audio = np.ascontiguousarray(np.concatenate([c.reshape(c.shape[0], -1) for c in chunks]).T)
    return Clip(path=path, t0=t0, t1=t1 if t1 is not None else max(dur, times[-1] + 1 / float(fps)),
                frames=frames, frame_times=np.asarray(times)[order], fps=fps, audio=audio,
                audio_rate=rate or 44100, audio_start=audio_start or 0.0, duration_s=dur)


def encode_video(out, stream, pictures, format: str) -> None:
    """Encode ``(pts, image)`` pairs (pts in ``stream``'s codec time base) and mux the packets."""
    import av

    tb = stream.codec_context.time_base
    for pts, img in pictures:
        fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=format)
        fr.pts = pts
        fr.time_base = tb
        for p in stream.encode(fr):
            out.mux(p)
    for p in stream.encode(None):
        out.mux(p)


def encode_audio(out, stream, samples: np.ndarray, rate: int, *, format: str, layout: str, start: int = 0,
                 block: int = 1024, convert=None, mux: bool = True) -> list:
    """Encode ``samples`` (channels, n) in blocks of ``block`` samples, pts counted in samples
    from ``start`` (time base 1/rate).  ``convert(block)`` makes each (channels, k) block what
    :meth:`av.AudioFrame.from_ndarray` wants for ``format``.  The packets are muxed as they come,
    or (``mux`` False) returned for the caller to mux."""
    import av

    packets = []
    for i in range(0, samples.shape[1], block):
        part = samples[:, i : i + block]
        fr = av.AudioFrame.from_ndarray(convert(part) if convert is not None else part, format=format, layout=layout)
        fr.sample_rate = rate
        fr.pts = start + i
        fr.time_base = Fraction(1, rate)
        packets.extend(stream.encode(fr))
        if mux:
            for p in packets:
                out.mux(p)
            packets = []
    packets.extend(stream.encode(None))
    if mux:
        for p in packets:
            out.mux(p)
        packets = []
    return packets


def write_clip(dst: str, frames: list, frame_times: np.ndarray, fps: Fraction, audio: np.ndarray | None,
               audio_rate: int) -> str:
    """Write H.264/AAC MP4 atomically.  ``frame_times`` are output seconds (from 0);
    ``audio`` (channels, n) float32 starts at 0 s, or None for a file with no audio track."""
    import av

    dst = os.fspath(dst)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    try:
        with atomic_output(dst, suffix=".mp4") as tmp, av.open(tmp, "w", format="mp4") as out:
            h, w = frames[0].shape[:2]
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.time_base = VIDEO_TB
            vs.codec_context.time_base = VIDEO_TB
            vs.options = {"preset": "veryfast", "crf": "20"}
            as_ = None
            if audio is not None:
                ch = audio.shape[0]
                as_ = out.add_stream("aac", rate=int(audio_rate), layout="mono" if ch == 1 else "stereo")
                as_.bit_rate = 128000
            encode_video(out, vs, zip(_increasing(int(round(float(t) / VIDEO_TB)) for t in frame_times), frames),
                         "rgb24")
            if as_ is not None:
                encode_audio(out, as_, audio, int(audio_rate), format="fltp",
                             layout="mono" if audio.shape[0] == 1 else "stereo",
                             convert=lambda b: np.ascontiguousarray(np.clip(b, -1, 1).astype(np.float32)))
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot write ({' '.join(str(exc).split())[:160]})", dst) from None
    return dst


def _increasing(values):
    """``values`` made strictly increasing (a repeated or earlier one becomes last + 1)."""
    last = -1
    for v in values:
        v = v if v > last else last + 1
        last = v
        yield v


def segment_frames(clip: Clip, t0: float, t1: float) -> tuple[list, np.ndarray]:
    """Pictures of [t0, t1) of an already read clip, times relative to t0."""
    m = (clip.frame_times >= t0 - 1e-6) & (clip.frame_times < t1 - 1e-6)
    idx = np.flatnonzero(m)
    return [clip.frames[i] for i in idx], clip.frame_times[idx] - t0


def trim(src: str, dst: str, t0: float, t1: float) -> str:
    """Exact cut of [t0, t1) (container seconds) of ``src`` into ``dst`` (re-encoded)."""
    clip = read_clip(src, t0, t1)
    frames, times = segment_frames(clip, t0, t1)
    if not frames:
        raise NoVideo(f"no pictures between {t0:g} s and {t1:g} s", src)
    audio = clip.audio_between(t0, t1) if clip.audio is not None else None
    return write_clip(dst, frames, times, clip.fps, audio, clip.audio_rate)
