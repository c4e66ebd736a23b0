"""The one mel filterbank / MFCC (avsync.features.audio) in each of its conventions, bit for bit
against the implementations it replaced (written out below as they were) and against
python_speech_features (the SyncNet reference's MFCC)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import dct

from avsync.errors import UsageError
from avsync.features.audio import mel_filterbank, mfcc_from_power


# -- the replaced implementations, as they were -------------------------------------------------
def old_features_audio(n_bands, nfft, sample_rate, fmin=50.0, fmax=7600.0):
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


def old_classify(n_mels=40, nfft=512, sr=16000):
    def hz2mel(f):
        return 2595.0 * np.log10(1 + f / 700.0)

    def mel2hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1)

    freqs = np.fft.rfftfreq(nfft, 1 / sr)
    hz = mel2hz(np.linspace(hz2mel(20.0), hz2mel(sr / 2), n_mels + 2))
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, c, hi = hz[i], hz[i + 1], hz[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[i] = np.maximum(0, np.minimum(up, down))
    return fb


def _power(seed=3, frames=60, nfft=512, silent_rows=()):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((frames, 400)) * 2000.0
    x[list(silent_rows)] = 0.0
    return np.abs(np.fft.rfft(x * np.hanning(400), nfft, axis=1)) ** 2


# -- filterbanks --------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [(40, 512, 16000), (40, 512, 16000, 50.0, 20000.0), (64, 1024, 44100),
                                  (26, 400, 8000, 0.0, 4000.0)])
def test_centre_bins_equal_the_old_features_filters(args):
    new = mel_filterbank(*args)
    old = old_features_audio(*args)
    assert new.dtype == old.dtype == np.float32
    assert np.array_equal(new, old)


def test_centre_bins_equal_the_old_classify_filters():
    new = mel_filterbank(40, 512, 16000, 20.0, 16000 / 2, min_width=1e-9, dtype=np.float64)
    old = old_classify()
    assert new.dtype == old.dtype == np.float64
    assert np.array_equal(new, old)


@pytest.mark.parametrize("args", [(26, 512, 16000, 0, None), (40, 1024, 22050, 300, 6000), (20, 256, 8000, 100, None)])
def test_floor_bins_equal_python_speech_features(args):
    psf = pytest.importorskip("python_speech_features")
    n, nfft, rate, lo, hi = args
    new = mel_filterbank(n, nfft, rate, float(lo), hi, bins="floor", dtype=np.float64)
    assert np.array_equal(new, psf.get_filterbanks(n, nfft, rate, lo, hi))


def test_filters_are_triangles_on_the_mel_scale():
    fb = mel_filterbank(40, 512, 16000).astype(np.float64)
    assert fb.shape == (40, 257) and fb.min() >= 0.0 and fb.max() <= 1.0
    peaks = fb.argmax(1)
    gaps = np.diff(peaks)
    assert (gaps >= 0).all() and gaps[:10].mean() < gaps[-10:].mean()  # wider apart upwards
    assert fb[:, np.fft.rfftfreq(512, 1 / 16000) > 7600].sum() == 0  # nothing above fmax


def test_unknown_bin_convention_is_a_usage_error():
    with pytest.raises(UsageError):
        mel_filterbank(10, 512, 16000, bins="round")


# -- cepstra ------------------------------------------------------------------------------------
def test_classify_convention_equals_the_old_mfcc():
    power = _power(silent_rows=(5, 6))
    fb = old_classify()
    old = dct(np.log(power @ fb.T + 1e-10), type=2, norm="ortho", axis=1)[:, :13]
    new = mfcc_from_power(power, mel_filterbank(40, 512, 16000, 20.0, 8000.0, min_width=1e-9, dtype=np.float64),
                          13, log_offset=1e-10)
    assert np.array_equal(new, old)


def test_psf_convention_equals_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    from python_speech_features import sigproc

    rng = np.random.default_rng(5)
    signal = (rng.standard_normal(8000) * 3000).astype(np.int16)
    signal[1600:3200] = 0  # digital silence: the zero-energy floor
    frames = sigproc.framesig(sigproc.preemphasis(signal, 0.97), 400, 160)
    power = sigproc.powspec(frames, 512)
    fb = mel_filterbank(26, 512, 16000, 0.0, None, bins="floor", dtype=np.float64)
    new = mfcc_from_power(power, fb, 13, zero_floor=np.finfo(float).eps, lifter=22, energy_c0=True)
    assert np.array_equal(new, psf.mfcc(signal, 16000))


def test_syncnet_mfcc_equals_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    from avsync.estimators.syncnet.mfcc import mfcc

    rng = np.random.default_rng(9)
    for n in (100, 400, 401, 16000):  # one padded frame, exactly one, two, many
        x = (rng.standard_normal(n) * 5000).astype(np.int16)
        assert np.array_equal(mfcc(x, 16000), psf.mfcc(x, 16000)), n
    assert np.array_equal(mfcc(np.zeros(1000, np.int16), 16000), psf.mfcc(np.zeros(1000, np.int16), 16000))
