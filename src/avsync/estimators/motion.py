"""Non-speech content: picture motion against sound onsets."""
from __future__ import annotations

import numpy as np

from .base import flat_audio_reason, register
from .correlation import CorrelationEstimator
from .xcorr import highpass, to_grid

HIGHPASS_S = 1.0


@register("motion")
class MotionEstimator(CorrelationEstimator):
    """Correlates frame-difference energy (whole frame and its most active blocks) with
    the audio onset strength (spectral flux) and loudness."""

    cue = "motion"
    faces = False

    def signals(self, features, grid):
        V, A = features.visual, features.audio
        if V.still:
            return "the picture does not change"
        hp = int(HIGHPASS_S * 100)
        gap = 3.0 / max(V.fps, 1.0)
        flux = to_grid(A.times, A.flux, grid, 0.05)
        energy = A.energy.astype(np.float64)
        loud = to_grid(A.times, np.maximum(energy, np.percentile(energy, 20)), grid, 0.05)
        if not np.isfinite(loud).any() or np.nanstd(loud) < 0.05:
            return flat_audio_reason(A)
        flux, loud = highpass(flux, hp), highpass(loud, hp)
        out = []
        m = V.motion.astype(np.float64)
        if np.nanstd(m) > 1e-3:
            mv = highpass(to_grid(V.times, m, grid, gap), hp)
            out += [(mv, flux), (mv, loud)]
        bm = V.block_motion
        if bm.ndim == 2 and bm.shape[0] > 2:
            act = np.nanstd(bm, axis=0)
            for j in np.argsort(-np.nan_to_num(act))[:3]:
                if act[j] > 1e-3:
                    out.append((highpass(to_grid(V.times, bm[:, j], grid, gap), hp), flux))
        return out or "no motion in the picture"
