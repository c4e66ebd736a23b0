"""Offline faces: one dlib HOG detector, followed two ways.

The detector (dlib's HOG frontal face detector; OpenCV's Haar cascade as the alternative)
and the 68-point landmark model come with the ``dlib-bin``, ``opencv`` and
``face_recognition_models`` packages: nothing is downloaded.  :func:`detect_faces` runs it
on a copy of a grey picture scaled down to a given side and answers in the picture's pixels.

* :class:`FaceTracker` (the lips features): detection every few frames; between detections
  the face is followed by re-fitting the landmarks inside the box of the previous frame's
  landmarks, which is cheap and follows head motion well.  A track is dropped when the
  landmark fit stops looking like a face, and re-acquired by the next detection.
* :func:`find_tracks` and :func:`crop` (SyncNet): a shot change test on every frame and a
  detection every ``detect_every`` frames; detections are linked within a shot by box
  overlap (IoU), boxes are interpolated between detections and median-smoothed (kernel 13)
  like the reference pipeline's tracks; a track never crosses a shot change, and frames
  where nobody is found are not part of any track.  :func:`crop` cuts the reference-style
  crop from the full-resolution colour picture: half-size ``s`` = half the larger box side,
  a square of side ``2.8 s`` centred horizontally on the face and reaching from ``s`` above
  the box centre to ``1.8 s`` below it (the reference's crop_scale 0.4), grey (110) outside
  the picture, resized to 224.  The HOG box is tighter than the S3FD box the reference uses,
  so it is first grown by ``HOG_TO_REFERENCE_BOX`` about a point slightly above its centre.
  Both constants come from the reference's own output: on ``speech/syncnet_example.avi`` (a
  crop made by the reference pipeline) the median HOG box is 125 px wide with its centre
  3 px below the point that puts the crop square exactly on the 224x224 picture, i.e. the
  reference box is 1.28 HOG boxes, centred 0.05 box sizes higher.

dlib, OpenCV and scipy are imported when first needed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import numpy as np

from ..errors import UsageError

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
DETECTORS = ("hog", "haar")
CROP = 224
CROP_SCALE = 0.4
PAD_VALUE = 110
#: dlib's HOG box spans brows to chin; the reference's S3FD box is larger and higher
HOG_TO_REFERENCE_BOX = 1.28
HOG_BOX_RAISE = 0.05  # of the box size, upwards
SMOOTH_KERNEL = 13
#: faces whose box is narrower than this (analysis pixels) get their landmarks fitted on an
#: enlarged copy of their region, this wide
SMALL_FIT_PX = 64
#: whole-frame detection with HOG's up-sampling (faces down to ~40 px) on every TINY_EVERY-th
#: failed detection, in frames at least TINY_MIN_FRAME pixels on their short side
TINY_EVERY = 5
TINY_MIN_FRAME = 300


def landmark_model_path() -> str:
    """Path of dlib's 68-point model inside the installed ``face_recognition_models`` package.

    Found without importing the package: its ``__init__`` needs ``pkg_resources``, which
    recent setuptools releases no longer ship.
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the face_recognition_models package is not installed")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "models", LANDMARK_MODEL)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{LANDMARK_MODEL} not found in the face_recognition_models package")


# -- detection ----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def _haar():
    import cv2

    return cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))


@lru_cache(maxsize=1)
def _models():
    import dlib

    return dlib, hog_detector(), dlib.shape_predictor(landmark_model_path())


def landmarks_available() -> bool:
    try:
        _models()
        return True
    except Exception:
        return False


@dataclass(frozen=True)
class Detection:
    rect: tuple[int, int, int, int]  # x0, y0, x1, y1 in the detector's (scaled-down) picture
    score: float
    scale: float  # of that picture: its pixels = the searched picture's pixels * scale

    @property
    def box(self) -> np.ndarray:
        """(4,) float64 x0, y0, x1, y1 in the searched picture's pixels."""
        return np.array(self.rect, np.float64) / self.scale

    @property
    def area(self) -> int:
        """Pixels inside ``rect``, both corners included (dlib's rectangle area)."""
        return (self.rect[2] - self.rect[0] + 1) * (self.rect[3] - self.rect[1] + 1)


def detect_faces(grey: np.ndarray, detector: str = "hog", side: int = 480,
                 upsample: int | None = None) -> list[Detection]:
    """Every face the detector finds on ``grey`` scaled down to ``side`` pixels (longest side; never
    up).  HOG's ``upsample`` defaults to 1 when the scaled picture is under 200 pixels, else 0."""
    h, w = grey.shape
    scale = min(1.0, side / max(h, w))
    small = grey
    if scale < 1.0:
        import cv2

        small = cv2.resize(grey, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    if detector == "haar":
        found = _haar().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return [Detection((int(x), int(y), int(x + bw), int(y + bh)), 1.0, scale)
                for (x, y, bw, bh) in (found if len(found) else [])]
    if upsample is None:
        upsample = 1 if min(small.shape) < 200 else 0
    rects, scores, _ = hog_detector().run(small, upsample, 0.0)
    return [Detection((r.left(), r.top(), r.right(), r.bottom()), float(s), scale) for r, s in zip(rects, scores)]


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
        self._dlib, _, self._predictor = _models()
        self._prev: np.ndarray | None = None
        self._n = 0
        self._since_detect = 0
        self._small_faces = False  # faces were only found at full analysis size
        self._tiny_wait = 0  # failed detections to let pass before the next up-sampled try

    def _detect_at(self, img: np.ndarray, side: int, upsample: int | None = None):
        """The most prominent face (largest, a little weighted by the score) found at ``side``."""
        found = detect_faces(img, "hog", side, upsample)
        if not found:
            return None, 0.0
        best = max(found, key=lambda d: d.area * (1.0 + 0.1 * d.score))
        # x * (1 / scale), not Detection.box's x / scale: the two differ in the last bit, and a box
        # on a half pixel would then be fitted one pixel apart (this is how the tracker always scaled)
        inv = 1.0 / best.scale
        return tuple(v * inv for v in best.rect), best.score

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
        if box is None and min(img.shape) >= TINY_MIN_FRAME:
            # faces under ~80 px need HOG's up-sampling (~40 px): costly on a whole frame, so
            # tried on every TINY_EVERY-th failed detection only (a faceless clip pays ~3 %)
            if self._tiny_wait > 0:
                self._tiny_wait -= 1
            else:
                self._tiny_wait = TINY_EVERY - 1
                box, score = self._detect_at(img, max(img.shape), upsample=1)
        if box is not None:
            self._small_faces = True
        return box, score

    def _fit(self, img: np.ndarray, box) -> np.ndarray:
        if box[2] - box[0] < SMALL_FIT_PX:
            return self._fit_upsampled(img, box)
        l, t, r, b = (int(round(x)) for x in box)
        shape = self._predictor(img, self._dlib.rectangle(l, t, r, b))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    def _fit_upsampled(self, img: np.ndarray, box) -> np.ndarray:
        """The landmarks of a small face fitted on its region enlarged so that the face box is
        ``SMALL_FIT_PX`` wide (the 68-point model samples pixel pairs: on a 30-px face they fall
        on the same few pixels), mapped back to the frame's pixels."""
        import cv2

        bw = max(float(box[2] - box[0]), 4.0)
        h, w = img.shape
        x0, y0 = int(max(0, box[0] - bw)), int(max(0, box[1] - bw))
        x1, y1 = int(min(w, box[2] + bw)), int(min(h, box[3] + bw))
        if x1 - x0 < 4 or y1 - y0 < 4:
            l, t, r, b = (int(round(x)) for x in box)
            shape = self._predictor(img, self._dlib.rectangle(l, t, r, b))
            return np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        k = SMALL_FIT_PX / bw
        region = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), (int(round((x1 - x0) * k)), int(round((y1 - y0) * k))),
                            interpolation=cv2.INTER_CUBIC)
        l, t, r, b = (int(round((v - o) * k)) for v, o in zip(box, (x0, y0, x0, y0)))
        shape = self._predictor(region, self._dlib.rectangle(l, t, r, b))
        pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        return pts / np.float32(k) + np.array([x0, y0], np.float32)

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


# -- SyncNet: face tracks through shots, and the reference-style crops --------------------------
@dataclass
class Track:
    """A face followed through consecutive 25-fps frames of one shot (boxes in full-frame pixels)."""

    start: int  # first frame index
    boxes: np.ndarray  # (n, 4) x0, y0, x1, y1 (smoothed)
    detections: int = 0  # frames where the detector itself found the face

    @property
    def end(self) -> int:  # one past the last frame
        return self.start + len(self.boxes)

    def __len__(self) -> int:
        return len(self.boxes)

    def box_at(self, k: int) -> np.ndarray | None:
        if self.start <= k < self.end:
            return self.boxes[k - self.start]
        return None


@dataclass
class FaceScan:
    frames: int
    tracks: list[Track]
    shots: list[int] = field(default_factory=list)  # first frame of every shot after the first
    detector: str = "hog"
    size: tuple[int, int] = (0, 0)  # full-frame width, height

    @property
    def coverage(self) -> float:
        if not self.frames:
            return 0.0
        covered = np.zeros(self.frames, bool)
        for t in self.tracks:
            covered[t.start:t.end] = True
        return float(covered.mean())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def shot_signature(grey: np.ndarray) -> np.ndarray:
    """A 16x9 thumbnail and a 32-bin histogram: cheap to compare between frames."""
    import cv2

    thumb = cv2.resize(grey, (16, 9), interpolation=cv2.INTER_AREA).astype(np.float32)
    hist = np.bincount(grey[::4, ::4].reshape(-1) >> 3, minlength=32).astype(np.float32)
    return np.concatenate([thumb.reshape(-1) / 255.0, hist / max(hist.sum(), 1.0)])


def is_cut(prev: np.ndarray, cur: np.ndarray) -> bool:
    """A shot change: the thumbnail changes a lot AND the grey-level histogram does."""
    thumb = float(np.abs(prev[:144] - cur[:144]).mean())
    hist = float(np.abs(prev[144:] - cur[144:]).sum()) / 2
    return thumb > 0.12 and hist > 0.3


class _Open:
    def __init__(self, k: int, box: np.ndarray):
        self.keys = [k]
        self.boxes = [box]


def link_tracks(dets: dict[int, list[np.ndarray]], shots: list[int], frames: int, detect_every: int,
                max_gap: int = 25, min_len: int = 10, min_iou: float = 0.3) -> list[Track]:
    """Tracks from detections on frames ``dets`` (keys); boxes interpolated between them,
    extended by up to ``detect_every - 1`` frames at the ends, cut at shot changes."""
    bounds = [0, *shots, frames]
    tracks: list[Track] = []
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        open_: list[_Open] = []
        done: list[_Open] = []
        for k in sorted(d for d in dets if s0 <= d < s1):
            live = [t for t in open_ if k - t.keys[-1] <= max_gap]
            done += [t for t in open_ if k - t.keys[-1] > max_gap]
            open_ = live
            used: set[int] = set()
            for box in sorted(dets[k], key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
                best, score = None, min_iou
                for i, t in enumerate(open_):
                    if i in used:
                        continue
                    v = iou(t.boxes[-1], box)
                    if v > score:
                        best, score = i, v
                if best is None:
                    open_.append(_Open(k, box))
                    used.add(len(open_) - 1)
                else:
                    open_[best].keys.append(k)
                    open_[best].boxes.append(box)
                    used.add(best)
        for t in done + open_:
            first = max(s0, t.keys[0] - (detect_every - 1))
            last = min(s1 - 1, t.keys[-1] + detect_every - 1)
            n = last - first + 1
            if n < min_len:
                continue
            ks = np.array(t.keys, np.float64)
            bx = np.array(t.boxes)
            frames_k = np.arange(first, last + 1, dtype=np.float64)
            boxes = np.stack([np.interp(frames_k, ks, bx[:, j]) for j in range(4)], 1)
            tracks.append(Track(start=first, boxes=smooth_boxes(boxes), detections=len(t.keys)))
    tracks.sort(key=lambda t: (t.start, -len(t)))
    return tracks


def smooth_boxes(boxes: np.ndarray) -> np.ndarray:
    """Median-filter size and centre over 13 frames (as the reference does), back to boxes."""
    s = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    if len(boxes) >= SMOOTH_KERNEL:
        from scipy.signal import medfilt

        s, cx, cy = (medfilt(v, SMOOTH_KERNEL) for v in (s, cx, cy))
    return np.stack([cx - s, cy - s, cx + s, cy + s], 1)


def find_tracks(frames: Iterable[tuple[int, np.ndarray]], size: tuple[int | None, int | None] = (None, None),
                detector: str = "hog", detect_every: int = 5) -> FaceScan:
    """Shots, detections and tracks over consecutive ``(k, grey)`` frames (k = 0, 1, ...), in the
    pixels of the full picture of ``size`` (width, height; unknown: those of the frames)."""
    if detector not in DETECTORS:
        raise UsageError(f"unknown face detector {detector!r}; choose from {', '.join(DETECTORS)}")
    width, height = size
    dets: dict[int, list[np.ndarray]] = {}
    shots: list[int] = []
    prev_sig = None
    since_cut = 0
    scale = 1.0
    count = 0
    for k, grey in frames:
        if k == 0 and width:
            scale = max(width, height or 0) / max(grey.shape)
        sig = shot_signature(grey)
        if prev_sig is not None and is_cut(prev_sig, sig):
            shots.append(k)
            since_cut = 0
        prev_sig = sig
        if since_cut % detect_every == 0:
            found = detect_faces(grey, detector)
            if found:
                dets[k] = [d.box * scale for d in found]
        since_cut += 1
        count = k + 1
    tracks = link_tracks(dets, shots, count, detect_every)
    return FaceScan(frames=count, tracks=tracks, shots=shots, detector=detector, size=(width or 0, height or 0))


def crop_box(box: np.ndarray, detector: str = "hog") -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the reference-style crop for a face box (may leave the picture)."""
    x0, y0, x1, y1 = box
    s = max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if detector in ("hog", "haar"):
        cy -= HOG_BOX_RAISE * 2 * s
        s *= HOG_TO_REFERENCE_BOX
    cs = CROP_SCALE
    return cx - s * (1 + cs), cy - s, cx + s * (1 + cs), cy + s * (1 + 2 * cs)


def crop(image: np.ndarray, box: np.ndarray, detector: str = "hog") -> np.ndarray:
    """The 224x224 BGR crop (grey 110 where the square leaves the picture)."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in crop_box(box, detector))
    h, w = image.shape[:2]
    cw, ch = max(1, x1 - x0), max(1, y1 - y0)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if sx0 == x0 and sy0 == y0 and sx1 == x1 and sy1 == y1:
        face = image[y0:y1, x0:x1]
    else:
        face = np.full((ch, cw, 3), PAD_VALUE, np.uint8)
        if sx1 > sx0 and sy1 > sy0:
            face[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return cv2.resize(face, (CROP, CROP))


def to_crop(image: np.ndarray) -> np.ndarray:
    """``--crop none``: the whole picture is the face crop (resized to 224 when it is not)."""
    import cv2

    if image.shape[0] == CROP and image.shape[1] == CROP:
        return image
    return cv2.resize(image, (CROP, CROP))
