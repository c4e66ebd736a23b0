"""The detect report: built once, serialised to CLI text, JSON, REST and batch rows."""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

import numpy as np

SCHEMA = "avsync.report/1"


@dataclass
class LagProfile:
    """Scores over candidate lags (``kind``: 'correlation' higher is better, 'distance' lower)."""

    lag_ms: np.ndarray
    value: np.ndarray
    kind: str = "correlation"

    def to_dict(self) -> dict:
        def r(x):
            return [None if not np.isfinite(v) else round(float(v), 5) for v in x]

        return {"lag_ms": r(self.lag_ms), "value": r(self.value), "kind": self.kind}


@dataclass(frozen=True)
class Tolerance:
    name: str
    lead_ms: float  # largest acceptable audio lead (offset_ms > 0)
    lag_ms: float  # largest acceptable audio lag (offset_ms < 0)

    def accepts(self, offset_ms: float) -> bool:
        return -self.lag_ms <= offset_ms <= self.lead_ms

    def to_dict(self) -> dict:
        return {"name": self.name, "lead_ms": self.lead_ms, "lag_ms": self.lag_ms}


@dataclass(frozen=True)
class Drift:
    ms_per_min: float
    r2: float
    intercept_ms: float

    def to_dict(self) -> dict:
        return {"ms_per_min": round(self.ms_per_min, 3), "r2": round(self.r2, 4)}


@dataclass
class Window:
    start_s: float
    end_s: float
    offset_ms: float | None
    confidence: float

    def to_dict(self) -> dict:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "offset_ms": None if self.offset_ms is None else round(self.offset_ms, 2),
            "confidence": round(self.confidence, 4),
        }


def fix_command(path: str, offset_ms: float, out: str | None = None) -> str:
    """An ffmpeg command that re-times the file without re-encoding.

    Audio leading (offset > 0) is fixed by delaying the audio; audio lagging by
    delaying the video, so no timestamp ever goes negative."""
    q = shlex.quote
    out = out or _fixed_name(path)
    delay = abs(offset_ms) / 1000.0
    if offset_ms > 0:
        maps = "-map 0:v:0 -map 1:a:0"
    else:
        maps = "-map 1:v:0 -map 0:a:0"
    return f"ffmpeg -i {q(path)} -itsoffset {delay:.3f} -i {q(path)} {maps} -c copy {q(out)}"


def _fixed_name(path: str) -> str:
    import os

    root, ext = os.path.splitext(path)
    return f"{root}.fixed{ext or '.mkv'}"


@dataclass
class Report:
    media: dict
    method: str
    offset_ms: float | None
    confidence: float
    verdict: str
    tolerance: Tolerance
    windows: list[Window] = field(default_factory=list)
    drift: Drift | None = None
    profile: LagProfile | None = None
    reason: str | None = None
    cue: str | None = None
    elapsed_s: float | None = None
    stats: dict = field(default_factory=dict)
    #: method-specific top-level JSON fields (e.g. syncnet's ``lse_d`` / ``lse_c``); never override the contract's
    extra: dict = field(default_factory=dict)

    @property
    def video_fps(self) -> float:
        return float(self.media.get("video_fps") or 25.0)

    @property
    def offset_frames(self) -> float | None:
        if self.offset_ms is None:
            return None
        return self.offset_ms * self.video_fps / 1000.0

    @property
    def fix(self) -> dict | None:
        if self.verdict != "out_of_sync" or self.offset_ms is None:
            return None
        return {"ffmpeg": fix_command(self.media["path"], self.offset_ms)}

    def to_dict(self) -> dict:
        d = {
            "schema": SCHEMA,
            "media": {k: self.media.get(k) for k in ("path", "duration_s", "video_fps", "audio_rate", "width",
                                                     "height")},
            "method": self.method,
            "offset_ms": None if self.offset_ms is None else round(self.offset_ms, 2),
            "offset_frames": None if self.offset_frames is None else round(self.offset_frames, 3),
            "confidence": round(self.confidence, 4),
            "verdict": self.verdict,
            "tolerance": self.tolerance.to_dict(),
            "windows": [w.to_dict() for w in self.windows],
            "drift": self.drift.to_dict() if self.drift else None,
            "profile": self.profile.to_dict() if self.profile is not None else None,
            "fix": self.fix,
        }
        if self.reason:
            d["reason"] = self.reason
        if self.cue:
            d["cue"] = self.cue
        if self.elapsed_s is not None:
            d["elapsed_s"] = round(self.elapsed_s, 3)
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_row(self) -> dict:
        """A flat row for CSV / batch output."""
        return {
            "path": self.media.get("path"),
            "method": self.method,
            "offset_ms": self.to_dict()["offset_ms"],
            "offset_frames": self.to_dict()["offset_frames"],
            "confidence": round(self.confidence, 4),
            "verdict": self.verdict,
            "drift_ms_per_min": round(self.drift.ms_per_min, 3) if self.drift else None,
            "reason": self.reason,
        }

    def to_text(self) -> str:
        m = self.media
        lines = [f"{m['path']}"]
        lines.append(
            f"  media     {m.get('duration_s', 0):.2f} s, {m.get('width')}x{m.get('height')} @ "
            f"{self.video_fps:.3f} fps, audio {m.get('audio_rate')} Hz"
        )
        if self.offset_ms is None:
            lines.append(f"  verdict   NOT ASSESSABLE ({self.reason or 'no usable cue'})")
        else:
            side = "audio leads" if self.offset_ms > 0 else "audio lags" if self.offset_ms < 0 else "aligned"
            lines.append(f"  offset    {self.offset_ms:+.1f} ms ({self.offset_frames:+.2f} frames, {side})")
            lines.append(f"  confidence {self.confidence:.2f}  (method {self.method}, cue {self.cue})")
            verdict = self.verdict.replace("_", " ").upper()
            tol = self.tolerance
            extra = f" ({self.reason})" if self.reason else ""
            lines.append(f"  verdict   {verdict}{extra} against {tol.name} (+{tol.lead_ms:g}/-{tol.lag_ms:g} ms)")
        if self.drift is not None:
            lines.append(f"  drift     {self.drift.ms_per_min:+.2f} ms/min (r2 {self.drift.r2:.2f})")
        if len(self.windows) > 1:
            ok = [w for w in self.windows if w.offset_ms is not None]
            lines.append(f"  timeline  {len(self.windows)} windows, {len(ok)} assessable")
        if self.fix:
            lines.append(f"  fix       {self.fix['ffmpeg']}")
        return "\n".join(lines)
