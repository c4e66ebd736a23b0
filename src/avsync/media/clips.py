"""Read a stretch of a clip into memory and write a new clip from arrays (PyAV only).

Used by the dataset tools: trimming AVE events and rendering synthetic samples.
Everything is re-encoded (H.264 + AAC in MP4), which is exact to the frame and the
sample: the output starts at the requested time, whatever the key-frame layout of
the source.  Outputs go to a temporary name in the destination folder and are
renamed when complete, so a file that exists under its final name is whole.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import DecodeError, MediaError, NoVideo
from .source import open_container

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


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def probe_duration(path: str) -> float:
    """Container duration in seconds (clear error when the file is not usable media)."""
    from . import open_media

    with open_media(path) as src:
        info = src.info
        if not info.has_video:
            raise NoVideo("no video stream", path)
        return float(info.duration_s)


def read_clip(path: str, t0: float = 0.0, t1: float | None = None, max_side: int = MAX_SIDE) -> Clip:
    """Pictures with ``t0 <= pts < t1`` (container seconds) and the whole audio track."""
    import av

    path = os.fspath(path)
    container = open_container(path)
    frames, times = [], []
    chunks: list[np.ndarray] = []
    audio_start = None
    rate = 0
    try:
        vs = [s for s in container.streams.video if not (s.disposition & 0x400)]
        if not vs:
            raise NoVideo("no video stream", path)
        v = vs[0]
        v.thread_type = "AUTO"
        a = next((s for s in container.streams.audio if (s.codec_context.sample_rate or 0) > 0), None)
        rate_v = v.average_rate or v.guessed_rate or Fraction(25)
        fps = Fraction(rate_v).limit_denominator(1001) if rate_v else Fraction(25)
        if fps <= 0 or fps > 1000:
            fps = Fraction(25)
        dur = container.duration / 1_000_000 if container.duration else 0.0
        size = None
        resampler = None
        if a is not None:
            rate = int(a.codec_context.sample_rate)
            ch = a.codec_context.channels or 1
            layout = "mono" if ch == 1 else "stereo"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        streams = [s for s in (v, a) if s is not None]
        for packet in container.demux(streams):
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                continue
            for frame in decoded:
                if frame.pts is None:
                    continue
                t = float(frame.pts * frame.time_base)
                if packet.stream is v:
                    if t < t0 - 1e-6 or (t1 is not None and t >= t1 - 1e-6):
                        continue
                    if size is None:
                        w, h = frame.width, frame.height
                        s = min(1.0, max_side / max(w, h))
                        size = (_even(w * s), _even(h * s))
                    frames.append(frame.to_ndarray(width=size[0], height=size[1], format="rgb24"))
                    times.append(t)
                else:
                    if audio_start is None:
                        audio_start = t
                    frame.pts = None
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray().astype(np.float32, copy=False))
        if resampler is not None:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().astype(np.float32, copy=False))
    except av.error.FFmpegError as exc:
        if not frames:
            raise DecodeError(f"cannot decode ({' '.join(str(exc).split())[:120]})", path) from None
    finally:
        container.close()
    if not frames:
        raise NoVideo(f"no video frames between {t0:.2f} s and {t1 if t1 is not None else dur:.2f} s", path)
    order = np.argsort(times, kind="stable")
    frames = [frames[i] for i in order]
    audio = np.concatenate(chunks, axis=1) if chunks else None
    return Clip(path=path, t0=t0, t1=t1 if t1 is not None else max(dur, times[-1] + 1 / float(fps)),
                frames=frames, frame_times=np.asarray(times)[order], fps=fps, audio=audio,
                audio_rate=rate or 44100, audio_start=audio_start or 0.0, duration_s=dur)


def write_clip(dst: str, frames: list, frame_times: np.ndarray, fps: Fraction, audio: np.ndarray | None,
               audio_rate: int) -> str:
    """Write H.264/AAC MP4 atomically.  ``frame_times`` are output seconds (from 0);
    ``audio`` (channels, n) float32 starts at 0 s, or None for a file with no audio track."""
    import av

    dst = os.fspath(dst)
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mp4", dir=folder)
    os.close(fd)
    try:
        with av.open(tmp, "w", format="mp4") as out:
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
            last = -1
            for img, t in zip(frames, frame_times):
                pts = int(round(float(t) / VIDEO_TB))
                if pts <= last:
                    pts = last + 1
                last = pts
                fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                fr.pts = pts
                fr.time_base = VIDEO_TB
                for p in vs.encode(fr):
                    out.mux(p)
            for p in vs.encode(None):
                out.mux(p)
            if as_ is not None:
                n = audio.shape[1]
                fsz = 1024
                for i in range(0, n, fsz):
                    block = np.ascontiguousarray(np.clip(audio[:, i : i + fsz], -1, 1).astype(np.float32))
                    af = av.AudioFrame.from_ndarray(block, format="fltp",
                                                    layout="mono" if block.shape[0] == 1 else "stereo")
                    af.sample_rate = int(audio_rate)
                    af.pts = i
                    af.time_base = Fraction(1, int(audio_rate))
                    for p in as_.encode(af):
                        out.mux(p)
                for p in as_.encode(None):
                    out.mux(p)
        os.replace(tmp, dst)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, MediaError):
            raise
        raise MediaError(f"cannot write ({' '.join(str(exc).split())[:160]})", dst) from None
    return dst


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
