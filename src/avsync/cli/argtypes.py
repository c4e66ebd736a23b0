"""argparse helpers shared by the commands: ``type=`` converters (bad values become one-line usage
errors) and the analysis options, checked by :mod:`avsync.options`."""
from __future__ import annotations

import argparse
import math


def positive(text: str) -> float:
    """A finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def count(text: str) -> int:
    """A whole number >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return v


def finite(text: str) -> float:
    """Any finite number (negative allowed)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    return v


def number(text: str) -> float:
    """Any number: the options schema (:mod:`avsync.options`) says whether it is acceptable."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def whole(text: str) -> int:
    """Any whole number: the options schema says whether it is acceptable."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


#: the DetectOptions that :func:`add_analysis_arguments` adds (as --max-lag-ms etc.)
ANALYSIS_OPTIONS = ("method", "tolerance", "max_lag_ms", "window_s", "hop_s")


def given_options(args, names) -> dict:
    """The options among ``names`` given on the command line (None: not given, so the options
    schema's default holds)."""
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def add_analysis_arguments(group, timeline: bool = True) -> None:
    """--method, --tolerance, --max-lag-ms (and --window-s, --hop-s for ``timeline``), none with
    a default: what is not given keeps :class:`avsync.options.DetectOptions`' default."""
    from ..options import DetectOptions as D
    from ..timeline import TOLERANCE_NAMES

    group.add_argument("--method", metavar="M", help="estimator: auto (lips when a face is tracked, else motion), "
                                                     f"lips, motion, fcn, syncnet, ... (default {D.method})")
    group.add_argument("--tolerance", metavar="PRESET",
                       help=f"verdict tolerance preset: {', '.join(TOLERANCE_NAMES)} (default {D.tolerance})")
    group.add_argument("--max-lag-ms", type=number, metavar="MS",
                       help=f"largest offset searched, either way (default {D.max_lag_ms:g})")
    if timeline:
        group.add_argument("--window-s", type=number, metavar="S",
                           help=f"timeline window length (default {D.window_s:g})")
        group.add_argument("--hop-s", type=number, metavar="S", help=f"timeline hop (default {D.hop_s:g})")


def audio_stream(text: str):
    """``--audio-stream``: a track number (0 = the first audio stream) or 'all'."""
    if text.strip().lower() == "all":
        return "all"
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a track number or 'all': {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'all': {text!r}")
    return v
