"""Odd and broken inputs: avsync.detect either returns a Report (not_assessable with a
reason where there is no cue, a real measurement otherwise) or raises an AvsyncError
whose message is one line naming the file.  Never another exception, never a hang."""
from __future__ import annotations

import concurrent.futures as cf
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import avsync
from avsync.errors import AvsyncError, CannotOpen, NoAudio, NoVideo
from avsync.media.synth import make_clip

TIMEOUT_S = 120
FRAME_MS = 40.0
HOSTILE = "-rf 'quoted' \"double\" ünïcødé 日本 $HOME;|&.mp4"


def _detect(path, **opts):
    """avsync.detect with a watchdog: a hang fails the test instead of blocking it."""
    with cf.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(avsync.detect, path, avsync.DetectOptions(**opts))
        try:
            return fut.result(timeout=TIMEOUT_S)
        except cf.TimeoutError:  # pragma: no cover - only on a hang
            pytest.fail(f"detect({path}) did not finish within {TIMEOUT_S} s")


def outcome(path, **opts):
    """('report', Report) or ('error', AvsyncError), after checking the rules every
    outcome must follow.  Any other exception propagates and fails the test."""
    try:
        report = _detect(path, **opts)
    except AvsyncError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.strip() == msg and msg
        assert os.fspath(path) in msg, f"error does not name the file: {msg!r}"
        assert "Traceback" not in msg
        return "error", exc
    assert isinstance(report, avsync.Report)
    assert report.verdict in ("in_sync", "out_of_sync", "not_assessable")
    assert 0.0 <= report.confidence <= 1.0
    if report.offset_ms is None:
        assert report.verdict == "not_assessable"
        assert report.reason, "a not-assessable report must say why"
    elif report.verdict == "not_assessable":
        assert report.reason
    return "report", report


def assert_measures(path, truth_ms, **opts):
    kind, r = outcome(path, **opts)
    assert kind == "report", f"expected a measurement, got {r}"
    assert r.offset_ms is not None, r.reason
    assert abs(r.offset_ms - truth_ms) <= FRAME_MS, (r.offset_ms, truth_ms)
    return r


def assert_no_cue(path, **opts):
    kind, r = outcome(path, **opts)
    assert kind == "report", f"expected a not-assessable report, got {r}"
    assert r.verdict == "not_assessable" and r.offset_ms is None and r.reason
    return r


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_input")


def _cut(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


# --- no cue: a report that says why ------------------------------------------------------

def test_still_image_with_audio(media):
    p = media / "still.mp4"
    make_clip(p, duration_s=4.0, video="still")
    r = assert_no_cue(p)
    assert "picture" in r.reason


def test_silent_audio(media):
    p = media / "silent.mp4"
    make_clip(p, duration_s=4.0, audio="silence")
    r = assert_no_cue(p)
    assert "silent" in r.reason


# --- missing streams and unreadable files: one-line errors naming the file ----------------

def test_audio_only_file(media):
    for name, codec in (("audio_only.m4a", "aac"), ("audio_only.wav", "pcm_s16le")):
        p = media / name
        make_clip(p, duration_s=2.0, video="none", audio_codec=codec)
        kind, exc = outcome(p)
        assert kind == "error" and isinstance(exc, NoVideo)


def test_video_only_file(media):
    p = media / "video_only.mp4"
    make_clip(p, duration_s=2.0, audio="none")
    kind, exc = outcome(p)
    assert kind == "error" and isinstance(exc, NoAudio)


def test_truncated_mp4_without_index(media):
    full = media / "full.mp4"
    make_clip(full, duration_s=4.0)
    kind, exc = outcome(_cut(full, media / "trunc_half.mp4", 0.5))  # the moov box is at the end
    assert kind == "error" and isinstance(exc, CannotOpen)


def test_truncated_faststart_mp4(media):
    full = media / "full_fs.mp4"
    make_clip(full, duration_s=6.0, offset_ms=120, container_options={"movflags": "faststart"})
    assert_measures(_cut(full, media / "trunc_fs.mp4", 0.6), 120.0)


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.01])
def test_truncated_mkv(media, keep):
    full = media / "full.mkv"
    if not full.exists():
        make_clip(full, duration_s=6.0, offset_ms=-80)
    p = _cut(full, media / f"trunc_{keep}.mkv", keep)
    kind, r = outcome(p)
    if keep == 0.5:
        assert kind == "report" and abs(r.offset_ms - -80.0) <= FRAME_MS


def test_zero_length_file(media):
    p = media / "empty.mp4"
    p.write_bytes(b"")
    kind, exc = outcome(p)
    assert kind == "error" and isinstance(exc, CannotOpen)


def test_random_bytes(media):
    for name in ("random.mp4", "random.bin", "random"):
        p = media / name
        p.write_bytes(np.random.default_rng(7).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
        kind, exc = outcome(p)
        assert kind == "error"


def test_text_file(media):
    for name in ("notes.txt", "notes.mp4", "notes"):
        p = media / name
        p.write_text("This is not a video.\n" * 200)
        kind, exc = outcome(p)
        assert kind == "error" and isinstance(exc, CannotOpen)


def test_missing_file_and_directory(media):
    kind, exc = outcome(media / "does not exist.mp4")
    assert kind == "error" and isinstance(exc, CannotOpen)
    d = media / "a_dir.mp4"
    d.mkdir(exist_ok=True)
    kind, exc = outcome(d)
    assert kind == "error" and isinstance(exc, CannotOpen)


# --- odd but valid media: real measurements ----------------------------------------------

@pytest.mark.parametrize("rate,codec,ext", [(8000, "aac", "mp4"), (8000, "pcm_s16le", "mkv"),
                                            (48000, "aac", "mp4"), (44100, "pcm_s16le", "mov")])
def test_audio_sample_rates(media, rate, codec, ext):
    p = media / f"rate_{rate}.{ext}"
    make_clip(p, duration_s=6.0, audio_rate=rate, audio_codec=codec, offset_ms=120)
    assert_measures(p, 120.0)


def test_surround_5_1(media):
    p = media / "surround.mp4"
    make_clip(p, duration_s=6.0, channels=6, offset_ms=-120)
    assert_measures(p, -120.0)


def test_stereo(media):
    p = media / "stereo.mkv"
    make_clip(p, duration_s=6.0, channels=2, offset_ms=80)
    assert_measures(p, 80.0)


def test_frame_rate_59_94(media):
    p = media / "ntsc60.mp4"
    make_clip(p, duration_s=5.0, fps=Fraction(60000, 1001), offset_ms=100)
    r = assert_measures(p, 100.0)
    assert r.media["video_fps"] == pytest.approx(59.94, abs=0.01)


def test_frame_rate_7_5(media):
    """Few frames per second: a report either way (low confidence is allowed)."""
    p = media / "slow.mp4"
    make_clip(p, duration_s=8.0, fps=7.5, offset_ms=0)
    kind, r = outcome(p)
    assert kind == "report"
    if r.offset_ms is not None:
        assert abs(r.offset_ms) <= 1000 / 7.5


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate(media, ext):
    p = media / f"vfr.{ext}"
    make_clip(p, duration_s=6.0, vfr=True, offset_ms=-160)
    assert_measures(p, -160.0)


def test_rotated_phone_video(media):
    p = media / "phone.mp4"
    make_clip(p, duration_s=6.0, width=640, height=360, rotation=90, offset_ms=120)
    r = assert_measures(p, 120.0)
    assert r.media.get("rotation", 90) == 90


def test_late_audio_stream(media):
    p = media / "late_audio.mp4"
    ev = make_clip(p, duration_s=6.0, audio_start_s=0.2)
    assert_measures(p, ev.offset_ms)


def test_4k_clip(media):
    p = media / "uhd.mp4"
    make_clip(p, duration_s=2.0, width=3840, height=2160, events=[0.6, 1.1, 1.5])
    kind, r = outcome(p)
    assert kind == "report"
    assert r.media["width"] == 3840 and r.media["height"] == 2160


def test_hostile_file_name(media):
    p = media / HOSTILE
    make_clip(p, duration_s=5.0, offset_ms=-100)
    assert_measures(p, -100.0)
    # relative, with a leading dash, from its own folder
    cwd = os.getcwd()
    try:
        os.chdir(media)
        assert_measures(HOSTILE, -100.0)
    finally:
        os.chdir(cwd)
    # a broken file with a hostile name: the message still names it, on one line
    bad = media / ("-bad 'n\u00e4me' \"x\".mp4")
    bad.write_bytes(b"\x00" * 1000)
    kind, exc = outcome(bad)
    assert kind == "error"


def test_newline_in_file_name(media):
    p = media / "two\nlines.mp4"
    p.write_bytes(b"garbage" * 100)
    with pytest.raises(AvsyncError) as info:
        avsync.detect(p)
    assert "\n" not in str(info.value)
