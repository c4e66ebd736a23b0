"""MFCC exactly as ``python_speech_features.mfcc`` computes it with its defaults.

Defaults (the SyncNet reference calls ``mfcc(audio, 16000)`` on int16 samples):
25 ms frames every 10 ms (rounded half up to samples), rectangular window, the last
frame zero-padded, pre-emphasis 0.97, 512-point power spectrum divided by the FFT size,
26 triangular mel filters with integer bin edges ``floor((nfft + 1) * hz / rate)``,
natural log (zeros replaced by the float epsilon), orthonormal DCT-II, the first 13
coefficients, sinusoidal lifter 22, and coefficient 0 replaced by the log frame energy.
The filters and the cepstrum are :mod:`avsync.features.audio`'s; the framing is here.
numpy/scipy only: no torch.
"""
from __future__ import annotations

import math

import numpy as np

from ...features.audio import mel_filterbank, mfcc_from_power

EPS = np.finfo(float).eps


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def frame_signal(signal: np.ndarray, frame_len: int, step: int) -> np.ndarray:
    n = signal.size
    count = 1 if n <= frame_len else 1 + int(math.ceil((n - frame_len) / step))
    padded = np.zeros((count - 1) * step + frame_len)
    padded[:n] = signal
    idx = np.arange(frame_len)[None, :] + step * np.arange(count)[:, None]
    return padded[idx]


def mfcc(signal: np.ndarray, rate: int = 16000, winlen: float = 0.025, winstep: float = 0.01, numcep: int = 13,
         nfilt: int = 26, nfft: int | None = None, preemph: float = 0.97, ceplifter: int = 22) -> np.ndarray:
    """(frames, numcep) float64 MFCC of ``signal`` (int16-scaled values, as the reference reads them)."""
    x = np.asarray(signal, np.float64).reshape(-1)
    frame_len = _round_half_up(winlen * rate)
    step = _round_half_up(winstep * rate)
    if nfft is None:
        nfft = 1
        while nfft < winlen * rate:
            nfft *= 2
    x = np.append(x[:1], x[1:] - preemph * x[:-1])
    frames = frame_signal(x, frame_len, step)
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    filters = mel_filterbank(nfilt, nfft, rate, 0.0, None, bins="floor", dtype=np.float64)
    return mfcc_from_power(power, filters, numcep, zero_floor=EPS, lifter=ceplifter, energy_c0=True)
