"""The events estimator on a real non-speech clip: a content shift moves its answer by the shift,
and another clip's audio is not answered with confidence."""
from __future__ import annotations

import pytest

from avsync.api import detect
from avsync.bench.shift import write_content_shift
from avsync.options import DetectOptions

CLIP = "event/vggsound_54bz5yqN2IA_4000_14000.mp4"
OTHER = "event/vas_cough_video_00331.mp4"


def _detect(path):
    return detect(str(path), DetectOptions(method="events"))


def test_events_on_a_real_clip_report_their_evidence(media_dir):
    """Runs on a real hits clip and reports its events; on these clips the cue is weak, so the
    honest expectation is evidence in ``stats`` and no confident answer at chance (see
    BENCHMARKS.md: events)."""
    clip = media_dir / CLIP
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    r = _detect(clip)
    assert r.cue == "events"
    assert r.stats["visual_events"] >= 1 and r.stats["audio_events"] >= 4, r.stats
    if r.offset_ms is not None:
        assert len(r.stats["pairs"]) == r.stats["matched"]
        for v, a in r.stats["pairs"]:
            assert abs((v - a) * 1000.0 - r.stats["raw_offset_ms"]) <= 200.0


def test_events_with_another_clips_audio_is_not_confident(media_dir, tmp_path):
    clip, other = media_dir / CLIP, media_dir / OTHER
    if not clip.is_file() or not other.is_file():
        pytest.skip("clips not found")
    out = tmp_path / "null.mkv"
    write_content_shift(str(clip), str(other), str(out), 0.0)
    r = _detect(out)
    assert r.confidence < 0.5, (r.offset_ms, r.stats)
