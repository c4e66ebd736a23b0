"""Synthetic sample clips: deterministic, irregular events, and the weight-free
'motion' estimator measures their offset within one frame."""
from __future__ import annotations

import numpy as np
import pytest

import avsync
from avsync.media import open_media
from avsync.media.synth import GAP_RANGE_S, make_clip, make_sample

FRAME_MS = 40.0  # 25 fps


@pytest.mark.parametrize("offset_ms", [-200.0, 0.0, 120.0])
def test_make_sample_offset_measured_by_motion(tmp_path, offset_ms):
    p = tmp_path / f"sample_{offset_ms:+.0f}.mp4"
    ev = make_sample(p, offset_ms=offset_ms)
    assert ev.offset_ms == offset_ms
    report = avsync.detect(p, avsync.DetectOptions(method="motion"))
    assert report.method == "motion"
    assert report.offset_ms is not None, report.reason
    assert abs(report.offset_ms - offset_ms) <= FRAME_MS
    assert report.confidence > 0.5
    assert report.verdict == ("in_sync" if offset_ms == 0 else "out_of_sync")


def test_make_clip_late_audio_stream_measured(tmp_path):
    """A late audio stream is part of the truth: 0.2 s later = 200 ms lag."""
    p = tmp_path / "late.mkv"
    ev = make_clip(p, audio_start_s=0.2)
    assert ev.offset_ms == pytest.approx(-200.0)
    report = avsync.detect(p, avsync.DetectOptions(method="motion"))
    assert abs(report.offset_ms - ev.offset_ms) <= FRAME_MS


def test_events_are_irregular_and_deterministic(tmp_path):
    a = make_sample(tmp_path / "a.mp4", offset_ms=50, duration_s=10.0, seed=3)
    b = make_sample(tmp_path / "b.mp4", offset_ms=50, duration_s=10.0, seed=3)
    c = make_sample(tmp_path / "c.mp4", offset_ms=50, duration_s=10.0, seed=4)
    assert a.video == b.video and a.audio == b.audio
    assert a.video != c.video
    gaps = np.diff(a.video)
    assert gaps.min() >= GAP_RANGE_S[0] - 0.04 - 1e-9 and gaps.max() <= GAP_RANGE_S[1] + 0.04 + 1e-9
    assert gaps.std() > 0.05  # not periodic
    # flashes on frame times; beeps offset_ms earlier
    assert np.allclose(np.asarray(a.video) * 25, np.round(np.asarray(a.video) * 25))
    assert np.allclose(np.asarray(a.video) - np.asarray(a.audio), 0.05, atol=1 / 48000)


def test_make_sample_stream_parameters(tmp_path):
    p = tmp_path / "s.mp4"
    make_sample(p, duration_s=3.0, fps=30, audio_rate=44100)
    with open_media(p) as src:
        info = src.info
    assert info.video_fps == pytest.approx(30)
    assert info.audio_rate == 44100
    assert info.duration_s == pytest.approx(3.0, abs=0.1)
    assert (info.width, info.height) == (320, 240)


def test_make_clip_variants_and_validation(tmp_path):
    ev = make_clip(tmp_path / "still.mp4", duration_s=1.0, video="still")
    assert ev.video == [] and ev.audio  # beeps over a still picture
    ev = make_clip(tmp_path / "quiet.mp4", duration_s=1.0, audio="silence")
    assert ev.video and ev.audio == []
    ev = make_clip(tmp_path / "x.mp4", duration_s=2.0, events=[0.4, 0.5, 1.0])  # 0.5 is between frames
    assert ev.video == [0.4, 0.52, 1.0] and ev.audio == ev.video
    with pytest.raises(ValueError):
        make_clip(tmp_path / "bad.mp4", audio="none", video="none")
    with pytest.raises(ValueError):
        make_clip(tmp_path / "bad.mp4", channels=3)
    with pytest.raises(ValueError):
        make_clip(tmp_path / "bad.mp4", rotation=45)
