"""The analysis options: one validated schema for the API, the CLI, the REST service, batch keys
and the monitor.

``DetectOptions(...)`` checks itself when built and raises :class:`avsync.errors.UsageError`
with a one-line message (unknown method or tolerance, a number that is not finite and > 0, a bad
crop or precision, a wrong type), so no entry point needs checks of its own.
:meth:`DetectOptions.to_dict` / :meth:`DetectOptions.from_dict` give the JSON form.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields

from .errors import UsageError
from .timeline import DEFAULT_TOLERANCE, TOLERANCE_NAMES

#: face crops for learned lip methods: detect and track, or the input is already a face crop
CROPS = ("auto", "none")
#: learned methods: exact (fp32), fast (reduced precision); syncnet also onnx (ONNX Runtime)
PRECISIONS = ("exact", "fast", "onnx")
#: syncnet's pictures: "jpeg" = the public reference's lossy round trip (ffmpeg's MJPEG encoder at its
#: default rate control, read back by OpenCV), emulated in memory; "lossless" = the decoded pictures
SYNCNET_FRAMES = ("jpeg", "lossless")


def check_number(name: str, value, minimum: float = 0.0, strict: bool = True, whole: bool = False,
                 optional: bool = False):
    """``value`` when it is a finite number above ``minimum`` (or at least it, ``strict=False``);
    a whole number for ``whole``; None passes when ``optional``.  Else :class:`UsageError`."""
    if value is None and optional:
        return value
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise UsageError(f"{name} must be {kind}, not {value!r}")
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        raise UsageError(f"{name} must be {kind} {'>' if strict else '>='} {minimum:g}, not {value!r}")
    return value


def check_choice(name: str, value, choices) -> str:
    """``value`` when it is one of ``choices``; else :class:`UsageError` naming them."""
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose from {', '.join(choices)}")
    return value


def check_tolerance(name: str) -> str:
    return check_choice("tolerance", name, TOLERANCE_NAMES)


def check_method(name: str) -> str:
    from .estimators.registry import available_methods

    return check_choice("method", name, available_methods())


def _check_path(name: str, value) -> None:
    if value is not None and not (isinstance(value, (str, os.PathLike)) and os.fspath(value)):
        raise UsageError(f"{name} must be a path, not {value!r}")


def _check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, not {value!r}")


@dataclass(frozen=True)
class DetectOptions:
    """What to measure and how to judge it (see :func:`avsync.detect`)."""

    #: estimator: "auto" or a registered method (lips, motion, fcn, syncnet, ...)
    method: str = "auto"
    #: verdict tolerance preset (:data:`avsync.timeline.TOLERANCE_NAMES`)
    tolerance: str = DEFAULT_TOLERANCE
    #: largest offset searched, either way
    max_lag_ms: float = 1000.0
    #: timeline window length and hop
    window_s: float = 5.0
    hop_s: float = 1.0
    timeline: bool = True
    #: weights file for learned methods (None: the shipped default or $AVSYNC_SYNCNET_WEIGHTS)
    weights: str | None = None
    #: face crops for learned lip methods: "auto" (detect and track) or "none" (the input is a face crop)
    crop: str = "auto"
    #: "exact" or "fast" (reduced precision) for learned methods; syncnet also "onnx"
    precision: str = "exact"
    #: syncnet with crop "none": "jpeg" gives the public reference code's numbers (its frames pass
    #: through ffmpeg's MJPEG encoder and OpenCV's decoder; emulated in memory); "lossless" scores the
    #: decoded pictures themselves (LSE-D about 1 higher with the example clip).  Crop "auto" always
    #: scores lossless crops.
    syncnet_frames: str = "jpeg"
    #: folder for debug pictures (learned lip methods: the face crops)
    debug_dir: str | None = None
    #: fcn: stack the learned estimate with the weight-free lips estimate (when the weights carry
    #: fitted fusion parameters); False gives the learned model alone
    fusion: bool = True
    #: video decoder threads: None lets FFmpeg choose (about one per core); 1 suits many
    #: detections side by side.  Never changes the result.  (Methods that decode the file
    #: themselves, such as syncnet, keep FFmpeg's choice.)
    threads: int | None = None
    #: the audio track to measure: its number among the file's audio streams (None: the first);
    #: every track: :func:`avsync.api.detect_tracks`
    audio_stream: int | None = None

    def __post_init__(self) -> None:
        check_method(self.method)
        check_tolerance(self.tolerance)
        for name in ("max_lag_ms", "window_s", "hop_s"):
            check_number(name, getattr(self, name))
        check_number("threads", self.threads, minimum=1, strict=False, whole=True, optional=True)
        check_number("audio_stream", self.audio_stream, minimum=0, strict=False, whole=True, optional=True)
        _check_flag("timeline", self.timeline)
        _check_flag("fusion", self.fusion)
        _check_path("weights", self.weights)
        _check_path("debug_dir", self.debug_dir)
        check_choice("crop", self.crop, CROPS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("syncnet_frames", self.syncnet_frames, SYNCNET_FRAMES)

    def to_dict(self) -> dict:
        """Every option, JSON-able (paths as strings)."""
        d = asdict(self)
        for k in ("weights", "debug_dir"):
            if d[k] is not None:
                d[k] = os.fspath(d[k])
        return d

    @classmethod
    def from_dict(cls, data) -> "DetectOptions":
        """Options from a JSON object; missing keys keep their defaults, unknown keys are refused."""
        if not isinstance(data, dict):
            raise UsageError(f"options must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**data)


__all__ = ["CROPS", "DetectOptions", "PRECISIONS", "SYNCNET_FRAMES", "check_choice", "check_method", "check_number",
           "check_tolerance"]
