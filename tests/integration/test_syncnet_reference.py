"""SyncNet against the public reference code's own outputs (issue 17).

``../shared/syncnet-reference/`` holds a fixed fake weights file and, for two shared clips, the
numbers that the public SyncNet code (joonson/syncnet_python, ``SyncNetInstance.evaluate()``) gave
with it: offset, min dist (LSE-D), confidence (LSE-C), the 31-value mean distance curve and the
frame-wise confidence, JPEG round trip of its ffmpeg 5.1 frame extraction included.  This test runs
``avsync detect --method syncnet --crop none`` on those clips and compares with those files.

Unlike ``test_syncnet_equivalence.py`` (a re-implementation written in this repository, which can
only show that the package agrees with the project's own reading of the procedure), the expected
numbers here were produced by the public code itself.

The reference's pictures depend on its FFmpeg version (5.1.9): the MJPEG rate control and the
range conversion are inputs.  The round trip uses PyAV's bundled libavcodec, checked at
:data:`avsync.media.jpeg.LIBAVCODEC_VERIFIED`; with another one, a mismatch is reported as an
expected failure that names the version, not as a silent pass.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

REPO_SRC = str(Path(__file__).resolve().parents[2] / "src")
CLIPS = {"syncnet_example": "speech/syncnet_example.avi",
         "merkel_mismatched_08": "known_offset/merkel_mismatched_08.avi"}
#: acceptance (issue 17): curve within 1e-3 relative, LSE-D and LSE-C within 1e-3
CURVE_REL = 1e-3
LSE_ABS = 1e-3


def _unverified() -> str | None:
    """Why a mismatch may come from the libavcodec in use rather than from the code (None: verified)."""
    import av

    from avsync.media.jpeg import LIBAVCODEC_VERIFIED

    have = tuple(av.library_versions["libavcodec"][:2])
    if have == LIBAVCODEC_VERIFIED:
        return None
    return (f"PyAV's libavcodec {have[0]}.{have[1]} is not the {LIBAVCODEC_VERIFIED[0]}.{LIBAVCODEC_VERIFIED[1]} "
            "checked against the reference's ffmpeg 5.1.9: its MJPEG rate control may give other pictures")


@pytest.fixture(scope="module")
def refdir(shared_dir) -> Path:
    d = shared_dir / "syncnet-reference"
    if not (d / "fake_syncnet_v2_seed777.model").is_file():
        pytest.skip(f"SyncNet reference fixture not found at {d}")
    return d


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _detect(clip, weights, extra=()) -> dict:
    cmd = [sys.executable, "-m", "avsync", "detect", str(clip), "--method", "syncnet", "--weights", str(weights),
           "--crop", "none", "--json", *extra]
    env = dict(os.environ, PYTHONPATH=REPO_SRC)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _medfilt9_zero_padded(x: np.ndarray) -> np.ndarray:
    """The reference's ``scipy.signal.medfilt(x, kernel_size=9)``: zeros beyond both ends."""
    padded = np.concatenate([np.zeros(4), x, np.zeros(4)])
    return np.array([np.median(padded[i:i + 9]) for i in range(x.size)])


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_detect_matches_public_reference_outputs(name, refdir, shared_dir):
    ref = json.loads((refdir / f"{name}.json").read_text())
    clip = shared_dir / "media" / CLIPS[name]
    weights = refdir / "fake_syncnet_v2_seed777.model"
    assert _sha256(clip) == ref["clip_sha256"], "the shared clip is not the one the reference scored"
    assert _sha256(weights) == ref["weights_sha256"]
    doc = _detect(clip, weights)
    try:
        _compare(doc, ref)
    except AssertionError:
        reason = _unverified()
        if reason:
            pytest.xfail(reason)
        raise
    pictures = doc["syncnet"]["pictures"]
    assert pictures["frames"] == "jpeg" and pictures["follows_ffmpeg"] == "5.1"
    assert pictures["verified"] == (_unverified() is None)


def _compare(doc: dict, ref: dict) -> None:
    sync = doc["syncnet"]

    # the windows the reference counted: min(frames, samples // 640) - 5
    assert sync["frames_25fps"] == ref["n_video_frames"]
    assert sync["tracks"][0]["windows"] == ref["n_windows"]

    curve = np.array(doc["profile"]["value"])
    rc = np.array(ref["mean_dist"])
    assert curve.size == rc.size == 31
    rel = np.abs(curve - rc) / np.abs(rc)
    assert rel.max() < CURVE_REL, f"curve deviates by {rel.max():.3g} relative (worst at index {rel.argmax()})"

    assert sync["offset_frames_25fps"] == ref["offset"]
    assert doc["offset_ms"] == pytest.approx(ref["offset"] * 40.0)
    assert abs(doc["lse_d"] - ref["min_dist"]) < LSE_ABS, (doc["lse_d"], ref["min_dist"])
    assert abs(doc["lse_c"] - ref["confidence"]) < LSE_ABS, (doc["lse_c"], ref["confidence"])

    # frame-wise confidence as the reference computes it: median(curve) - each window's distance at
    # the chosen shift, median-filtered (kernel 9, zeros beyond the ends)
    fconf = np.array(sync["framewise_confidence"])
    assert fconf.size == ref["n_windows"] == len(ref["framewise_conf"])
    unf = np.array(ref["framewise_conf_unfiltered"])
    assert np.abs(_medfilt9_zero_padded(unf) - np.array(ref["framewise_conf"])).max() < 1e-5  # the fixture's own rule
    dev = np.abs(fconf - np.array(ref["framewise_conf"]))
    assert dev.max() < LSE_ABS, f"frame-wise confidence off by {dev.max():.3g} (window {dev.argmax()})"


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_mjpeg_rate_control_follows_reference_ffmpeg(name, refdir, shared_dir):
    """The FFmpeg-version dependency: the round trip's quantiser of every picture equals the one in
    the reference's JPEG files (ffmpeg 5.1.9), which rises from 2-4 to 25 over the first second."""
    import av

    from avsync.media.jpeg import MjpegRoundTrip

    ref = json.loads((refdir / f"{name}.json").read_text())
    with av.open(str(shared_dir / "media" / CLIPS[name])) as c:
        vs = c.streams.video[0]
        rt = MjpegRoundTrip(vs.guessed_rate, vs.sample_aspect_ratio)
        for frame in c.decode(vs):
            rt.encode(frame)
    want = ref["jpeg_qscale_per_frame"]
    assert max(want) == 25 and min(want[:5]) == 2  # the fixture's climb, so equality below says something
    if rt.qscales != want:
        reason = _unverified()
        if reason:
            pytest.xfail(reason)
    assert rt.qscales == want


def test_lossless_option_matches_reference_scoring_without_jpeg(refdir, shared_dir):
    """``--syncnet-frames lossless`` scores the decoded pictures themselves: the fixture's
    ``diagnostic_without_jpeg`` (the public code's scoring of frames decoded straight to BGR)."""
    name = "merkel_mismatched_08"
    ref = json.loads((refdir / f"{name}.json").read_text())
    diag = ref["diagnostic_without_jpeg"]
    doc = _detect(shared_dir / "media" / CLIPS[name], refdir / "fake_syncnet_v2_seed777.model",
                  ("--syncnet-frames", "lossless"))
    assert doc["syncnet"]["pictures"] == {"frames": "lossless"}
    curve = np.array(doc["profile"]["value"])
    rel = np.abs(curve - np.array(diag["mean_dist"])) / np.array(diag["mean_dist"])
    assert rel.max() < CURVE_REL, rel.max()
    assert abs(doc["lse_d"] - diag["min_dist"]) < LSE_ABS and abs(doc["lse_c"] - diag["confidence"]) < LSE_ABS
    # and far from the reference itself: the JPEG round trip is what closes the gap
    assert np.max(np.abs(curve - np.array(ref["mean_dist"])) / np.array(ref["mean_dist"])) > 1e-2
