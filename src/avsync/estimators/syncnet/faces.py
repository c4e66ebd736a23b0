"""Face tracks and SyncNet crops, offline (no weights downloads).

Pass 1 (:func:`find_tracks`) walks the 25-fps timeline in small grey pictures: a shot
change test on every frame, a face detector (dlib's HOG frontal detector, shipped with
``dlib-bin``; OpenCV's Haar cascade as the alternative) every ``detect_every`` frames.
Detections are linked within a shot by box overlap (IoU), boxes are interpolated
between detections and median-smoothed (kernel 13) like the reference pipeline's
tracks; a track never crosses a shot change, and frames where nobody is found are
simply not part of any track.

Pass 2 (:func:`crop`) cuts the reference-style crop from the full-resolution colour
picture: half-size ``s`` = half the larger box side, a square of side ``2.8 s`` centred
horizontally on the face and reaching from ``s`` above the box centre to ``1.8 s`` below
it (the reference's crop_scale 0.4), grey (110) outside the picture, resized to 224.
The HOG box is tighter than the S3FD box the reference uses, so it is first grown by
``HOG_TO_REFERENCE_BOX`` about a point slightly above its centre.  Both constants come
from the reference's own output: on ``speech/syncnet_example.avi`` (a crop made by the
reference pipeline) the median HOG box is 125 px wide with its centre 3 px below the
point that puts the crop square exactly on the 224x224 picture, i.e. the reference box is
1.28 HOG boxes, centred 0.05 box sizes higher.  No torch here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.signal import medfilt

CROP = 224
CROP_SCALE = 0.4
PAD_VALUE = 110
#: dlib's HOG box spans brows to chin; the reference's S3FD box is larger and higher
HOG_TO_REFERENCE_BOX = 1.28
HOG_BOX_RAISE = 0.05  # of the box size, upwards
SMOOTH_KERNEL = 13
DETECTORS = ("hog", "haar")


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


# -- detection ------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def _haar():
    import cv2

    return cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))


def detect_faces(grey: np.ndarray, detector: str = "hog", side: int = 480) -> list[tuple[np.ndarray, float]]:
    """Face boxes (x0, y0, x1, y1 in ``grey``'s pixels) with scores."""
    import cv2

    h, w = grey.shape
    scale = min(1.0, side / max(h, w))
    small = cv2.resize(grey, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else grey
    out = []
    if detector == "haar":
        found = _haar().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        for (x, y, bw, bh) in (found if len(found) else []):
            out.append((np.array([x, y, x + bw, y + bh], np.float64) / scale, 1.0))
        return out
    upsample = 1 if min(small.shape) < 200 else 0
    rects, scores, _ = _hog().run(small, upsample, 0.0)
    for r, s in zip(rects, scores):
        out.append((np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) / scale, float(s)))
    return out


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
        s, cx, cy = (medfilt(v, SMOOTH_KERNEL) for v in (s, cx, cy))
    return np.stack([cx - s, cy - s, cx + s, cy + s], 1)


def find_tracks(source, detector: str = "hog", detect_every: int = 5, analysis_side: int = 640,
                progress=None) -> FaceScan:
    """Pass 1 over ``source`` (a MediaSource): shots, detections, tracks (full-frame pixels)."""
    from .prep import Timeline25

    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}")
    info = source.info
    tl = Timeline25(source, colour=False, max_side=analysis_side, progress=progress, audio=False)
    dets: dict[int, list[np.ndarray]] = {}
    shots: list[int] = []
    prev_sig = None
    since_cut = 0
    scale = 1.0
    for k, grey in tl:
        if k == 0 and info.width:
            scale = max(info.width, info.height or 0) / max(grey.shape)
        sig = shot_signature(grey)
        if prev_sig is not None and is_cut(prev_sig, sig):
            shots.append(k)
            since_cut = 0
        prev_sig = sig
        if since_cut % detect_every == 0:
            found = detect_faces(grey, detector)
            if found:
                dets[k] = [b * scale for b, _ in found]
        since_cut += 1
    tracks = link_tracks(dets, shots, tl.frames, detect_every)
    return FaceScan(frames=tl.frames, tracks=tracks, shots=shots, detector=detector,
                    size=(info.width or 0, info.height or 0))


# -- crops ----------------------------------------------------------------------------------
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


def write_debug_png(path: str, frame: np.ndarray | None, boxes: list[tuple[np.ndarray, str]],
                    crops: list[np.ndarray], title: str = "", detector: str = "hog") -> None:
    """One picture: the frame with every face box and its crop square, and a row of crops.
    Written to a temporary name and renamed."""
    import cv2

    rows = []
    if frame is not None:
        img = frame.copy()
        for box, label in boxes:
            b = [int(v) for v in box]
            cv2.rectangle(img, (b[0], b[1]), (b[2], b[3]), (0, 255, 0), 2)
            c = [int(v) for v in crop_box(box, detector)]
            cv2.rectangle(img, (c[0], c[1]), (c[2], c[3]), (0, 0, 255), 2)
            cv2.putText(img, label, (b[0], max(12, b[1] - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
        h = CROP * 2
        img = cv2.resize(img, (max(1, int(img.shape[1] * h / img.shape[0])), h))
        rows.append(img)
    if crops:
        strip = np.concatenate(crops[:8], 1)
        rows.append(strip)
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    canvas = np.full((sum(r.shape[0] for r in rows) + 24, width, 3), 255, np.uint8)
    cv2.putText(canvas, title[:120], (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    y = 24
    for r in rows:
        canvas[y:y + r.shape[0], :r.shape[1]] = r
        y += r.shape[0]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part.png"
    if not cv2.imwrite(tmp, canvas):
        raise OSError(f"cannot write {path}")
    os.replace(tmp, path)
