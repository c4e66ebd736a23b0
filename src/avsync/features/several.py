"""Several people on screen: find the faces once, follow each in its own region.

The lips features follow one face (the most prominent).  With two or more people in the
picture that may be the wrong one: the listener, or a face in the background.  Before the
face analysis starts, :func:`scan_faces` looks for faces on a few of the first frames
(``SCAN_FRAMES`` frames spread over the first ``SCAN_S`` seconds); faces seen on at least
half of them, and at least ``MIN_RELATIVE_SIZE`` as wide as the widest, are kept.  When
there are two or more, every face gets its own region of the picture (:func:`regions`),
and the features are computed once per region in the same decoding pass; the caller scores
each and reports the speaking one (the one whose lips agree best with the sound).  With
one face or none nothing changes: one extractor on the whole picture, as before.
"""
from __future__ import annotations

import numpy as np

#: frames looked at, spread over the buffered start
SCAN_FRAMES = 4
#: seconds of video buffered before the scan (or SCAN_MAX_FRAMES frames, whichever first)
SCAN_S = 2.0
SCAN_MAX_FRAMES = 60
#: a face narrower than this share of the widest face found is not followed on its own
MIN_RELATIVE_SIZE = 0.35
#: the most faces followed (each costs about one face analysis)
MAX_FACES = 4


def scan_faces(images: list[np.ndarray], frames: int = SCAN_FRAMES) -> list[np.ndarray]:
    """Boxes ``(x0, y0, x1, y1)`` (the images' pixels) of the faces seen on at least half of
    ``frames`` images spread over ``images``, widest first."""
    from .faces import detect_faces

    if not images:
        return []
    picks = sorted({int(round(i)) for i in np.linspace(0, len(images) - 1, min(frames, len(images)))})
    clusters: list[list[np.ndarray]] = []
    for k in picks:
        img = images[k]
        for d in detect_faces(img, "hog", max(img.shape[:2])):
            box = d.box
            c = (box[:2] + box[2:]) / 2
            w = box[2] - box[0]
            for cl in clusters:
                m = np.mean(cl, axis=0)
                if np.linalg.norm((m[:2] + m[2:]) / 2 - c) < 0.5 * max(w, m[2] - m[0]):
                    cl.append(box)
                    break
            else:
                clusters.append([box])
    need = max(1, (len(picks) + 1) // 2)
    boxes = [np.mean(cl, axis=0) for cl in clusters if len(cl) >= need]
    if not boxes:
        return []
    widest = max(b[2] - b[0] for b in boxes)
    boxes = [b for b in boxes if b[2] - b[0] >= MIN_RELATIVE_SIZE * widest]
    boxes.sort(key=lambda b: -(b[2] - b[0]))
    return boxes[:MAX_FACES]


def regions(boxes: list[np.ndarray], shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """One region ``(x0, y0, x1, y1)`` per face: the face box grown to about 2.6 widths across
    and 3.3 down (room for head motion), narrowed so that it stops halfway to a neighbour's
    box and never holds most of another face."""
    h, w = shape[:2]
    out = []
    for i, b in enumerate(boxes):
        bw = b[2] - b[0]
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        left, right = cx - 1.3 * bw, cx + 1.3 * bw
        top, bottom = cy - 1.4 * bw, cy + 1.9 * bw
        for j, o in enumerate(boxes):
            if j == i:
                continue
            ocx = (o[0] + o[2]) / 2
            ocy = (o[1] + o[3]) / 2
            # a neighbour beside: stop halfway between the facing edges
            if abs(ocy - cy) < 0.8 * max(bw, o[2] - o[0]):
                if ocx > cx:
                    right = min(right, max(b[2] + 0.1 * bw, (b[2] + o[0]) / 2))
                else:
                    left = max(left, min(b[0] - 0.1 * bw, (o[2] + b[0]) / 2))
        x0, x1 = int(max(0, np.floor(left))), int(min(w, np.ceil(right)))
        y0, y1 = int(max(0, np.floor(top))), int(min(h, np.ceil(bottom)))
        out.append((x0, y0, x1, y1))
    return out


__all__ = ["scan_faces", "regions", "SCAN_S", "SCAN_MAX_FRAMES"]
