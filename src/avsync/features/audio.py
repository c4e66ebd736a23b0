"""Streaming audio features on a fixed 100 Hz grid.

:class:`AudioFeatureExtractor` takes :class:`~avsync.media.AudioChunk` objects one by
one and keeps only the per-hop features (a few floats per 10 ms), never the samples,
so an hour of audio costs a few megabytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import UsageError

HOP_S = 0.01  # 100 Hz feature rate
WIN_S = 0.025
#: log-mel bands for the learned estimators (50-7600 Hz)
MEL_BANDS = 40
#: high bands (Hz) for articulatory events (lip closures: quiet, then a burst at the release),
#: sampled finer than the other features: 16-ms windows every 5 ms
HIGH_BANDS = ((1000.0, 5000.0), (2000.0, 6000.0))
HIGH_HOP_S = 0.005
HIGH_WIN_S = 0.016
#: the high bands are floored this far below their loudest hop: a room is never quieter than
#: that, while digital silence (padding, muted edits) would read as -100 dB and swamp the
#: quiet-versus-burst contrast the closures measure
HIGH_RANGE_DB = 60.0


def hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(n_bands: int, nfft: int, sample_rate: int, fmin: float = 50.0, fmax: float | None = 7600.0, *,
                   bins: str = "centre", min_width: float = 1e-6, dtype=np.float32) -> np.ndarray:
    """(n_bands, nfft // 2 + 1) triangular filters equally spaced on the mel scale, from ``fmin``
    to ``fmax`` (at most, and by default with None, half the sample rate).

    ``bins="centre"``: each triangle is evaluated at the FFT bins' centre frequencies (a side
    narrower than ``min_width`` Hz counts as ``min_width``).  ``bins="floor"``: the corners are
    moved down to whole bins ``floor((nfft + 1) * hz / sample_rate)`` and each triangle runs from
    its left corner (0) up to its centre (1), exclusive of its right corner, as
    python_speech_features builds it."""
    fmax = sample_rate / 2 if fmax is None else min(fmax, sample_rate / 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_bands + 2))
    fb = np.zeros((n_bands, nfft // 2 + 1), dtype)
    if bins == "floor":
        corners = np.floor((nfft + 1) * edges / sample_rate)
        k = np.arange(nfft // 2 + 1)
        for i in range(n_bands):
            lo, c, hi = corners[i], corners[i + 1], corners[i + 2]
            up = (k >= int(lo)) & (k < int(c))
            down = (k >= int(c)) & (k < int(hi))
            fb[i, up] = (k[up] - lo) / (c - lo)
            fb[i, down] = (hi - k[down]) / (hi - c)
        return fb
    if bins != "centre":
        raise UsageError(f"mel filter bins must be 'centre' or 'floor', not {bins!r}")
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    for i in range(n_bands):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / max(c - lo, min_width)
        down = (hi - freqs) / max(hi - c, min_width)
        fb[i] = np.maximum(0.0, np.minimum(up, down))
    return fb


def mfcc_from_power(power: np.ndarray, filters: np.ndarray, n_ceps: int = 13, *, log_offset: float = 0.0,
                    zero_floor: float | None = None, lifter: int = 0, energy_c0: bool = False) -> np.ndarray:
    """(frames, n_ceps) MFCC of a power spectrum ``power`` (frames, bins): the mel energies
    ``power @ filters.T`` (zeros replaced by ``zero_floor`` when given, plus ``log_offset``),
    natural log, orthonormal DCT-II, the first ``n_ceps``; then optionally the sinusoidal
    ``lifter`` and, with ``energy_c0``, coefficient 0 replaced by the log frame energy (its
    zeros floored like the mel energies')."""
    from scipy.fft import dct

    mel = power @ filters.T
    if zero_floor is not None:
        mel = np.where(mel == 0, zero_floor, mel)
    if log_offset:
        mel = mel + log_offset
    cep = dct(np.log(mel), type=2, axis=1, norm="ortho")[:, :n_ceps]
    if lifter:
        n = np.arange(cep.shape[1])
        cep = cep * (1 + (lifter / 2.0) * np.sin(np.pi * n / lifter))
    if energy_c0:
        energy = power.sum(1)
        if zero_floor is not None:
            energy = np.where(energy == 0, zero_floor, energy)
        cep[:, 0] = np.log(energy)
    return cep


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
    #: (m, len(HIGH_BANDS)) energy in dB of the high bands, sample ``j`` centred at
    #: ``hf_t0 + j / hf_rate`` (its own, finer grid)
    hf: np.ndarray | None = None
    hf_t0: float = 0.0
    hf_rate: float = 1.0 / HIGH_HOP_S

    @property
    def times(self) -> np.ndarray:
        return self.t0 + np.arange(self.speech.size) / self.rate

    def __len__(self) -> int:
        return int(self.speech.size)


def windowed_frames(buf: np.ndarray, win: int, hop: int, window: np.ndarray) -> np.ndarray:
    """(n, win) windowed frames of ``buf`` every ``hop`` samples (as many as fit)."""
    n = 1 + (buf.size - win) // hop if buf.size >= win else 0
    idx = np.arange(win)[None, :] + hop * np.arange(max(n, 0))[:, None]
    return buf[idx] * window


class HighBandExtractor:
    """Incremental energy (dB) of :data:`HIGH_BANDS` on a 200 Hz grid."""

    def __init__(self, sample_rate: int):
        self.sr = sample_rate
        self.hop = max(1, int(round(HIGH_HOP_S * sample_rate)))
        self.win = max(8, int(round(HIGH_WIN_S * sample_rate)))
        self.nfft = 1 << (self.win - 1).bit_length()
        self.window = np.hanning(self.win).astype(np.float32)
        freqs = np.fft.rfftfreq(self.nfft, 1.0 / sample_rate)
        self.masks = [(freqs >= lo) & (freqs <= hi) for lo, hi in HIGH_BANDS]
        self._buf = np.zeros(0, np.float32)
        self._out: list[np.ndarray] = []
        self.t0: float | None = None

    def add(self, start: float, samples: np.ndarray) -> None:
        if self.t0 is None:
            self.t0 = start + self.win / 2 / self.sr
        self._buf = np.concatenate([self._buf, samples])
        if self._buf.size >= self.win + 128 * self.hop:
            self._process()

    def _process(self) -> None:
        frames = windowed_frames(self._buf, self.win, self.hop, self.window)
        n = len(frames)
        if n <= 0:
            return
        spec = np.abs(np.fft.rfft(frames, self.nfft, axis=1)) ** 2
        self._out.append(np.stack([10.0 * np.log10(spec[:, m].sum(1) + 1e-10) for m in self.masks], axis=1))
        self._buf = self._buf[n * self.hop:]

    def finish(self) -> np.ndarray | None:
        self._process()
        if not self._out:
            return None
        hf = np.concatenate(self._out)
        return np.maximum(hf, hf.max(axis=0, keepdims=True) - HIGH_RANGE_DB).astype(np.float32)


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
        self._high = HighBandExtractor(sample_rate)

    def add(self, chunk) -> None:
        if self._start is None:
            self._start = chunk.start
            self._t0 = float(chunk.start) + self.win / 2 / self.sr
        self._high.add(float(self._start) + self._buf.size / self.sr, chunk.samples)
        self._buf = np.concatenate([self._buf, chunk.samples])
        if self._buf.size >= self.win + 64 * self.hop:
            self._process()

    def _process(self) -> None:
        frames = windowed_frames(self._buf, self.win, self.hop, self.window)
        n = len(frames)
        if n <= 0:
            return
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
        return AudioFeatures(t0=self._t0, rate=1.0 / HOP_S, **cat, hf=self._high.finish(),
                             hf_t0=self._high.t0 or 0.0, hf_rate=self._high.sr / self._high.hop)


def audio_features(samples: np.ndarray, sample_rate: int = 16000, start_s: float = 0.0) -> AudioFeatures | None:
    """Features of an in-memory signal (convenience for tests and small inputs)."""
    from ..media.base import AudioChunk

    ex = AudioFeatureExtractor(sample_rate)
    ex.add(AudioChunk(Fraction(start_s).limit_denominator(10**9), np.asarray(samples, np.float32), sample_rate))
    return ex.finish()
