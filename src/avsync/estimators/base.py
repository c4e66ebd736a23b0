"""The estimator plugin interface (the registry that lists the built-in plugins is
:mod:`avsync.estimators.registry`).

An estimator turns the features of a time span into an :class:`Estimate`.  The same
call serves the whole file and every timeline window, so a plugin writes one method.
Learned estimators register here too and import their heavy dependencies lazily.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UsageError
from ..report import LagProfile


@dataclass
class Estimate:
    """One offset measurement.  ``offset_ms`` is None when the span is not assessable."""

    offset_ms: float | None
    confidence: float
    profile: LagProfile | None = None
    reason: str | None = None  # why not assessable
    cue: str | None = None  # which evidence was used ('lips', 'motion', ...)
    stats: dict = field(default_factory=dict)  # peak height, margin, ... (for calibration)

    @property
    def assessable(self) -> bool:
        return self.offset_ms is not None

    @classmethod
    def abstain(cls, reason: str, cue: str | None = None) -> "Estimate":
        return cls(offset_ms=None, confidence=0.0, reason=reason, cue=cue)


@dataclass(frozen=True)
class EstimatorOptions:
    max_lag_ms: float = 1000.0
    weights: str | None = None  # learned estimators: weights file (None: the shipped default)
    fusion: bool = True  # fcn: stack with the lips estimate when the weights carry fusion parameters


class Estimator(ABC):
    """Plugin interface.  ``faces`` says whether the features must include face tracking."""

    name: str = ""
    faces: bool = False
    #: True for methods that decode the file themselves (``detect_file(path, options, progress) -> Report``)
    #: instead of working on the shared features
    whole_file: bool = False
    trajectories: bool = False  # needs mouth landmark trajectories and log-mel (learned models)

    def __init__(self, options: EstimatorOptions = EstimatorOptions()):
        self.options = options

    def prepare(self) -> None:
        """Load what the estimator needs (weights); raise a one-line error when it cannot."""

    @abstractmethod
    def estimate(self, features, t0: float | None = None, t1: float | None = None) -> Estimate:
        """Offset of the media between times ``t0`` and ``t1`` (whole file when None)."""

    def lag_profile(self, features, t0: float | None = None, t1: float | None = None):
        """Only the lag profile (:class:`LagProfile` or None) of the span: what the offset-step
        segmentation reads; estimators that can skip their confidence work here override it."""
        return self.estimate(features, t0, t1).profile


_REGISTRY: dict[str, Callable[..., Estimator]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


#: an audio level (RMS of float samples in [-1, 1]) under this is silence (about -60 dBFS)
SILENCE_RMS = 1e-3


def flat_audio_reason(audio, mask=None) -> str:
    """Why audio whose loudness does not vary carries no timing cue: "silent audio" only when it
    is quiet; a steady tone or noise is not silence.  ``mask`` selects the hops that count."""
    import numpy as np

    rms = np.asarray(getattr(audio, "rms", np.zeros(0)), np.float64)
    if mask is not None and rms.shape == np.shape(mask):
        rms = rms[mask]
    if rms.size and np.isfinite(rms).any() and float(np.nanmedian(rms)) >= SILENCE_RMS:
        return "the sound does not change (a steady tone or noise)"
    return "silent audio"
