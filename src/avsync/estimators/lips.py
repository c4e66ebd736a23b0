"""Speech: lip-landmark geometry against speech-band loudness, sharpened by lip closures.

The continuous correlation follows the syllable rhythm, so a neighbouring syllable (150-250 ms
away) can fit almost as well as the truth.  Lip closures (:mod:`.closures`) are sparse,
irregular events whose fit has one sharp peak: their evidence is added to the correlation
profile before the peak is picked, at the lags the correlation itself finds plausible,
weighted by how many closures the span holds."""
from __future__ import annotations

import numpy as np

from .base import flat_audio_reason, register
from .correlation import CorrelationEstimator
from .xcorr import highpass, to_grid

#: high-pass width: a 0.2 s moving-average removal keeps the 3-10 Hz articulation rhythm
#: (syllables) and drops slower loudness/jaw drifts that give wrong peaks on short clips
HIGHPASS_S = 0.2
LIP_KEYS = ("inner_open", "outer_open", "dark")
#: the face-mesh measures of the same lips, when the mesh is installed (features.mesh)
MESH_LIP_KEYS = ("mesh_inner", "mesh_outer")
MIN_FACE_COVERAGE = 0.3
#: weight of the closures' mean z-score per sqrt(closure) against the correlation profile's
#: z-score; the closures only arbitrate between lags the correlation itself rates within
#: CANDIDATE_Z of its best (they never create a peak of their own), and need MIN_CLOSURES.
#: Chosen on training clips of speakers the benchmark does not hold (media/train: CREMA-D,
#: VoxCeleb2, MEAD; see docs/accuracy.md), never on the benchmark clips
CLOSURE_WEIGHT = 1.0
CANDIDATE_Z = 1.0
MIN_CLOSURES = 3


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
            return flat_audio_reason(A)
        a = _highpass(a, hp)
        out = []
        gap = 3.0 / max(V.fps, 1.0)
        for k in LIP_KEYS + MESH_LIP_KEYS:
            if k not in V.mouth:
                continue
            v = to_grid(V.times, V.mouth[k], grid, gap)
            if np.isfinite(v).sum() < 10 or np.nanstd(v) < 1e-4:
                continue
            out.append((_highpass(v, hp), a, "mesh" if k in MESH_LIP_KEYS else "dlib"))
        return out or "mouth does not move"


    def sharpen(self, features, lags_ms, profile, t0, t1):
        """The profile as z-scores over lags plus the lip closures' evidence at the same lags."""
        from .closures import closure_evidence, closures_bias_ms

        ok = np.isfinite(profile)
        if ok.sum() < 3:
            return profile, {}
        z = (profile - np.nanmean(profile)) / (np.nanstd(profile) + 1e-9)
        # raw lag L (ms) = offset + lips bias; the closures see the audio -(offset + their bias) s later
        tau = -(lags_ms - self.bias_ms() + closures_bias_ms()) / 1000.0
        ev = closure_evidence(features, tau, t0, t1)
        if ev is None or len(ev) < MIN_CLOSURES:
            return z, {"closure_events": 0 if ev is None else int(len(ev)), "closure_curve": None}
        curve = ev.mean(axis=0)
        near = np.nan_to_num(z, nan=-np.inf) >= np.nanmax(z) - CANDIDATE_Z
        return z + near * CLOSURE_WEIGHT * np.sqrt(len(ev)) * curve, {"closure_events": int(len(ev)),
                                                                        "closure_curve": curve}


def _highpass(x: np.ndarray, width: int) -> np.ndarray:
    # the moving average needs a window no longer than the signal
    return highpass(x, max(2, min(width, x.size)))
