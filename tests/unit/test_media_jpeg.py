"""The in-memory MJPEG round trip of the SyncNet reference (avsync.media.jpeg) on synthetic pictures.

The comparison with the reference's own JPEG files and scores is in
tests/integration/test_syncnet_reference.py; here: the range conversion's fixed points, the rate
control climbing as ffmpeg's does, and the pictures coming back as OpenCV reads them."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from avsync.media.jpeg import CHROMA_TO_FULL, LUMA_TO_FULL, MjpegRoundTrip, encoder_versions, jpeg_qscale  # noqa: E402


def test_range_tables_map_limited_to_full_range():
    # limited-range black / white and the chroma extremes land on 0 / 255, grey chroma stays 128
    assert (LUMA_TO_FULL[16], LUMA_TO_FULL[235]) == (0, 255)
    assert (CHROMA_TO_FULL[16], CHROMA_TO_FULL[128], CHROMA_TO_FULL[240]) == (0, 128, 255)
    assert LUMA_TO_FULL[:17].max() == 0 and LUMA_TO_FULL[235:].min() == 255
    assert np.all(np.diff(LUMA_TO_FULL.astype(int)) >= 0) and np.all(np.diff(CHROMA_TO_FULL.astype(int)) >= 0)
    # FFmpeg 5.1's rounding: 8-bit luma 100 -> 98 (1.1644 * 84 = 97.8), not a float formula's guess
    assert LUMA_TO_FULL[100] == 98 and LUMA_TO_FULL[128] == 130


def _noise_frames(n: int, size: int = 64, seed: int = 3):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        img = rng.integers(16, 236, (size, size, 3), dtype=np.uint8)
        yield av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")


def test_rate_control_climbs_and_pictures_come_back_bgr():
    rt = MjpegRoundTrip(Fraction(25), Fraction(1, 1))
    out = [rt.bgr(f) for f in _noise_frames(30)]
    assert all(o.shape == (64, 64, 3) and o.dtype == np.uint8 for o in out)
    q = rt.qscales
    assert len(q) == 30 and all(2 <= x <= 31 for x in q)
    assert q[0] < 10 and q[-1] > q[0]  # noise at 200 kbit/s: the quantiser rises from a fine start


def test_encoding_is_deterministic_and_depends_on_history():
    frames = list(_noise_frames(12))
    a, b = MjpegRoundTrip(25), MjpegRoundTrip(25)
    ja = [a.encode(f) for f in frames]
    jb = [b.encode(f) for f in frames]
    assert ja == jb
    fresh = MjpegRoundTrip(25).encode(frames[-1])  # the last picture alone: another quantiser
    assert jpeg_qscale(fresh) != jpeg_qscale(ja[-1])


def test_full_range_input_passes_through():
    img = np.full((16, 16), 7, np.uint8)
    f = av.VideoFrame.from_ndarray(np.stack([img] * 3, -1), format="bgr24").reformat(format="yuvj420p")
    out = MjpegRoundTrip(25).full_range(f)
    assert out.format.name == "yuvj420p"
    for i in range(3):
        assert np.array_equal(_plane(out, i), _plane(f, i))


def _plane(frame, i):
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]


def test_encoder_versions_name_the_library():
    v = encoder_versions()
    assert v["follows_ffmpeg"] == "5.1" and v["libavcodec"].count(".") == 2 and isinstance(v["verified"], bool)


@pytest.mark.parametrize("src, sampling", [("yuv420p", (0x22, 0x11)), ("yuv422p", (0x22, 0x12)),
                                           ("yuv444p", (0x12, 0x12))])
def test_chroma_subsampling_kept_as_ffmpeg_picks_it(src, sampling):
    """ffmpeg's command line encodes 4:2:2 / 4:4:4 sources as yuvj422p / yuvj444p, not 4:2:0."""
    img = np.random.default_rng(1).integers(16, 236, (32, 48, 3), dtype=np.uint8)
    f = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format=src)
    data = MjpegRoundTrip(25).encode(f)
    sof = data.find(b"\xff\xc0")
    # the luma and first chroma component's sampling factors (libavcodec's way of writing them)
    assert sof > 0 and (data[sof + 11], data[sof + 14]) == sampling
