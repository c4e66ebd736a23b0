"""Speech: lip-landmark geometry against speech-band loudness."""
from __future__ import annotations

import numpy as np

from .base import register
from .correlation import CorrelationEstimator
from .xcorr import highpass, to_grid

#: high-pass width: a 0.2 s moving-average removal keeps the 3-10 Hz articulation rhythm
#: (syllables) and drops slower loudness/jaw drifts that give wrong peaks on short clips
HIGHPASS_S = 0.2
LIP_KEYS = ("inner_open", "outer_open", "dark")
MIN_FACE_COVERAGE = 0.3


@register("lips")
class LipsEstimator(CorrelationEstimator):
    """Correlates mouth opening (inner and outer lip gaps, mouth-interior darkness) with
    the 300-3000 Hz log energy; both high-passed so only articulation is compared."""

    cue = "lips"
    faces = True

    def signals(self, features, grid):
        V, A = features.visual, features.audio
        inside = (V.times >= grid[0]) & (V.times <= grid[-1])
        if V.face_detected is None or not inside.any() or V.face_detected[inside].mean() < MIN_FACE_COVERAGE:
            return "no face with a visible mouth"
        hp = int(HIGHPASS_S * 100)
        speech = A.speech.astype(np.float64)
        a = to_grid(A.times, np.maximum(speech, np.percentile(speech, 20)), grid, 0.05)
        if not np.isfinite(a).any() or np.nanstd(a) < 0.05:
            return "silent audio"
        a = _highpass(a, hp)
        out = []
        gap = 3.0 / max(V.fps, 1.0)
        for k in LIP_KEYS:
            v = to_grid(V.times, V.mouth[k], grid, gap)
            if np.isfinite(v).sum() < 10 or np.nanstd(v) < 1e-4:
                continue
            out.append((_highpass(v, hp), a))
        return out or "mouth does not move"


def _highpass(x: np.ndarray, width: int) -> np.ndarray:
    # the moving average needs a window no longer than the signal
    return highpass(x, max(2, min(width, x.size)))
