"""The one face pipeline (avsync.features.faces) without a detector: the Detection vocabulary,
the lips tracker's choice and scaling of a detection, and SyncNet's track building over shots
(detect_faces replaced by a fixed answer)."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.features import faces
from avsync.features.faces import Detection, FaceTracker, find_tracks


def test_detection_box_and_area():
    d = Detection((10, 20, 49, 69), 0.5, 0.5)
    assert d.box.dtype == np.float64 and d.box.tolist() == [20.0, 40.0, 98.0, 138.0]
    assert d.area == 40 * 50  # both corners inside, as dlib counts


def test_tracker_takes_the_most_prominent_face_scaled_as_it_always_was(monkeypatch):
    scale = 400 / 402  # a 402-pixel analysis frame searched at 400
    found = [Detection((10, 10, 60, 60), 2.0, scale), Detection((300, 10, 360, 70), 0.1, scale)]
    monkeypatch.setattr(faces, "detect_faces", lambda img, det, side, up: found)
    tracker = FaceTracker.__new__(FaceTracker)  # no landmark model needed for the detection step
    box, score = tracker._detect_at(np.zeros((300, 402), np.uint8), 400)
    assert score == 0.1  # 61 x 61 pixels outweigh 51 x 51 with a higher score
    # x * (1 / scale): 301.49999999999994, fitted at pixel 301; x / scale would give 301.5 -> 302
    assert box[0] == 300 * (1.0 / scale) and round(box[0]) == 301 and round(found[1].box[0]) == 302


def _frames(n_dark: int, n_bright: int, shape=(240, 320)):
    for k in range(n_dark + n_bright):
        yield k, np.full(shape, 20 if k < n_dark else 200, np.uint8)


def test_tracks_are_cut_at_shot_changes_and_scaled_to_the_full_picture(monkeypatch):
    monkeypatch.setattr(faces, "detect_faces", lambda grey, detector: [Detection((100, 50, 180, 130), 1.0, 1.0)])
    scan = find_tracks(_frames(30, 30), size=(640, 480), detect_every=5)
    assert scan.frames == 60 and scan.shots == [30] and scan.size == (640, 480)
    assert [(t.start, t.end) for t in scan.tracks] == [(0, 30), (30, 60)]
    assert scan.coverage == 1.0
    for t in scan.tracks:
        assert np.allclose(t.boxes, [200, 100, 360, 260])  # x2: the frames are half the picture's size
        assert t.detections == 6


def test_no_face_no_track_and_unknown_detector(monkeypatch):
    monkeypatch.setattr(faces, "detect_faces", lambda grey, detector: [])
    scan = find_tracks(_frames(20, 0))
    assert scan.frames == 20 and scan.tracks == [] and scan.coverage == 0.0
    from avsync.errors import UsageError

    with pytest.raises(UsageError):
        find_tracks(_frames(5, 0), detector="s3fd")
