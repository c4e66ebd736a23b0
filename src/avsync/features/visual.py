"""Streaming per-frame visual features: mouth geometry from landmarks, and motion.

:class:`VisualFeatureExtractor` consumes :class:`~avsync.media.VideoFrame` objects and
keeps a handful of floats per frame.  Mouth features are NaN on frames without a
tracked face.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

#: the per-frame mouth measures; the geometric ones are normalised by the inter-ocular
#: distance averaged over about one second (a per-frame distance adds landmark jitter)
MOUTH_KEYS = ("inner_open", "outer_open", "width", "dark")
#: the geometric measures (pixel distances divided by the smoothed face size)
GEOMETRIC_KEYS = ("inner_open", "outer_open", "width")
#: the same lip measures from the 468-point face mesh (when installed: see features.mesh),
#: normalised by the mesh's own smoothed eye distance
MESH_KEYS = ("mesh_inner", "mesh_outer", "mesh_width")
#: a frame with no tracked face is tried as a face crop (the face fills the picture) this often
CROP_TRY_EVERY = 10
#: frames over which the face size is averaged
IOD_SMOOTH_FRAMES = 25


@dataclass
class VisualFeatures:
    times: np.ndarray  # presentation time of each frame, seconds (may be irregular)
    fps: float  # nominal frame rate
    motion: np.ndarray  # mean absolute frame difference (whole frame)
    block_motion: np.ndarray  # (n, B) mean absolute difference per image block
    mouth: dict[str, np.ndarray] = field(default_factory=dict)  # MOUTH_KEYS -> (n,) with NaN
    face_detected: np.ndarray | None = None  # bool per frame: a face (tracked or detected)
    face_size: np.ndarray | None = None  # inter-ocular distance in analysis pixels
    still: bool = False  # the picture never changes
    #: (n, 20, 2) the 20 mouth landmarks (dlib 48-67) relative to the mouth centre, rotated so
    #: the eye line is level and divided by the smoothed face size; NaN without a face.  Only
    #: when asked for (learned estimators)
    lips: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.times.size)

    @property
    def face_coverage(self) -> float:
        if self.face_detected is None or not self.face_detected.size:
            return 0.0
        return float(self.face_detected.mean())


def mouth_measures(pts: np.ndarray, img: np.ndarray, normalise: bool = True) -> tuple[float, float, float, float, float]:
    """(inner_open, outer_open, width, dark, iod) of one face's 68 landmarks; the first
    three in units of ``iod`` (or in pixels when ``normalise`` is False)."""
    iod = float(np.linalg.norm(pts[42:48].mean(0) - pts[36:42].mean(0)))
    inner = float(np.mean(np.linalg.norm(pts[[61, 62, 63]] - pts[[67, 66, 65]], axis=1)))
    outer = float(np.mean(np.linalg.norm(pts[[50, 51, 52]] - pts[[58, 57, 56]], axis=1)))
    width = float(np.linalg.norm(pts[54] - pts[48]))
    # darkness of the mouth interior: mean grey in a box spanning the inner lips,
    # relative to the face's skin (nose ridge) so lighting changes cancel
    x0, y0 = pts[60:68].min(0)
    x1, y1 = pts[60:68].max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = max(2.0, (x1 - x0) * 0.35), max(2.0, 0.25 * iod * 0.5)
    h, w = img.shape
    ys = slice(int(max(0, cy - hh)), int(min(h, cy + hh + 1)))
    xs = slice(int(max(0, cx - hw)), int(min(w, cx + hw + 1)))
    patch = img[ys, xs]
    nx, ny = pts[27:31, 0].mean(), pts[27:31, 1].mean()
    ref = img[int(np.clip(ny, 0, h - 1)), int(np.clip(nx, 0, w - 1))]
    dark = float(ref) - float(patch.mean()) if patch.size else np.nan
    s = max(iod, 1e-3) if normalise else 1.0
    return inner / s, outer / s, width / s, dark / 255.0, iod


class VisualFeatureExtractor:
    """Per-frame features.  ``faces``: 'auto' (track faces), 'off'."""

    GRID = 4  # block motion on a GRID x GRID grid

    def __init__(self, fps: float, faces: str = "auto", detect_every: int = 10, trajectories: bool = False,
                 mesh: bool | None = None, region: tuple[int, int, int, int] | None = None,
                 mesh_child: bool | None = None):
        self.fps = fps
        #: (x0, y0, x1, y1): faces are looked for in this part of the picture only (one of
        #: several people on screen, see features.several); motion stays whole-picture
        self.region = region
        self._lips: list[np.ndarray] | None = [] if trajectories else None
        self.faces = faces
        self._tracker = None
        self._mesh = None
        if faces != "off":
            from . import mesh as meshmod
            from .faces import FaceTracker

            self._tracker = FaceTracker(detect_every=detect_every)
            if mesh or (mesh is None and meshmod.available()):
                # the mesh network runs in a child process beside the dlib fit when a second
                # core is there (``mesh_child``: None = then; the answers are the same either way)
                from ..parallel import second_core

                child = second_core() if mesh_child is None else mesh_child
                self._mesh = meshmod.MeshRunner(child=child)
        self._mesh_rows: list[tuple | None] = []
        #: mesh crops sent and not answered: (row, scale, centre x, centre y)
        self._mesh_queue: deque[tuple[int, float, float, float]] = deque()
        self._mesh_prev: np.ndarray | None = None  # last mesh of a face crop (no dlib face)
        self._since_crop_try = CROP_TRY_EVERY
        self._prev: np.ndarray | None = None
        self._t: list[float] = []
        self._motion: list[float] = []
        self._blocks: list[np.ndarray] = []
        self._mouth: list[tuple] = []
        self._face: list[bool] = []
        self._iod: list[float] = []
        self._first: np.ndarray | None = None
        self._changed = False

    def add(self, frame) -> None:
        img = frame.image
        self._t.append(frame.t)
        small = img[::4, ::4].astype(np.int16)
        if self._prev is None or self._prev.shape != small.shape:
            self._motion.append(np.nan)
            self._blocks.append(np.full(self.GRID * self.GRID, np.nan, np.float32))
            self._first = small
        else:
            d = np.abs(small - self._prev)
            self._motion.append(float(d.mean()))
            h, w = d.shape
            g = self.GRID
            hb, wb = h // g, w // g
            if hb and wb:
                blocks = d[: hb * g, : wb * g].reshape(g, hb, g, wb).mean(axis=(1, 3)).reshape(-1)
            else:
                blocks = np.full(g * g, float(d.mean()))
            self._blocks.append(blocks.astype(np.float32))
            if not self._changed and np.abs(small - self._first).mean() > 0.5:
                self._changed = True
        self._prev = small
        if self.region is not None:
            x0, y0, x1, y1 = self.region
            img = np.ascontiguousarray(img[y0:y1, x0:x1])
            if min(img.shape[:2]) < 16:  # the picture changed size: the region left it
                self._no_face()
                return
        obs = self._tracker.update(img) if self._tracker is not None else None
        mesh_face = self._add_mesh(img, obs)
        if obs is None:
            self._mouth.append((np.nan,) * 4)
            self._face.append(mesh_face)
            self._iod.append(np.nan)
            if self._lips is not None:
                self._lips.append(np.full((20, 2), np.nan, np.float32))
        else:
            m = mouth_measures(obs.landmarks, img, normalise=False)
            self._mouth.append(m[:4])
            self._face.append(True)
            self._iod.append(m[4])
            if self._lips is not None:
                self._lips.append(level_mouth(obs.landmarks))

    def _no_face(self) -> None:
        """This frame's rows without a face."""
        self._mouth.append((np.nan,) * 4)
        self._face.append(False)
        self._iod.append(np.nan)
        if self._lips is not None:
            self._lips.append(np.full((20, 2), np.nan, np.float32))
        if self._mesh is not None:
            self._mesh_rows.append((np.nan,) * 4)

    def _add_mesh(self, img: np.ndarray, obs) -> bool:
        """Mesh lip measures of this frame (NaN when none): around the dlib face when one is
        tracked (sent to the mesh runner, answered later); otherwise the frame is tried as a
        face crop (every ``CROP_TRY_EVERY`` frames until a face is seen, then every frame while
        it holds; answered at once, as the next box follows from it).  True when the mesh alone
        found the face (a crop dlib cannot fit)."""
        from .mesh import IN_FLIGHT, box_around

        if self._mesh is None:
            return False
        if obs is not None:
            self._mesh_prev = None
            self._send_mesh(img, *box_around(obs.landmarks))
            if self._mesh.pending() > IN_FLIGHT:
                self._mesh_answer()
            return False
        self._since_crop_try += 1
        if self._mesh_prev is None and self._since_crop_try < CROP_TRY_EVERY:
            self._mesh_rows.append((np.nan,) * 4)
            return False
        self._since_crop_try = 0
        h, w = img.shape[:2]
        if self._mesh_prev is not None:
            (x0, y0), (x1, y1) = self._mesh_prev.min(axis=0), self._mesh_prev.max(axis=0)
            cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 1.3 * max(x1 - x0, y1 - y0)
        else:
            cx, cy, side = w / 2, h / 2, 1.2 * max(h, w)
        self._send_mesh(img, cx, cy, side)
        while self._mesh_queue:
            pts = self._mesh_answer()
        self._mesh_prev = pts
        return pts is not None

    def _send_mesh(self, img: np.ndarray, cx: float, cy: float, side: float) -> None:
        from .mesh import square_crop

        crop, k = square_crop(img, cx, cy, side)
        self._mesh_rows.append(None)
        self._mesh_queue.append((len(self._mesh_rows) - 1, k, cx, cy))
        self._mesh.submit(crop)

    def _mesh_answer(self) -> np.ndarray | None:
        """Read the oldest mesh answer into its row; its points (None: no face in the box)."""
        from .mesh import MIN_FACE_SCORE, mouth_from_mesh, place

        row, k, cx, cy = self._mesh_queue.popleft()
        pts, score = place(*self._mesh.answer(), k, cx, cy)
        if score < MIN_FACE_SCORE:
            self._mesh_rows[row] = (np.nan,) * 4
            return None
        self._mesh_rows[row] = mouth_from_mesh(pts)
        return pts

    def close(self) -> None:
        """Stop the mesh runner's child (``finish`` does; for extractors given up before it)."""
        if self._mesh is not None:
            self._mesh.close()

    def finish(self) -> VisualFeatures | None:
        while self._mesh_queue:
            self._mesh_answer()
        self.close()
        if not self._t:
            return None
        order = np.argsort(np.asarray(self._t), kind="stable")
        t = np.asarray(self._t, np.float64)[order]
        mouth = np.asarray(self._mouth, np.float64)[order]
        iod = np.asarray(self._iod, np.float64)[order]
        size = _smooth_size(iod, IOD_SMOOTH_FRAMES)
        for i, k in enumerate(MOUTH_KEYS):
            if k in GEOMETRIC_KEYS:
                mouth[:, i] = mouth[:, i] / np.maximum(size, 1e-3)
        mouth = mouth.astype(np.float32)
        mouth_dict = {k: mouth[:, i] for i, k in enumerate(MOUTH_KEYS)}
        if self._mesh is not None and self._mesh_rows:
            m = np.asarray(self._mesh_rows, np.float64)[order]
            msize = _smooth_size(m[:, 3], IOD_SMOOTH_FRAMES)
            for i, k in enumerate(MESH_KEYS):
                mouth_dict[k] = (m[:, i] / np.maximum(msize, 1e-3)).astype(np.float32)
        lips = None
        if self._lips is not None:
            lips = (np.asarray(self._lips, np.float32)[order] / np.maximum(size, 1e-3)[:, None, None]).astype(np.float32)
        return VisualFeatures(
            times=t,
            fps=self.fps,
            motion=np.asarray(self._motion, np.float32)[order],
            block_motion=np.asarray(self._blocks, np.float32)[order],
            mouth=mouth_dict,
            face_detected=np.asarray(self._face, bool)[order],
            face_size=iod.astype(np.float32),
            still=not self._changed,
            lips=lips,
        )


def level_mouth(pts: np.ndarray) -> np.ndarray:
    """The 20 mouth points of 68 landmarks, centred on the mouth and rotated so the line
    between the eye centres is horizontal (pixels; the caller divides by the face size)."""
    pts = np.asarray(pts, np.float64)
    d = pts[42:48].mean(0) - pts[36:42].mean(0)
    ang = np.arctan2(d[1], d[0])
    c, s = np.cos(-ang), np.sin(-ang)
    m = pts[48:68] - pts[48:68].mean(0)
    return (m @ np.array([[c, s], [-s, c]])).astype(np.float32)


def _smooth_size(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` frames ignoring NaN (NaN where ``x`` is NaN)."""
    width = max(1, min(int(width), x.size))
    m = np.isfinite(x)
    k = np.ones(width)
    s = np.convolve(np.where(m, x, 0.0), k, mode="same")
    c = np.convolve(m.astype(np.float64), k, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(c > 0, s / np.maximum(c, 1), np.nan)
    out[~m] = np.nan
    return out
