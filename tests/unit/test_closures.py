"""The lip-closure event estimator on synthetic signals: closures and bursts at known lags,
abstention on periodic, silent or event-poor input."""
from __future__ import annotations

import types

import numpy as np
import pytest

from avsync.estimators.base import EstimatorOptions
from avsync.estimators.closures import (ClosuresEstimator, bootstrap_agreement, event_scores, find_closures,
                                        standardise)

FPS, RATE = 25.0, 200.0


def _scene(closures_at, lag_s, seconds=12.0, burst=True, seed=0, silent=False, durations=(0.08, 0.12, 0.16)):
    """Video: an inner-lip gap that closes for 80-160 ms at each time in ``closures_at``.
    Audio (two bands, dB at 200 Hz): speech-level noise, quiet during each closure and a
    burst at its release, everything ``lag_s`` later than the picture."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FPS)) / FPS
    gap = 0.6 + 0.3 * rng.random(t.size)
    ta = np.arange(int(seconds * RATE)) / RATE
    level = 40.0 + 3.0 * rng.standard_normal((2, ta.size))
    for c in closures_at:
        dur = rng.choice(durations)
        gap[(t >= c) & (t < c + dur)] = 0.02 + 0.01 * rng.random()
        q = (ta >= c + lag_s) & (ta < c + dur + lag_s)
        level[:, q] = 12.0 + rng.standard_normal((2, q.sum()))
        if burst:
            b = (ta >= c + dur + lag_s) & (ta < c + dur + lag_s + 0.04)
            level[:, b] += 12.0
    if silent:
        level[:] = -100.0
    visual = types.SimpleNamespace(times=t, mouth={"inner_open": gap}, fps=FPS)
    audio = types.SimpleNamespace(hf=level.T, hf_t0=0.0, hf_rate=RATE)
    return types.SimpleNamespace(visual=visual, audio=audio)


def _irregular(n, seconds=12.0, seed=1):
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(0.8, seconds - 1.0, n))[::1]


def _spaced(times, min_gap=0.35):
    out = []
    for x in times:
        if not out or x - out[-1] >= min_gap:
            out.append(x)
    return out


def test_find_closures_edges():
    t = np.arange(50) / FPS
    g = 0.6 + 0.15 * np.sin(np.arange(50) * 0.7)  # articulation that never closes the lips
    g[20:23] = 0.05  # closed from 0.80 to 0.92 s
    ev = find_closures(t, g)
    assert len(ev) == 1
    assert ev[0].close == pytest.approx(0.78, abs=0.03) and ev[0].release == pytest.approx(0.90, abs=0.03)


@pytest.mark.parametrize("lag_s", [0.0, 0.12, -0.2, 0.36, -0.52])
def test_recovers_known_lag(lag_s):
    feats = _scene(_spaced(_irregular(30)), lag_s)
    e = ClosuresEstimator(EstimatorOptions(max_lag_ms=800)).estimate(feats)
    assert e.assessable, e.reason
    # within half a frame: the picture samples the release every 40 ms (audio later = lags = negative)
    assert e.offset_ms == pytest.approx(-lag_s * 1000.0, abs=20.0)
    assert e.stats["events"] >= 5 and e.confidence >= 0.85


def test_abstains_with_few_closures():
    feats = _scene([2.0, 5.0, 8.0], 0.1)
    e = ClosuresEstimator().estimate(feats)
    assert not e.assessable and "too few" in e.reason


def test_abstains_on_periodic_closures():
    # one 120-ms closure every 320 ms: every multiple of the period fits
    feats = _scene(list(np.arange(1.0, 11.0, 0.32)), 0.1, seed=3, durations=(0.12,))
    e = ClosuresEstimator().estimate(feats)
    assert not e.assessable, (e.offset_ms, e.stats)


def test_abstains_on_silent_audio():
    feats = _scene(_spaced(_irregular(30)), 0.0, silent=True)
    e = ClosuresEstimator().estimate(feats)
    assert not e.assessable


def test_scores_peak_at_the_lag_and_bootstrap_agrees():
    feats = _scene(_spaced(_irregular(25, seed=5)), 0.2, seed=5)
    ev = find_closures(feats.visual.times, feats.visual.mouth["inner_open"])
    lags = np.arange(-0.6, 0.6001, 0.005)
    z = standardise(event_scores(ev, 0.0, RATE, feats.audio.hf.T, lags))
    best = int(np.argmax(z.mean(0)))
    assert lags[best] == pytest.approx(0.2, abs=0.02)
    assert bootstrap_agreement(z, lags, best) > 0.95
    # the same events against audio from another scene (no relation): no agreement
    other = _scene(_spaced(_irregular(25, seed=9)), 0.2, seed=9)
    z2 = standardise(event_scores(ev, 0.0, RATE, other.audio.hf.T, lags))
    assert bootstrap_agreement(z2, lags, int(np.argmax(z2.mean(0)))) < 0.85
