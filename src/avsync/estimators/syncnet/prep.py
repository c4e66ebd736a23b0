"""Decoding for SyncNet: 25-fps pictures and 16-kHz int16 audio on one exact timeline.

The reference pipeline converts every clip to 25 fps (ffmpeg ``-r 25``: each output
tick shows the input frame whose timestamp rounds to it, repeated or dropped as
needed) and reads 16-bit mono PCM at 16 kHz.  Here the same happens in memory, from
the media layer's exact timestamps: output frame ``k`` (time ``t0 + k/25``, ``t0`` the
first picture) is the last input frame whose time is before ``t0 + (k + 1/2)/25``; audio
sample 0 is the sample at ``t0`` (silence is added in front when the audio starts
later, samples are dropped when it starts earlier), so a stream start offset in the
container counts as an offset, as the contract says.  No torch here.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable, Iterator

import numpy as np

from ...errors import NoAudio, NoVideo, TooShort
from ...media.base import AudioChunk, DecodeOptions, MediaSource

FPS = 25
RATE = 16000
SAMPLES_PER_FRAME = RATE // FPS  # 640
TICK = Fraction(1, FPS)

#: the progress protocol (avsync.progress): progress(stage, done, total)
Progress = Callable[[float, float], None]


class Timeline25:
    """Iterate over ``(k, image)`` at 25 fps; afterwards ``audio()`` gives the aligned samples.

    ``colour``: False grey, True BGR, "jpeg" BGR after the reference's JPEG round trip (every
    decoded picture encoded in order, before the 25-fps selection: :mod:`avsync.media.jpeg`)."""

    def __init__(self, source: MediaSource, colour: bool | str = True, max_side: int = 1 << 20,
                 progress: Progress | None = None, max_duration_s: float | None = None, audio: bool = True):
        self.source = source
        self.want_audio = audio
        self.options = DecodeOptions(audio_rate=RATE, max_side=max_side, colour=colour, audio_format="s16",
                                     max_duration_s=max_duration_s, audio=audio,
                                     fast_video=False)  # decode exactly as the reference's ffmpeg does
        self.progress = progress
        self.t0: Fraction | None = None
        self.frames = 0  # 25-fps frames produced
        self.input_frames = 0
        self._chunks: list[AudioChunk] = []

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        src = self.source
        src.require(audio=self.want_audio, video=True)
        total = src.info.duration_s or 0.0
        native = Fraction(src.info.video_fps or FPS).limit_denominator(1001000)
        prev = None  # (relative time, image)
        k = 0
        last_report = -1.0
        for item in src.decode(self.options):
            if isinstance(item, AudioChunk):
                self._chunks.append(item)
                continue
            if self.t0 is None:
                self.t0 = item.pts
            rel = item.pts - self.t0
            if prev is not None and rel <= prev[0]:
                continue  # out-of-order or duplicate timestamp: keep the first
            self.input_frames += 1
            if prev is not None:
                while (k + Fraction(1, 2)) * TICK <= rel:
                    yield k, prev[1]
                    k += 1
            prev = (rel, item.image)
            if self.progress is not None and item.t - last_report >= 1.0:
                last_report = item.t
                self.progress("decode", item.t, total)
        if prev is not None:  # the last picture lasts one native frame
            end = prev[0] + 1 / native
            while (k + Fraction(1, 2)) * TICK <= end:
                yield k, prev[1]
                k += 1
        self.frames = k
        if self.t0 is None:
            raise NoVideo("no decodable video frames", src.path)
        if self.want_audio and not self._chunks:
            raise NoAudio("no decodable audio", src.path)

    def audio(self) -> np.ndarray:
        """int16 samples from the first picture's time on (length not trimmed)."""
        if not self._chunks or self.t0 is None:
            return np.zeros(0, np.int16)
        data = np.concatenate([c.samples for c in self._chunks]).astype(np.int16, copy=False)
        lead = int(round(float((self._chunks[0].start - self.t0) * RATE)))
        if lead > 0:
            data = np.concatenate([np.zeros(lead, np.int16), data])
        elif lead < 0:
            data = data[-lead:]
        return data


def windows_count(video_frames: int, audio_samples: int) -> int:
    """The reference: min(video frames, floor(samples / 640)) - 5 (can be <= 0)."""
    return min(video_frames, audio_samples // SAMPLES_PER_FRAME) - 5


def require_windows(frames: int, samples: int, path: str) -> None:
    if windows_count(frames, samples) <= 0:
        raise TooShort(f"too short for SyncNet ({frames} frames at 25 fps; 6 are needed)", path)
