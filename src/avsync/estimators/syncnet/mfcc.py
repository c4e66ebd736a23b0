"""MFCC exactly as ``python_speech_features.mfcc`` computes it with its defaults.

Defaults (the SyncNet reference calls ``mfcc(audio, 16000)`` on int16 samples):
25 ms frames every 10 ms (rounded half up to samples), rectangular window, the last
frame zero-padded, pre-emphasis 0.97, 512-point power spectrum divided by the FFT size,
26 triangular mel filters with integer bin edges ``floor((nfft + 1) * hz / rate)``,
natural log (zeros replaced by the float epsilon), orthonormal DCT-II, the first 13
coefficients, sinusoidal lifter 22, and coefficient 0 replaced by the log frame energy.
numpy/scipy only: no torch.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct

EPS = np.finfo(float).eps


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def mel_filterbank(nfilt: int = 26, nfft: int = 512, rate: int = 16000, low_hz: float = 0.0,
                   high_hz: float | None = None) -> np.ndarray:
    """(nfilt, nfft//2+1) triangular filters on integer FFT bins."""
    high_hz = high_hz or rate / 2
    lo = 2595.0 * np.log10(1.0 + low_hz / 700.0)
    hi = 2595.0 * np.log10(1.0 + high_hz / 700.0)
    mels = np.linspace(lo, hi, nfilt + 2)
    hz = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    edges = np.floor((nfft + 1) * hz / rate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    bins = np.arange(nfft // 2 + 1)
    for j in range(nfilt):
        a, b, c = edges[j], edges[j + 1], edges[j + 2]
        up = (bins >= int(a)) & (bins < int(b))
        down = (bins >= int(b)) & (bins < int(c))
        fb[j, up] = (bins[up] - a) / (b - a)
        fb[j, down] = (c - bins[down]) / (c - b)
    return fb


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
    energy = power.sum(1)
    energy = np.where(energy == 0, EPS, energy)
    feat = power @ mel_filterbank(nfilt, nfft, rate).T
    feat = np.where(feat == 0, EPS, feat)
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    n = np.arange(cep.shape[1])
    cep = cep * (1 + (ceplifter / 2.0) * np.sin(np.pi * n / ceplifter))
    cep[:, 0] = np.log(energy)
    return cep
