"""LipsEstimator on synthetic mouth / loudness curves (no media, no dlib)."""
import numpy as np
import pytest

from avsync.estimators.registry import get_estimator
from avsync.features import Features
from avsync.features.audio import AudioFeatures
from avsync.features.visual import VisualFeatures, _smooth_size
from avsync.estimators.lips import _highpass


def _features(offset_ms: float, seconds: float = 6.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    fps = 25.0
    tv = np.arange(int(seconds * fps)) / fps
    # syllable-rate articulation: smoothed random opening
    k = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    ta = np.arange(int(seconds * 100)) / 100.0
    drive = np.convolve(rng.random(ta.size + 12), k, mode="same")[: ta.size]
    openv = np.interp(tv, ta, drive)
    # audio leads by offset_ms: the sound of time t is heard at t - offset
    speech = np.interp(ta + offset_ms / 1000.0, ta, drive) * 2.0 + 0.01 * rng.standard_normal(ta.size)
    n = tv.size
    V = VisualFeatures(times=tv, fps=fps, motion=np.zeros(n), block_motion=np.zeros((n, 16)),
                       mouth={"inner_open": openv, "outer_open": openv * 1.3 + 0.2,
                              "width": np.ones(n), "dark": openv * 0.5},
                       face_detected=np.ones(n, bool), face_size=np.full(n, 40.0))
    A = AudioFeatures(t0=0.0, rate=100.0, speech=speech.astype(np.float32), energy=speech.astype(np.float32),
                      flux=np.zeros(ta.size, np.float32), rms=np.ones(ta.size, np.float32))
    return Features(info=None, audio=A, visual=V)


@pytest.mark.parametrize("offset", [0.0, 120.0, -240.0])
def test_recovers_offset(offset):
    est = get_estimator("lips")
    e = est.estimate(_features(offset))
    assert e.offset_ms is not None
    assert abs(e.offset_ms + est.bias_ms() - offset) <= 20


def test_no_face_abstains():
    f = _features(0.0)
    f.visual.face_detected[:] = False
    assert get_estimator("lips").estimate(f).offset_ms is None


def test_signals_pairs_on_grid():
    f = _features(0.0, seconds=1.2)
    grid = np.arange(0, 1.2, 0.01)
    pairs = get_estimator("lips").signals(f, grid)
    assert not isinstance(pairs, str)
    for v, a, observer in pairs:
        assert v.shape == grid.shape and a.shape == grid.shape and observer in ("dlib", "mesh")


def test_highpass_and_size_smoothing_short_inputs():
    x = np.arange(5.0)
    assert _highpass(x, 20).shape == x.shape
    s = _smooth_size(np.array([10.0, np.nan, 12.0]), 25)
    assert np.isnan(s[1]) and np.isfinite(s[[0, 2]]).all()


def test_auto_takes_the_lips_with_a_face_and_motion_without():
    import types

    from avsync import api

    face = types.SimpleNamespace(visual=types.SimpleNamespace(face_coverage=0.9))
    assert api.choose_method("auto", face) == "lips"
    assert api.choose_method("fcn", face) == "fcn"
    no_face = types.SimpleNamespace(visual=types.SimpleNamespace(face_coverage=0.1))
    assert api.choose_method("auto", no_face) == "motion"
