"""features.several: which faces are followed, and the region each is followed in."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.features import several
from avsync.features.faces import Detection


def _det(x0, y0, x1, y1):
    return Detection((x0, y0, x1, y1), 1.0, 1.0)


def test_faces_seen_on_half_the_frames_widest_first(monkeypatch):
    # A (wide) on every frame, B on 3 of 4 with a little jitter, C once, D on every frame but tiny
    seen = iter([
        [_det(10, 10, 110, 110), _det(300, 20, 370, 90), _det(500, 10, 520, 30)],
        [_det(12, 11, 112, 111), _det(303, 22, 373, 92), _det(200, 200, 260, 260), _det(501, 10, 521, 30)],
        [_det(11, 10, 111, 110), _det(500, 11, 520, 31)],
        [_det(10, 12, 110, 112), _det(298, 19, 368, 89), _det(500, 10, 520, 30)],
    ])
    monkeypatch.setattr("avsync.features.faces.detect_faces", lambda img, det, side, up=None: next(seen))
    boxes = several.scan_faces([np.zeros((360, 640), np.uint8)] * 8)
    assert len(boxes) == 2
    assert boxes[0][0] == pytest.approx(10.75) and boxes[1][0] == pytest.approx(300.3333, abs=1e-3)


def test_no_face_or_one_face(monkeypatch):
    monkeypatch.setattr("avsync.features.faces.detect_faces", lambda img, det, side, up=None: [])
    assert several.scan_faces([np.zeros((100, 100), np.uint8)] * 3) == []
    assert several.scan_faces([]) == []


def test_regions_hold_their_face_and_stop_short_of_the_neighbour():
    a, b = np.array([100.0, 100, 180, 180]), np.array([260.0, 110, 330, 180])
    ra, rb = several.regions([a, b], (360, 640))
    for r, box in ((ra, a), (rb, b)):
        assert r[0] <= box[0] and r[1] <= box[1] and r[2] >= box[2] and r[3] >= box[3]
        assert 0 <= r[0] < r[2] <= 640 and 0 <= r[1] < r[3] <= 360
    assert ra[2] <= 225 and rb[0] >= 215  # each stops about halfway across the 80-px gap
    assert ra[2] < b[0] and rb[0] > a[2]  # neither holds the other face


def test_faces_one_above_the_other_keep_full_width():
    # not beside each other: no narrowing (the regions may overlap, each face is still followed)
    a, b = np.array([100.0, 20, 160, 80]), np.array([110.0, 250, 170, 310])
    ra, rb = several.regions([a, b], (360, 640))
    assert ra[2] - ra[0] == pytest.approx(2.6 * 60, abs=2)
    assert rb[2] - rb[0] == pytest.approx(2.6 * 60, abs=2)


def test_a_region_the_picture_no_longer_holds_gives_faceless_rows():
    from types import SimpleNamespace

    from avsync.features.visual import VisualFeatureExtractor

    v = VisualFeatureExtractor(25.0, region=(300, 0, 448, 224))
    v.add(SimpleNamespace(image=np.zeros((224, 448), np.uint8), t=0.0))
    v.add(SimpleNamespace(image=np.zeros((160, 160), np.uint8), t=0.04))  # smaller picture
    f = v.finish()
    assert len(f) == 2 and not f.face_detected[1]
    assert all(len(x) == 2 for x in f.mouth.values())
