"""The events estimator on rendered clips: a ball hits a wall with a click at a known offset."""
from types import SimpleNamespace

import numpy as np
import pytest

from avsync.estimators.base import EstimatorOptions
from avsync.estimators.events import EventEstimator, adaptive_peaks, periodicity
from avsync.features.audio import audio_features
from avsync.features.visual import VisualFeatureExtractor

FPS = 25.0
SR = 16000


def render(impacts, duration=12.0, travel=0.3, size=128):
    """A ball that flies across in ``travel`` s and stops at the opposite wall at each impact."""
    ex = VisualFeatureExtractor(FPS, faces="off")
    yy, xx = np.mgrid[:size, :size]
    for i in range(int(duration * FPS)):
        t = i / FPS
        x = 12.0
        for k, ti in enumerate(impacts):
            start, end = (12.0, size - 12.0) if k % 2 == 0 else (size - 12.0, 12.0)
            if t >= ti:
                x = end
            elif t >= ti - travel:
                x = start + (end - start) * (t - (ti - travel)) / travel
                break
            else:
                break
        img = np.full((size, size), 30, np.uint8)
        img[(xx - x) ** 2 + (yy - size / 2) ** 2 < 100] = 230
        ex.add(SimpleNamespace(image=img, t=t))
    return ex.finish()


def clicks(times, duration=12.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.002, int(duration * SR)).astype(np.float32)
    burst = rng.normal(0, 0.5, 400) * np.exp(-np.arange(400) / 80.0)
    for t in times:
        i = int(round(t * SR))
        if 0 <= i < x.size - 400:
            x[i:i + 400] += burst
    return x


IRREGULAR = [0.9, 2.2, 3.1, 4.8, 5.5, 7.3, 8.1, 9.8, 10.5, 11.4]


@pytest.mark.parametrize("offset_ms", [0.0, 200.0, -320.0])
def test_finds_the_offset_of_clicks_at_impacts(offset_ms):
    V = render(IRREGULAR)
    # offset = t_video - t_audio: the sound comes offset_ms early
    A = audio_features(clicks([t - offset_ms / 1000 for t in IRREGULAR]), SR)
    e = EventEstimator(EstimatorOptions(max_lag_ms=1000)).estimate(SimpleNamespace(visual=V, audio=A))
    assert e.assessable, e.reason
    assert abs(e.offset_ms - offset_ms) <= 40.0 + 5.0, (e.offset_ms, e.stats)
    assert e.confidence >= 0.5, e.stats
    assert e.stats["matched"] >= 6
    assert len(e.stats["pairs"]) == e.stats["matched"]


def test_unrelated_sound_is_not_confident():
    V = render(IRREGULAR)
    other = [0.4, 1.7, 2.6, 3.9, 6.2, 6.9, 8.8, 10.1, 11.0]
    A = audio_features(clicks(other, seed=3), SR)
    e = EventEstimator().estimate(SimpleNamespace(visual=V, audio=A))
    assert e.confidence < 0.5, e.stats


def test_periodic_impacts_abstain():
    beats = list(np.arange(0.8, 11.8, 0.5))
    V = render(beats, travel=0.3)
    A = audio_features(clicks(beats), SR)
    e = EventEstimator().estimate(SimpleNamespace(visual=V, audio=A))
    assert e.confidence < 0.5
    assert not e.assessable, (e.offset_ms, e.stats)
    assert "periodic" in e.reason


def test_still_picture_and_silence_abstain():
    V = render([], duration=6.0)
    A = audio_features(clicks([1.0, 2.0]), SR)
    e = EventEstimator().estimate(SimpleNamespace(visual=V, audio=A))
    assert not e.assessable and e.reason
    V = render(IRREGULAR)
    A = audio_features(np.zeros(12 * SR, np.float32), SR)
    e = EventEstimator().estimate(SimpleNamespace(visual=V, audio=A))
    assert not e.assessable and e.reason


def test_bad_input_abstains_without_traceback():
    e = EventEstimator().estimate(SimpleNamespace(visual=None, audio=None))
    assert not e.assessable and e.reason


def test_helpers():
    t = np.arange(0, 5, 0.01)
    x = np.zeros_like(t)
    x[[100, 230, 380]] = 5.0
    pt, _ = adaptive_peaks(x, t, 1.0, 3.0, 0.08, 10.0)
    assert np.allclose(pt, [1.0, 2.3, 3.8])
    assert periodicity(np.arange(0, 5, 0.5)) > 0.95
    assert periodicity(np.array(IRREGULAR)) < 0.75


def test_the_report_and_the_plot_carry_the_matched_pairs(tmp_path):
    """Issue 16: the evidence behind an events offset is in the JSON report and in the plot."""
    from avsync.plot import plot_report
    from avsync.timeline import build_report, tolerance

    V = render(IRREGULAR)
    A = audio_features(clicks([t - 0.2 for t in IRREGULAR]), SR)
    e = EventEstimator(EstimatorOptions(max_lag_ms=1000)).estimate(SimpleNamespace(visual=V, audio=A))
    media = {"path": "ball.mp4", "duration_s": 12.0, "video_fps": FPS}
    rep = build_report(media, "events", e, [], tolerance("ebu-r37"))
    ev = rep.to_dict()["events"]
    assert ev["matched"] == e.stats["matched"] >= 6 and ev["pairs"] == e.stats["pairs"]
    assert all(abs((v - a) * 1000 - 200.0) <= 45.0 for v, a in ev["pairs"])

    def brown(path):  # pixels of the pairs' colour (matplotlib's tab:brown)
        import matplotlib.image

        img = matplotlib.image.imread(str(path))[:, :, :3]
        return int((np.abs(img - np.array([0x8C, 0x56, 0x4B]) / 255.0).max(axis=2) < 0.08).sum())

    with_pairs = brown(plot_report(rep, tmp_path / "with.png"))
    e.stats = {k: v for k, v in e.stats.items() if k != "pairs"}
    without = brown(plot_report(build_report(media, "events", e, [], tolerance("ebu-r37")), tmp_path / "without.png"))
    assert "events" not in build_report(media, "events", e, [], tolerance("ebu-r37")).to_dict()
    assert with_pairs > without + 50
