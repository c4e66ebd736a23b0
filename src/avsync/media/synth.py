"""Synthetic test media, rendered with PyAV (no ffmpeg command line), deterministic.

:func:`make_sample` writes a short clip with a known offset: a white square flashes
on a dark background at irregular moments (random gaps of 0.3-1.2 s) and a short
click/beep sounds at each flash.  The sound is displaced by ``offset_ms`` with the
contract's sign: ``offset_ms > 0`` puts every sound EARLIER than its flash (the
audio leads).

:func:`make_clip` is the general form used by the tests to build odd inputs: any
size, frame rate (also fractional: 7.5, 30000/1001), variable frame timestamps,
1/2/6 audio channels, silence, a still picture, no audio or no video, an audio
stream that starts later in the container, display-matrix rotation.

Both return a :class:`SynthEvents`: when the events happen in the picture and in
the sound, in container seconds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .clips import encode_audio, encode_video

#: how long a flash takes to fade back to the background (seconds)
FLASH_FADE_S = 0.16
#: length of one click/beep (seconds)
BEEP_S = 0.15
#: the inter-event gaps are drawn uniformly from this range (seconds)
GAP_RANGE_S = (0.3, 1.2)

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


@dataclass
class SynthEvents:
    """What :func:`make_clip` wrote, all times in container seconds.

    ``video``: presentation time of each flash frame; ``audio``: start of each
    beep (as placed in the container, i.e. including ``audio_start_s``);
    ``offset_ms``: the true offset of the file in the contract's sign (audio
    leads > 0), including the displacement caused by a late audio stream."""

    video: list[float] = field(default_factory=list)
    audio: list[float] = field(default_factory=list)
    offset_ms: float = 0.0
    frame_times: list[float] = field(default_factory=list)
    fps: float = 25.0
    width: int = 0
    height: int = 0
    audio_rate: int = 0
    channels: int = 0

    def __len__(self) -> int:
        return len(self.video)

    def __iter__(self):
        return iter(self.video)


def _rate(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction: 25 -> 25, 29.97 -> 30000/1001, 7.5 -> 15/2."""
    if isinstance(fps, Fraction):
        return fps
    r = Fraction(fps).limit_denominator(1001)
    if r <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return r


def _event_times(rng: np.random.Generator, duration_s: float, margin_s: float = 0.4) -> np.ndarray:
    """Irregular event times in [margin, duration - margin]."""
    out = []
    t = margin_s + rng.uniform(0.0, 0.3)
    while t < duration_s - margin_s:
        out.append(t)
        t += rng.uniform(*GAP_RANGE_S)
    return np.asarray(out, np.float64)


def _frame_times(rng: np.random.Generator, duration_s: float, rate: Fraction, vfr: bool) -> list[Fraction]:
    """Presentation times of all frames (exact).  VFR: integer milliseconds with
    frame durations drawn between 0.4 and 1.6 nominal frame periods."""
    if not vfr:
        n = max(1, int(np.floor(duration_s * rate + 1e-9)))
        return [Fraction(i) / rate for i in range(n)]
    period_ms = 1000.0 / float(rate)
    out, t = [], 0
    while t < duration_s * 1000 - 1e-9:
        out.append(Fraction(t, 1000))
        t += max(1, int(round(period_ms * rng.uniform(0.4, 1.6))))
    return out


def _beep(rate: int, rng: np.random.Generator) -> np.ndarray:
    """A short click + tone burst with a sharp attack and exponential decay."""
    n = int(round(BEEP_S * rate))
    t = np.arange(n) / rate
    env = np.exp(-t / 0.035) * np.minimum(1.0, t / 0.002 + 1e-3)
    tone = 0.6 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 2500 * t)
    noise = 0.4 * rng.standard_normal(n)
    return (0.8 * env * (tone + noise)).astype(np.float64)


class _Painter:
    """Grey pictures (uint8, H x W): a dark background with a fixed checker texture,
    a small bright marker in the top-left corner (so rotations can be told apart)
    and, for 'events', a square at the centre whose brightness is ``level`` (0..1)."""

    def __init__(self, width: int, height: int, video: str):
        self.video = video
        img = np.full((height, width), 24, np.uint8)
        cx = (np.arange(width) // max(1, width // 16)) % 2
        cy = (np.arange(height) // max(1, height // 12)) % 2
        img += ((cx[None, :] + cy[:, None]) % 2 * 10).astype(np.uint8)
        mh, mw = max(2, height // 10), max(2, width // 10)
        img[:mh, :mw] = 200
        self.base = img
        s = max(2, min(width, height) // 3)
        self.box = ((height - s) // 2, (width - s) // 2, s)
        self._chroma = np.full((height // 2, width), 128, np.uint8)
        self._cache: dict[int, np.ndarray] = {}

    def grey(self, level: float) -> np.ndarray:
        val = int(round(40 + 215 * level)) if (self.video == "events" and level > 0) else 0
        img = self._cache.get(val)
        if img is None:
            img = self.base.copy()
            if val:
                y0, x0, s = self.box
                img[y0:y0 + s, x0:x0 + s] = val
            if len(self._cache) > 16:  # bounded: 4K pictures are 8 MB each
                self._cache.clear()
            self._cache[val] = img
        return img

    def yuv420p(self, level: float) -> np.ndarray:
        """The picture as a (H * 3/2, W) yuv420p array (neutral chroma)."""
        return np.concatenate([self.grey(level), self._chroma], axis=0)


def _write_audio_frames(container, stream, signal: np.ndarray, rate: int, channels: int,
                        start_sample: int) -> None:
    """Encode ``signal`` (channels x n, float in [-1, 1]) in the codec's own sample format, with
    pts counted from ``start_sample`` in a 1/rate time base."""
    ctx = stream.codec_context
    fmt = ctx.format
    name = fmt.name if fmt is not None else "fltp"
    planar = bool(fmt.is_planar) if fmt is not None else True

    def convert(chunk: np.ndarray) -> np.ndarray:
        if name.startswith("s16"):
            data = np.clip(np.round(chunk * 32767), -32768, 32767).astype(np.int16)
        elif name.startswith("s32"):
            data = np.clip(np.round(chunk * 2147483647), -2147483648, 2147483647).astype(np.int32)
        else:
            data = chunk.astype(np.float32)
        return np.ascontiguousarray(data if planar else data.T.reshape(1, -1))

    encode_audio(container, stream, signal, rate, format=name, layout=_LAYOUTS[channels], start=start_sample,
                 block=ctx.frame_size or 1024, convert=convert)


def make_clip(path: str | os.PathLike, *, duration_s: float = 8.0, fps: float | Fraction = 25,
              width: int = 320, height: int = 240, audio_rate: int = 48000, channels: int = 1,
              audio: str = "events", video: str = "events", offset_ms: float = 0.0, vfr: bool = False,
              rotation: int = 0, audio_start_s: float = 0.0, video_codec: str = "h264",
              audio_codec: str = "aac", seed: int = 0, events: list[float] | None = None,
              container_options: dict[str, str] | None = None) -> SynthEvents:
    """Write a synthetic clip to ``path`` (container chosen from the extension).

    ``audio``: 'events' (a beep per event), 'silence' (digital zeros) or 'none';
    ``video``: 'events' (a flashing square per event), 'still' (one unchanging
    picture) or 'none'.  ``offset_ms > 0`` makes the beeps come before the flashes.
    ``rotation``: display rotation in degrees clockwise (as a phone's ``rotate``
    tag: 90 means the stored picture must be turned 90 degrees clockwise for
    display), written as the stream's display matrix.  ``audio_start_s`` delays
    the whole audio stream in the container (its first sample is at that time),
    which makes the audio lag by that much more.  ``events`` overrides the
    random event times; ``container_options`` go to the muxer (e.g.
    ``{"movflags": "faststart"}``).  Returns the event times (:class:`SynthEvents`).
    """
    import av

    path = os.fspath(path)
    if audio not in ("events", "silence", "none"):
        raise ValueError(f"audio must be 'events', 'silence' or 'none', got {audio!r}")
    if video not in ("events", "still", "none"):
        raise ValueError(f"video must be 'events', 'still' or 'none', got {video!r}")
    if audio == "none" and video == "none":
        raise ValueError("a clip needs audio or video")
    if channels not in _LAYOUTS:
        raise ValueError(f"channels must be one of {sorted(_LAYOUTS)}, got {channels}")
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90 degrees")
    width, height = int(width) // 2 * 2, int(height) // 2 * 2
    rng = np.random.default_rng(seed)
    rate = _rate(fps)
    ev = np.asarray(events, np.float64) if events is not None else _event_times(rng, duration_s)
    ftimes = _frame_times(rng, duration_s, rate, vfr)
    ft = np.array([float(t) for t in ftimes])
    # snap each event to the first frame at or after it: that frame shows the flash
    if ft.size:
        idx = np.clip(np.searchsorted(ft, ev - 1e-9), 0, ft.size - 1)
        ev_v = np.unique(ft[idx])
    else:
        ev_v = ev
    off_s = offset_ms / 1000.0
    result = SynthEvents(offset_ms=float(offset_ms) - 1000.0 * audio_start_s,
                         frame_times=[float(t) for t in ftimes] if video != "none" else [],
                         fps=float(rate), width=width, height=height,
                         audio_rate=audio_rate if audio != "none" else 0,
                         channels=channels if audio != "none" else 0)
    if video == "events":
        result.video = [float(t) for t in ev_v]

    container = av.open(path, mode="w", options=dict(container_options or {}))
    try:
        vs = as_ = None
        if video != "none":
            vs = container.add_stream(video_codec, rate=rate)
            vs.width, vs.height = width, height
            vs.pix_fmt = "yuv420p"
            if vfr:
                vs.codec_context.time_base = Fraction(1, 1000)
                vs.time_base = Fraction(1, 1000)
            else:
                vs.codec_context.time_base = 1 / rate
            if video_codec in ("h264", "libx264"):
                vs.options = {"preset": "ultrafast", "crf": "18"}
            elif video_codec == "mpeg4":
                vs.bit_rate = 2_000_000
            if rotation:
                # PyAV's matrix angle is counter-clockwise; ours is clockwise
                vs.set_display_rotation(-rotation)
        if audio != "none":
            as_ = container.add_stream(audio_codec, rate=audio_rate)
            as_.layout = _LAYOUTS[channels]
            if audio_codec == "aac":
                as_.bit_rate = 64_000 * channels
        # ---- video ----
        if vs is not None:
            tb = vs.codec_context.time_base
            painter = _Painter(width, height, video)

            def pictures():
                for t, tf in zip(ftimes, ft):
                    level = 0.0
                    if video == "events" and ev_v.size:
                        k = np.searchsorted(ev_v, tf + 1e-9) - 1
                        if k >= 0:
                            level = max(0.0, 1.0 - (tf - ev_v[k]) / FLASH_FADE_S)
                    yield int(round(t / tb)), painter.yuv420p(level)

            encode_video(container, vs, pictures(), "yuv420p")
        # ---- audio ----
        if as_ is not None:
            n = max(1, int(round((duration_s - audio_start_s) * audio_rate)))
            sig = np.zeros(n, np.float64)
            if audio == "events":
                sig += 1e-3 * rng.standard_normal(n)  # a faint noise floor, never digital silence
                beep = _beep(audio_rate, rng)
                src = ev_v if video == "events" else ev
                for te in src:
                    start = int(round((te - off_s) * audio_rate))  # in the stream's own clock
                    if start < 0 or start + beep.size > n:
                        continue
                    sig[start:start + beep.size] += beep
                    result.audio.append(audio_start_s + start / audio_rate)
            sig = np.clip(sig, -1.0, 1.0)
            gains = [1.0] * channels if channels < 6 else [0.7, 0.7, 1.0, 0.2, 0.5, 0.5]
            multi = np.vstack([g * sig for g in gains])
            _write_audio_frames(container, as_, multi, audio_rate, channels,
                                int(round(audio_start_s * audio_rate)))
    finally:
        container.close()
    return result


def make_sample(path: str | os.PathLike, offset_ms: float = 0.0, duration_s: float = 8.0, fps: float = 25,
                audio_rate: int = 48000, *, width: int = 320, height: int = 240, seed: int = 0,
                video_codec: str = "h264", audio_codec: str = "aac") -> SynthEvents:
    """A clip with flashes and beeps whose audio leads the picture by ``offset_ms``
    (negative: lags).  Deterministic for a given ``seed``.  Returns the event times."""
    return make_clip(path, duration_s=duration_s, fps=fps, width=width, height=height,
                     audio_rate=audio_rate, channels=1, audio="events", video="events",
                     offset_ms=offset_ms, seed=seed, video_codec=video_codec, audio_codec=audio_codec)


__all__ = ["SynthEvents", "make_clip", "make_sample"]
