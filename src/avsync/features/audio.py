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
#: log-mel bands for the learned estimators (50-7600 Hz)
MEL_BANDS = 40


def mel_filterbank(n_bands: int, nfft: int, sample_rate: int, fmin: float = 50.0, fmax: float = 7600.0) -> np.ndarray:
    """(n_bands, nfft // 2 + 1) triangular filters equally spaced on the mel scale."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    fmax = min(fmax, sample_rate / 2)
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_bands + 2))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    fb = np.zeros((n_bands, freqs.size), np.float32)
    for i in range(n_bands):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-6)
        down = (hi - freqs) / max(hi - c, 1e-6)
        fb[i] = np.maximum(0.0, np.minimum(up, down))
    return fb


@dataclass
class AudioFeatures:
    """Per-hop audio features; sample ``i`` is centred at ``t0 + i / rate``."""

    t0: float
    rate: float  # Hz
    speech: np.ndarray  # log energy in the 300-3000 Hz band
    energy: np.ndarray  # log energy, whole band
    flux: np.ndarray  # half-wave rectified log-spectral flux (onset strength)
    rms: np.ndarray  # linear RMS of the window
    #: (n, MEL_BANDS) log10 mel energies; only when asked for (learned estimators)
    mel: np.ndarray | None = None

    @property
    def times(self) -> np.ndarray:
        return self.t0 + np.arange(self.speech.size) / self.rate

    def __len__(self) -> int:
        return int(self.speech.size)


class AudioFeatureExtractor:
    """Incremental STFT features of mono audio at ``sample_rate`` Hz."""

    def __init__(self, sample_rate: int = 16000, mel_bands: int = 0):
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
        self._melfb = mel_filterbank(mel_bands, self.nfft, sample_rate) if mel_bands else None
        if self._melfb is not None:
            self._out["mel"] = []

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
        if self._melfb is not None:
            self._out["mel"].append(np.log10(spec @ self._melfb.T + eps).astype(np.float32))
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
    from ..media.base import AudioChunk

    ex = AudioFeatureExtractor(sample_rate)
    ex.add(AudioChunk(Fraction(start_s).limit_denominator(10**9), np.asarray(samples, np.float32), sample_rate))
    return ex.finish()
