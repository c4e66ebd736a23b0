"""SyncNet face tracks on the real speech clips: coverage, crops that contain a face,
shot changes, several faces, and the debug picture."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avsync.media import open_media
from avsync.estimators.syncnet.plugin import scan_faces
from avsync.estimators.syncnet.prep import Timeline25
from avsync.features.faces import crop, detect_faces

SRC = str(Path(__file__).resolve().parents[2] / "src")
#: clips that are already face crops made by a lip-reading pipeline (``--crop none`` inputs)
FACE_CROPS = ("syncnet_example.avi", "lrs2_demo_")


def speech_clips(media_dir):
    return sorted(p for p in (media_dir / "speech").iterdir() if p.suffix in (".mp4", ".avi", ".mpg"))


def test_face_track_coverage_on_every_speech_clip(media_dir):
    low = {}
    seen = 0
    for clip in speech_clips(media_dir):
        if clip.name.startswith(FACE_CROPS):
            continue
        seen += 1
        with open_media(clip) as src:
            scan = scan_faces(src)
        if scan.coverage < 0.9:
            low[clip.name] = round(scan.coverage, 3)
        # the tracks' boxes lie on the picture and have a face's size
        for t in scan.tracks:
            w = t.boxes[:, 2] - t.boxes[:, 0]
            assert (w > 20).all() and (w < max(scan.size)).all()
    assert seen >= 10
    assert not low, f"face track coverage below 90 %: {low}"


def test_crops_are_centred_faces(media_dir):
    """The 224 crop of a tracked face contains a face again, near the middle, of the reference's size."""
    clip = media_dir / "speech/vretalk_face2.mp4"
    with open_media(clip) as src:
        scan = scan_faces(src)
    assert len(scan.tracks) == 1
    tr = scan.tracks[0]
    found = 0
    with open_media(clip) as src:
        for k, img in Timeline25(src, colour=True, audio=False):
            if k % 10 or tr.box_at(k) is None:
                continue
            c = crop(img, tr.box_at(k))
            assert c.shape == (224, 224, 3) and c.dtype == np.uint8
            faces = detect_faces(np.ascontiguousarray(c[:, :, 1]))
            if faces:
                b = faces[0].box
                cx = (b[0] + b[2]) / 2
                width = b[2] - b[0]
                assert 80 < cx < 144 and 90 < width < 160, b
                found += 1
    assert found >= 8


def _ffmpeg(*args):
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg command line to compose test clips")
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def test_two_faces_and_a_shot_change(media_dir, tmp_path):
    a, b = media_dir / "speech/vretalk_face2.mp4", media_dir / "speech/vretalk_face3.mp4"
    side = tmp_path / "side.mp4"
    _ffmpeg("-i", a, "-i", b, "-filter_complex", "[0:v]scale=480:480[l];[1:v]scale=480:480[r];[l][r]hstack",
            "-map", "0:a", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", side)
    with open_media(side) as src:
        scan = scan_faces(src)
    assert len(scan.tracks) == 2
    centres = sorted((t.boxes[:, 0] + t.boxes[:, 2]).mean() / 2 for t in scan.tracks)
    assert centres[0] < 480 < centres[1]
    cut = tmp_path / "cut.mp4"
    _ffmpeg("-i", a, "-i", b, "-filter_complex",
            "[0:v]trim=0:2,setpts=PTS-STARTPTS,scale=480:480[l];[1:v]trim=0:2,setpts=PTS-STARTPTS,scale=480:480[r];"
            "[l][r]concat=n=2:v=1:a=0", "-c:v", "libx264", "-preset", "ultrafast", "-an", cut)
    with open_media(cut) as src:
        scan = scan_faces(src)
    assert len(scan.shots) == 1 and abs(scan.shots[0] - 50) <= 1
    assert len(scan.tracks) == 2
    assert all(t.end <= scan.shots[0] or t.start >= scan.shots[0] for t in scan.tracks)
    assert scan.coverage > 0.9


def test_cli_several_faces_debug_png(media_dir, tmp_path):
    pytest.importorskip("torch")
    from avsync.nn.syncnet_v2 import SyncNetV2, save_weights

    a, b = media_dir / "speech/vretalk_face2.mp4", media_dir / "speech/vretalk_face3.mp4"
    side = tmp_path / "two faces.mp4"
    _ffmpeg("-i", a, "-i", b, "-filter_complex", "[0:v]scale=320:320[l];[1:v]scale=320:320[r];[l][r]hstack",
            "-map", "0:a", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", side)
    w = tmp_path / "syncnet_v2.model"
    save_weights(SyncNetV2(), w)
    env = dict(os.environ, PYTHONPATH=SRC)
    p = subprocess.run([sys.executable, "-m", "avsync", "detect", str(side), "--method", "syncnet", "--weights",
                        str(w), "--json", "--debug-dir", str(tmp_path / "dbg")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    tracks = d["syncnet"]["tracks"]
    assert len(tracks) == 2
    chosen = d["syncnet"]["chosen_track"]
    assert tracks[chosen]["lse_c"] == max(t["lse_c"] for t in tracks) == pytest.approx(d["lse_c"], abs=1e-4)
    png = tmp_path / "dbg" / "two_faces.syncnet.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import cv2

    img = cv2.imread(str(png))
    assert img.shape[0] > 224 and img.shape[1] >= 224 * 8
