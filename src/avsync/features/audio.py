"""Streaming audio features on a fixed 100 Hz grid.

:class:`AudioFeatureExtractor` takes :class:`~avsync.media.AudioChunk` objects one by
one and keeps only the per-hop features (a few floats per 10 ms), never the samples,
so an hour of audio costs a few megabytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

HOP_S = 0.01  # 100 Hz feature rate
WIN_S = 0.025


@dataclass
class AudioFeatures:
    """Per-hop audio features; sample ``i`` is centred at ``t0 + i / rate``."""

    t0: float
    rate: float  # Hz
    speech: np.ndarray  # log energy in the 300-3000 Hz band
    energy: np.ndarray  # log energy, whole band
    flux: np.ndarray  # half-wave rectified log-spectral flux (onset strength)
    rms: np.ndarray  # linear RMS of the window

    @property
    def times(self) -> np.ndarray:
        return self.t0 + np.arange(self.speech.size) / self.rate

    def __len__(self) -> int:
        return int(self.speech.size)


class AudioFeatureExtractor:
    """Incremental STFT features of mono audio at ``sample_rate`` Hz."""

    def __init__(self, sample_rate: int = 16000):
        self.sr = sample_rate
        self.hop = int(round(HOP_S * sample_rate))
        self.win = int(round(WIN_S * sample_rate))
        self.nfft = 1 << (self.win - 1).bit_length()
        self.window = np.hanning(self.win).astype(np.float32)
        freqs = np.fft.rfftfreq(self.nfft, 1.0 / sample_rate)
        self.speech_band = (freqs >= 300) & (freqs <= 3000)
        # 24 coarse log-spaced bands for the flux
        edges = np.geomspace(100, min(8000, sample_rate / 2), 25)
        self.band_idx = np.clip(np.searchsorted(edges, freqs) - 1, -1, 23)
        self._buf = np.zeros(0, np.float32)
        self._start: Fraction | None = None  # time of _buf[0]
        self._t0: float | None = None
        self._prev_bands: np.ndarray | None = None
        self._out: dict[str, list[np.ndarray]] = {k: [] for k in ("speech", "energy", "flux", "rms")}

    def add(self, chunk) -> None:
        if self._start is None:
            self._start = chunk.start
            self._t0 = float(chunk.start) + self.win / 2 / self.sr
        self._buf = np.concatenate([self._buf, chunk.samples])
        if self._buf.size >= self.win + 64 * self.hop:
            self._process()

    def _process(self) -> None:
        n = 1 + (self._buf.size - self.win) // self.hop if self._buf.size >= self.win else 0
        if n <= 0:
            return
        idx = np.arange(self.win)[None, :] + self.hop * np.arange(n)[:, None]
        frames = self._buf[idx] * self.window
        spec = np.abs(np.fft.rfft(frames, self.nfft, axis=1)) ** 2
        eps = 1e-10
        self._out["speech"].append(np.log10(spec[:, self.speech_band].sum(1) + eps))
        self._out["energy"].append(np.log10(spec.sum(1) + eps))
        self._out["rms"].append(np.sqrt((frames**2).mean(1)))
        bands = np.zeros((n, 24), np.float64)
        valid = self.band_idx >= 0
        np.add.at(bands.T, self.band_idx[valid], spec[:, valid].T)
        lb = np.log10(bands + 1e-8)
        prev = self._prev_bands if self._prev_bands is not None else lb[:1]
        diff = np.diff(np.vstack([prev, lb]), axis=0)
        self._out["flux"].append(np.maximum(diff, 0).sum(1))
        self._prev_bands = lb[-1:]
        consumed = n * self.hop
        self._buf = self._buf[consumed:]
        self._start += Fraction(consumed, self.sr)

    def finish(self) -> AudioFeatures | None:
        if self._start is not None:
            self._process()
        if not self._out["speech"]:
            return None
        cat = {k: np.concatenate(v).astype(np.float32) for k, v in self._out.items()}
        return AudioFeatures(t0=self._t0, rate=1.0 / HOP_S, **cat)


def audio_features(samples: np.ndarray, sample_rate: int = 16000, start_s: float = 0.0) -> AudioFeatures | None:
    """Features of an in-memory signal (convenience for tests and small inputs)."""
    from ..media.source import AudioChunk

    ex = AudioFeatureExtractor(sample_rate)
    ex.add(AudioChunk(Fraction(start_s).limit_denominator(10**9), np.asarray(samples, np.float32), sample_rate))
    return ex.finish()
