"""Re-timing without re-encoding (media.remux) and the ``avsync fix`` round trip on a real clip."""
from __future__ import annotations

import json
import os

import pytest

import avsync
from avsync.cli.main import main
from avsync.errors import CannotOpen, MediaError
from avsync.media import VideoFrame
from avsync.media.remux import fix_file, shift_file, shift_streams

TOL_MS = 40.0


def first_times(path):
    """(first video time, first audio time) as decoded, seconds."""
    fv = fa = None
    with avsync.open_media(path) as src:
        for item in src.decode():
            if isinstance(item, VideoFrame):
                fv = item.t if fv is None else fv
            else:
                fa = item.t if fa is None else fa
            if fv is not None and fa is not None:
                break
    return fv, fa


@pytest.fixture(scope="module")
def original(speech_clip):
    return avsync.detect(speech_clip)


@pytest.mark.parametrize("ext", ["mkv", "mp4", "mov"])
def test_audio_delay_moves_the_audio_start(speech_clip, tmp_path, ext):
    v0, a0 = first_times(speech_clip)
    dst = tmp_path / f"late_audio.{ext}"
    shift_streams(speech_clip, dst, 0.2)
    with avsync.open_media(dst) as src:
        info = src.info
        assert info.audio_start_s - info.video_start_s == pytest.approx(0.2, abs=0.002)
        assert info.video_start_s >= 0 and info.audio_start_s >= 0
    v1, a1 = first_times(dst)
    assert (a1 - v1) - (a0 - v0) == pytest.approx(0.2, abs=0.002)


def test_negative_delay_moves_the_video_instead(speech_clip, tmp_path):
    dst = tmp_path / "late_video.mkv"
    shift_streams(speech_clip, dst, -0.12)
    v1, a1 = first_times(dst)
    assert v1 == pytest.approx(0.12, abs=0.002)
    assert a1 == pytest.approx(0.0, abs=0.002)  # nothing went negative


def test_shift_keeps_the_codecs(speech_clip, tmp_path):
    dst = tmp_path / "copy.mkv"
    shift_streams(speech_clip, dst, 0.05)
    with avsync.open_media(speech_clip) as a, avsync.open_media(dst) as b:
        assert (a.info.video_codec, a.info.audio_codec) == (b.info.video_codec, b.info.audio_codec)
        assert (a.info.width, a.info.height, a.info.audio_rate) == (b.info.width, b.info.height, b.info.audio_rate)


def test_errors_are_one_line_and_leave_nothing(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not media")
    with pytest.raises(CannotOpen) as exc:
        fix_file(bad, tmp_path / "out.mkv", 100.0)
    assert "\n" not in str(exc.value) and str(bad) in str(exc.value)
    with pytest.raises(CannotOpen):
        fix_file(tmp_path / "missing.mp4", tmp_path / "out.mkv", 100.0)
    assert sorted(os.listdir(tmp_path)) == ["bad.mp4"]


def test_same_input_and_output_refused(speech_clip):
    with pytest.raises(MediaError):
        shift_file(speech_clip, speech_clip, 0.1)


def test_fix_round_trip(speech_clip, original, tmp_path, capsys):
    """+300 ms audio delay in the container -> ~300 ms more lag -> ``avsync fix`` restores it."""
    assert original.offset_ms is not None
    shifted = tmp_path / "shifted.mkv"
    shift_streams(speech_clip, shifted, 0.3)
    r = avsync.detect(shifted)
    assert r.offset_ms == pytest.approx(original.offset_ms - 300.0, abs=TOL_MS)

    fixed = tmp_path / "fixed.mkv"
    rc = main(["fix", str(shifted), str(fixed), "--offset-ms", "-300", "--json", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["delayed"] == "video" and doc["applied_offset_ms"] == -300.0
    assert doc["after"]["offset_ms"] == pytest.approx(original.offset_ms, abs=TOL_MS)
    assert fixed.is_file()
    assert [p for p in os.listdir(tmp_path) if "partial" in p] == []


def test_fix_measures_when_no_offset_given(far_out_clip, tmp_path, capsys):
    fixed = tmp_path / "fixed.mkv"
    rc = main(["fix", str(far_out_clip), str(fixed), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "before" in out and "after" in out and "delayed the video" in out
    after = avsync.detect(fixed)
    assert abs(after.offset_ms) <= TOL_MS


def test_avi_audio_delay_as_pcm_silence(speech_clip, original, tmp_path):
    """AVI has no audio timestamps: PCM audio is delayed by leading silence (content untouched)."""
    dst = tmp_path / "late_audio.avi"
    fix_file(speech_clip, dst, 200.0)  # audio leads by 200 -> delay the audio
    r = avsync.detect(dst)
    assert r.offset_ms == pytest.approx(original.offset_ms - 200.0, abs=TOL_MS)
