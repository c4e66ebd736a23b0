"""Offline face detection, tracking and 68-point landmarks (dlib HOG + shape predictor).

The detector and the landmark model come with the ``dlib-bin`` and
``face_recognition_models`` packages: nothing is downloaded.  Detection runs every
few frames on a downscaled copy; between detections the face is followed by
re-fitting the landmarks inside the box of the previous frame's landmarks, which is
cheap and follows head motion well.  A track is dropped when the landmark fit stops
looking like a face, and re-acquired by the next detection.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"


def landmark_model_path() -> str:
    """Path of dlib's 68-point model inside the installed ``face_recognition_models`` package.

    Found without importing the package: its ``__init__`` needs ``pkg_resources``, which
    recent setuptools releases no longer ship.
    """
    import importlib.util
    import os

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the face_recognition_models package is not installed")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "models", LANDMARK_MODEL)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{LANDMARK_MODEL} not found in the face_recognition_models package")


@lru_cache(maxsize=1)
def _models():
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(landmark_model_path())
    return dlib, detector, predictor


def landmarks_available() -> bool:
    try:
        _models()
        return True
    except Exception:
        return False


@dataclass
class FaceObservation:
    landmarks: np.ndarray  # (68, 2) float32, pixel coordinates of the analysis frame
    detected: bool  # True on frames where the detector (not the tracker) found the face
    score: float


class FaceTracker:
    """Follows the most prominent face through a sequence of grey frames."""

    def __init__(self, detect_every: int = 5, detect_side: int = 400, idle_detect_every: int = 10):
        self.detect_every = detect_every
        self.idle_detect_every = idle_detect_every
        self.detect_side = detect_side
        self._dlib, self._detector, self._predictor = _models()
        self._prev: np.ndarray | None = None
        self._n = 0
        self._since_detect = 0
        self._small_faces = False  # faces were only found at full analysis size

    def _detect_at(self, img: np.ndarray, side: int, upsample: int | None = None):
        h, w = img.shape
        scale = min(1.0, side / max(h, w))
        small = img
        if scale < 1.0:
            import cv2

            small = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        if upsample is None:
            upsample = 1 if min(small.shape) < 200 else 0
        rects, scores, _ = self._detector.run(small, upsample, 0.0)
        if not rects:
            return None, 0.0
        areas = [r.width() * r.height() * (1.0 + 0.1 * s) for r, s in zip(rects, scores)]
        i = int(np.argmax(areas))
        r = rects[i]
        inv = 1.0 / scale
        return (r.left() * inv, r.top() * inv, r.right() * inv, r.bottom() * inv), float(scores[i])

    def _detect_near(self, img: np.ndarray, pts: np.ndarray):
        """Detection in a region around the tracked face (about 3x its width): used while
        following a small face in a large frame, where whole-frame detection at full size
        would cost ~4x more; the face keeps its native resolution."""
        l, t, r, b = self._box_from_landmarks(pts)
        fw = max(r - l, b - t)
        h, w = img.shape
        x0, y0 = int(max(0, l - fw)), int(max(0, t - fw))
        x1, y1 = int(min(w, r + fw)), int(min(h, b + fw))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None, 0.0
        crop = img[y0:y1, x0:x1]
        # HOG finds faces of ~80 px and more: scale the crop so the face is ~120 px wide
        side = 120.0 * max(crop.shape) / max(fw, 1.0)
        box, score = self._detect_at(np.ascontiguousarray(crop), int(side), upsample=0)
        if box is None:
            return None, 0.0
        return (box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0), score

    def _detect(self, img: np.ndarray):
        """Detect on a copy scaled to ``detect_side``; when that finds nothing in a larger
        frame (a small face in a wide shot: HOG needs ~80 px faces), retry at the full
        analysis size.  Once a face was only found that way, keep detecting at full size."""
        big = max(img.shape) > self.detect_side
        if not self._small_faces or not big:
            box, score = self._detect_at(img, self.detect_side)
            if box is not None or not big:
                return box, score
        box, score = self._detect_at(img, max(img.shape))
        if box is not None:
            self._small_faces = True
        return box, score

    def _fit(self, img: np.ndarray, box) -> np.ndarray:
        l, t, r, b = (int(round(x)) for x in box)
        shape = self._predictor(img, self._dlib.rectangle(l, t, r, b))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    @staticmethod
    def _box_from_landmarks(pts: np.ndarray):
        # a detector-like box around the landmarks: dlib's HOG box spans brows to chin
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        w = x1 - x0
        cx = (x0 + x1) / 2
        top = y0 - 0.05 * (y1 - y0)
        return cx - 0.52 * w, top, cx + 0.52 * w, y1 + 0.02 * (y1 - y0)

    @staticmethod
    def _plausible(pts: np.ndarray, shape) -> bool:
        h, w = shape
        eye_l, eye_r = pts[36:42].mean(0), pts[42:48].mean(0)
        iod = float(np.linalg.norm(eye_r - eye_l))
        mouth = pts[48:68].mean(0)
        nose = pts[30]
        if iod < 6:
            return False
        # mouth below the eyes, nose between, face inside the frame
        eyes_y = (eye_l[1] + eye_r[1]) / 2
        if not (mouth[1] > nose[1] > eyes_y - 0.2 * iod):
            return False
        cx, cy = pts.mean(0)
        return -0.1 * w < cx < 1.1 * w and -0.1 * h < cy < 1.1 * h

    def update(self, img: np.ndarray) -> FaceObservation | None:
        """Landmarks of the tracked face in this frame, or None."""
        self._n += 1
        self._since_detect += 1
        every = self.detect_every if self._prev is not None else self.idle_detect_every
        if self._prev is None and self._n == 1:
            every = 1
        detected = False
        score = 0.0
        box = None
        if self._since_detect >= every:
            self._since_detect = 0
            if self._prev is not None and self._small_faces:
                box, score = self._detect_near(img, self._prev)
            else:
                box, score = self._detect(img)
            detected = box is not None
            if box is None and self._prev is None:
                return None
        if box is None:
            if self._prev is None:
                return None
            box = self._box_from_landmarks(self._prev)
        pts = self._fit(img, box)
        if not self._plausible(pts, img.shape):
            self._prev = None
            return None
        self._prev = pts
        return FaceObservation(pts, detected, score)
