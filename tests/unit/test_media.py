"""The media layer on small synthetic files: exact timestamps, late streams, VFR,
audio conversion, rotation, analysis sizes."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from avsync.errors import CannotOpen
from avsync.media import AudioChunk, DecodeOptions, VideoFrame, analysis_size, open_media
from avsync.media.synth import make_clip


def _decode(path, **opts):
    frames, chunks = [], []
    with open_media(path) as src:
        info = src.info
        for item in src.decode(DecodeOptions(**opts)):
            (chunks if isinstance(item, AudioChunk) else frames).append(item)
    return info, frames, chunks


def _audio_timeline(chunks):
    """(start, samples) with the chunks laid end to end; checks they are contiguous."""
    assert chunks
    t = chunks[0].start
    for c in chunks:
        assert c.start == t, "audio chunks must follow each other without holes or overlaps"
        t = c.start + Fraction(c.samples.size, c.rate)
    return chunks[0].start, np.concatenate([c.samples for c in chunks])


def _onsets(start, x, rate, thr=0.05, refractory_s=0.1):
    """Times where the audio first rises above ``thr`` after being quiet."""
    loud = np.flatnonzero(np.abs(x) > thr)
    out, last = [], -1e9
    for i in loud:
        if i - last > refractory_s * rate:
            out.append(float(start) + i / rate)
        last = i
    return np.asarray(out)


def test_timestamps_are_exact_fractions(tmp_path):
    p = tmp_path / "cfr.mp4"
    make_clip(p, duration_s=2.0, fps=25)
    info, frames, chunks = _decode(p)
    assert len(frames) == 50
    for k, f in enumerate(frames):
        assert isinstance(f.pts, Fraction)
        assert f.pts == Fraction(k, 25)
        assert f.image.dtype == np.uint8 and f.image.ndim == 2
    for c in chunks:
        assert isinstance(c.start, Fraction)
        assert c.rate == 16000
    assert chunks[0].start == 0


def test_fractional_frame_rate_timestamps_exact(tmp_path):
    p = tmp_path / "ntsc.mp4"
    rate = Fraction(30000, 1001)
    make_clip(p, duration_s=1.0, fps=rate, audio="none")
    info, frames, _ = _decode(p)
    assert info.video_fps == pytest.approx(29.97, abs=0.01)
    assert [f.pts for f in frames] == [k / rate for k in range(len(frames))]


def test_late_audio_stream_pcm_is_exact(tmp_path):
    p = tmp_path / "late.mkv"
    ev = make_clip(p, duration_s=2.0, audio_start_s=0.2, audio_codec="pcm_s16le")
    info, frames, chunks = _decode(p)
    assert frames[0].pts == 0
    assert chunks[0].start == Fraction(1, 5)
    assert info.audio_start_s == pytest.approx(0.2)
    start, x = _audio_timeline(chunks)
    on = _onsets(start, x, 16000)
    assert len(on) == len(ev.audio)
    assert np.allclose(on, ev.audio, atol=0.003)


def test_late_audio_stream_aac_mp4(tmp_path):
    """AAC in MP4 carries encoder priming; the decoded timeline must still put the
    content 0.2 s late (the first chunk may start up to one AAC frame earlier)."""
    p = tmp_path / "late.mp4"
    ev = make_clip(p, duration_s=3.0, audio_start_s=0.2)
    ref = tmp_path / "ref.mp4"
    ev0 = make_clip(ref, duration_s=3.0)
    _, frames, chunks = _decode(p)
    _, _, chunks0 = _decode(ref)
    assert frames[0].pts == 0
    assert 0.2 - 1024 / 48000 - 0.002 <= float(chunks[0].start) <= 0.2 + 1e-9
    on = _onsets(*_audio_timeline(chunks), 16000)
    on0 = _onsets(*_audio_timeline(chunks0), 16000)
    assert len(on) == len(ev.audio) and len(on0) == len(ev0.audio)
    assert np.allclose(on, ev.audio, atol=0.004)
    assert np.allclose(on - on0, 0.2, atol=0.002)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate_timestamps_kept(tmp_path, ext):
    p = tmp_path / f"vfr.{ext}"
    ev = make_clip(p, duration_s=3.0, vfr=True, audio="none")
    _, frames, _ = _decode(p)
    got = [f.pts for f in frames]
    assert len(got) == len(ev.frame_times)
    assert np.allclose([float(t) for t in got], ev.frame_times, atol=1e-9)
    steps = np.diff([float(t) for t in got])
    assert steps.min() < 0.03 and steps.max() > 0.05  # really irregular


@pytest.mark.parametrize("rate,channels,codec,ext", [
    (8000, 1, "aac", "mp4"),
    (8000, 1, "pcm_s16le", "mkv"),
    (48000, 2, "aac", "mp4"),
    (44100, 1, "pcm_s16le", "mov"),
    (48000, 6, "aac", "mp4"),
])
def test_audio_converted_to_16k_mono(tmp_path, rate, channels, codec, ext):
    p = tmp_path / f"a{rate}_{channels}.{ext}"
    ev = make_clip(p, duration_s=2.5, audio_rate=rate, channels=channels, audio_codec=codec)
    info, _, chunks = _decode(p)
    assert info.audio_rate == rate
    assert info.audio_channels == channels
    for c in chunks:
        assert c.rate == 16000
        assert c.samples.ndim == 1 and c.samples.dtype == np.float32
    start, x = _audio_timeline(chunks)
    assert len(x) / 16000 == pytest.approx(2.5, abs=0.08)
    assert np.abs(x).max() <= 4.0  # a 5.1 downmix may sum channels
    on = _onsets(start, x, 16000, thr=0.03)
    assert len(on) == len(ev.audio)
    # AAC at 8 kHz has 128 ms transform blocks: pre-echo moves a click's onset earlier
    tol = 0.02 if (codec == "aac" and rate < 16000) else 0.004
    assert np.allclose(on, ev.audio, atol=tol)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_gives_rotated_frames(tmp_path, rotation):
    p = tmp_path / f"rot{rotation}.mp4"
    make_clip(p, duration_s=0.5, width=320, height=240, rotation=rotation, audio="none")
    info, frames, _ = _decode(p)
    assert info.rotation == rotation
    assert (info.width, info.height) == (320, 240)  # coded size
    img = frames[0].image
    assert img.shape == ((320, 240) if rotation in (90, 270) else (240, 320))
    # the bright marker is stored top-left; after turning it for display it sits at:
    h, w = img.shape
    corners = {"tl": img[: h // 12, : w // 12], "tr": img[: h // 12, -w // 12:],
               "bl": img[-h // 12:, : w // 12], "br": img[-h // 12:, -w // 12:]}
    want = {90: "tr", 180: "br", 270: "bl"}[rotation]
    bright = max(corners, key=lambda k: corners[k].mean())
    assert bright == want


def test_unrotated_marker_top_left(tmp_path):
    p = tmp_path / "rot0.mp4"
    make_clip(p, duration_s=0.3, audio="none")
    info, frames, _ = _decode(p)
    assert info.rotation == 0
    img = frames[0].image
    assert img[:10, :10].mean() > 150 and img[-10:, -10:].mean() < 100


@pytest.mark.parametrize("w,h,side,expected", [
    (1920, 1080, 640, (640, 360)),
    (3840, 2160, 640, (640, 360)),
    (320, 240, 640, (320, 240)),  # never upscaled
    (1080, 1920, 640, (360, 640)),  # portrait
    (321, 241, 640, (320, 240)),  # always even
    (1280, 720, 320, (320, 180)),
    (2, 2, 640, (2, 2)),
    (5000, 3, 640, (640, 2)),
])
def test_analysis_size(w, h, side, expected):
    aw, ah = analysis_size(w, h, side)
    assert (aw, ah) == expected
    assert aw % 2 == 0 and ah % 2 == 0 and max(aw, ah) <= max(side, 2)


def test_analysis_frames_downscaled(tmp_path):
    p = tmp_path / "big.mp4"
    make_clip(p, duration_s=0.2, width=1280, height=720, audio="none")
    _, frames, _ = _decode(p, max_side=320)
    assert frames[0].image.shape == (180, 320)


def test_decode_options_select_streams_and_limit(tmp_path):
    p = tmp_path / "both.mp4"
    make_clip(p, duration_s=3.0)
    _, frames, chunks = _decode(p, video=False)
    assert not frames and chunks
    _, frames, chunks = _decode(p, audio=False)
    assert frames and not chunks
    _, frames, chunks = _decode(p, max_duration_s=1.0)
    assert max(f.t for f in frames) <= 1.0 + 1e-9
    assert 20 <= len(frames) <= 26


def test_info_and_require(tmp_path):
    from avsync.errors import NoAudio, NoVideo

    v = tmp_path / "v.mp4"
    make_clip(v, duration_s=1.0, audio="none", fps=7.5)
    a = tmp_path / "a.m4a"
    make_clip(a, duration_s=1.0, video="none")
    with open_media(v) as src:
        assert src.info.has_video and not src.info.has_audio
        assert src.info.video_fps == pytest.approx(7.5)
        with pytest.raises(NoAudio):
            src.require()
        d = src.info.to_dict()
        assert {"path", "duration_s", "video_fps", "audio_rate", "width", "height"} <= set(d)
    with open_media(a) as src:
        assert src.info.has_audio and not src.info.has_video
        with pytest.raises(NoVideo):
            src.require()


def test_closed_source_raises(tmp_path):
    p = tmp_path / "c.mp4"
    make_clip(p, duration_s=0.5)
    src = open_media(p)
    src.close()
    with pytest.raises(CannotOpen):
        list(src.decode())


def test_items_are_typed(tmp_path):
    p = tmp_path / "t.mkv"
    make_clip(p, duration_s=0.5, audio_codec="pcm_s16le")
    with open_media(p) as src:
        kinds = {type(i) for i in src.decode()}
    assert kinds == {VideoFrame, AudioChunk}


# -- the one decode walk: what it can produce ---------------------------------------------------
def test_extra_sides_match_separate_decodes(tmp_path):
    """One decode with ``extra_sides`` gives, bit for bit, the pictures of a decode at each size."""
    p = tmp_path / "big.mp4"
    make_clip(p, duration_s=1.0, width=640, height=480)
    _, both, _ = _decode(p, max_side=640, extra_sides=(320, 100), audio=False)
    _, big, _ = _decode(p, max_side=640, audio=False)
    _, mid, _ = _decode(p, max_side=320, audio=False)
    _, small, _ = _decode(p, max_side=100, audio=False)
    assert len(both) == len(big) == len(mid) == len(small) == 25
    for f, a, b, c in zip(both, big, mid, small):
        assert f.pts == a.pts
        assert np.array_equal(f.image, a.image)
        assert np.array_equal(f.extra[0], b.image) and np.array_equal(f.extra[1], c.image)
        assert f.extra[0].shape == (240, 320)


def test_colour_orders_and_no_rotation(tmp_path):
    p = tmp_path / "rot.mp4"
    make_clip(p, duration_s=0.5, width=320, height=240, rotation=90, audio="none")
    _, bgr, _ = _decode(p, colour=True, audio=False)
    _, rgb, _ = _decode(p, colour="rgb", audio=False, rotate=False)
    assert bgr[0].image.shape == (320, 240, 3)  # turned upright
    assert rgb[0].image.shape == (240, 320, 3)  # as stored
    assert bgr[0].image.dtype == rgb[0].image.dtype == np.uint8


def test_native_rate_stereo_and_planar_audio(tmp_path):
    p = tmp_path / "st.mkv"
    make_clip(p, duration_s=1.0, audio_rate=44100, channels=2, audio_codec="pcm_s16le")
    _, _, packed = _decode(p, video=False, audio_rate=None, audio_layout=None, audio_format="s16")
    _, _, planar = _decode(p, video=False, audio_rate=None, audio_layout="stereo", audio_format="fltp")
    assert all(c.rate == 44100 and c.samples.ndim == 2 and c.samples.shape[1] == 2 for c in packed + planar)
    assert packed[0].samples.dtype == np.int16 and planar[0].samples.dtype == np.float32
    a = np.concatenate([c.samples for c in packed]).astype(np.float64) / 32768
    b = np.concatenate([c.samples for c in planar]).astype(np.float64)
    assert a.shape == b.shape and a.shape[0] == 44100
    assert np.abs(a - b).max() < 1e-4


def test_gap_filling_can_be_turned_off(tmp_path):
    p = tmp_path / "late.mkv"
    make_clip(p, duration_s=2.0, audio_codec="pcm_s16le", audio_start_s=0.5)
    _, _, filled = _decode(p)
    _, _, raw = _decode(p, fill_gaps=False)
    assert filled[0].start == raw[0].start == Fraction(1, 2)
    assert sum(c.samples.size for c in filled) == sum(c.samples.size for c in raw)


def test_video_span_keeps_only_pictures_inside(tmp_path):
    p = tmp_path / "span.mp4"
    make_clip(p, duration_s=2.0, fps=25)
    _, frames, chunks = _decode(p, video_span=(0.5, 1.0))
    assert [f.pts for f in frames] == [Fraction(k, 25) for k in range(13, 25)]  # 12/25 < 0.5
    assert chunks and chunks[0].start == 0  # the audio is not cut


def test_decoding_twice_gives_the_same_items(tmp_path):
    p = tmp_path / "twice.mp4"
    make_clip(p, duration_s=1.0)
    a, b = _decode(p), _decode(p)
    assert [f.pts for f in a[1]] == [f.pts for f in b[1]]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a[1], b[1]))
    assert all(np.array_equal(x.samples, y.samples) for x, y in zip(a[2], b[2]))


def test_media_package_has_no_private_cross_imports():
    """No module of avsync.media imports a _private name of another."""
    import ast
    from pathlib import Path

    import avsync.media

    root = Path(avsync.media.__file__).parent
    bad = []
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                bad += [f"{f.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, bad


def test_loop_file_copies_packets_end_to_end(tmp_path):
    from avsync.media.remux import loop_file, packet_span

    src, dst = tmp_path / "one.mkv", tmp_path / "loop.mkv"
    make_clip(src, duration_s=1.0, audio_codec="pcm_s16le")
    one = packet_span(src)
    assert loop_file(src, dst, 2.5) == pytest.approx(3 * one)
    assert packet_span(dst) == pytest.approx(3 * one, abs=0.05)
    _, frames, _ = _decode(dst, audio=False)
    assert len(frames) == 75 and frames[25].pts == Fraction(1)


def test_playlist_content_is_not_media_whatever_its_name(tmp_path):
    """A file that holds a playlist (or concat list) is refused before FFmpeg reads anything it names
    (issue 14: an upload is a file, never a playlist)."""
    from avsync.errors import CannotOpen
    from avsync.media import open_media
    from avsync.media.base import _direct_formats

    secret = tmp_path / "secret.ts"
    secret.write_bytes(b"\x47" * 188 * 4)
    for name, text in (("a.mp4", f"#EXTM3U\n#EXTINF:2,\n{secret}\n#EXT-X-ENDLIST\n"),
                       ("b.ts", f"\ufeff  #EXTM3U\n#EXTINF:2,\n{secret}\n"),
                       ("c.mkv", f"ffconcat version 1.0\nfile '{secret}'\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(CannotOpen) as ei:
            open_media(tmp_path / name)
        assert "not a media file" in str(ei.value)
    allowed = set(_direct_formats().split(","))
    assert {"mov", "matroska", "mpegts", "wav"} <= allowed
    assert not allowed & {"hls", "concat", "sdp", "rtsp", "lavfi", "image2"}


def test_refuse_playlists_opens_every_path_as_a_file(tmp_path):
    import subprocess
    import sys

    (tmp_path / "x.m3u8").write_text("#EXTM3U\n#EXTINF:2,\nhttp://127.0.0.1:9/a.ts\n")
    code = ("import sys; from avsync.media import open_media, refuse_playlists; refuse_playlists()\n"
            "from avsync.errors import CannotOpen\n"
            "for p in (sys.argv[1], 'http://127.0.0.1:9/x.m3u8'):\n"
            "    try: open_media(p)\n"
            "    except CannotOpen as e: print('refused', e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.m3u8")], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.count("refused") == 2, r.stdout + r.stderr
