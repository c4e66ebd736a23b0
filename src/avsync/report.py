"""The detect report: built once, serialised to CLI text, JSON, REST and batch rows."""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

import numpy as np

SCHEMA = "avsync.report/1"

#: below this confidence a measured offset is reported but not judged (timeline.MIN_CONFIDENCE)
MIN_CONFIDENCE = 0.5


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
    #: the frame-rate conform this drift matches ({name, expected_ms_per_min, speed}), or None
    conform: dict | None = None

    def to_dict(self) -> dict:
        d = {"ms_per_min": round(self.ms_per_min, 3), "r2": round(self.r2, 4)}
        if self.conform is not None:
            d["conform"] = dict(self.conform)
        return d

    def offset_at(self, t_s: float) -> float:
        """The line's offset (ms) at time ``t_s``."""
        return self.intercept_ms + self.ms_per_min / 60.0 * t_s


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


@dataclass
class Segment:
    """A piece of the timeline with one offset (``n_windows``: the confident windows it holds)."""

    start_s: float
    end_s: float
    offset_ms: float
    confidence: float
    n_windows: int = 0

    def to_dict(self) -> dict:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "offset_ms": round(self.offset_ms, 2), "confidence": round(self.confidence, 4)}


@dataclass
class Change:
    """A change point: the offset steps from ``from_ms`` to ``to_ms`` at ``time_s``."""

    time_s: float
    from_ms: float
    to_ms: float
    confidence: float

    def to_dict(self) -> dict:
        return {"time_s": round(self.time_s, 3), "from_ms": round(self.from_ms, 2), "to_ms": round(self.to_ms, 2),
                "confidence": round(self.confidence, 4)}


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


def segments_fix_command(path: str, segments, out: str | None = None) -> str:
    """An ffmpeg command that corrects every segment's offset (``segments``: objects with
    start_s, end_s, offset_ms): the picture is copied, the audio cut, shifted per segment and
    re-encoded (an offset that changes mid-file cannot be fixed by moving the whole stream)."""
    q = shlex.quote
    out = out or _fixed_name(path)
    parts, labels = [], []
    for k, seg in enumerate(segments):
        a = seg.start_s - seg.offset_ms / 1000.0  # the input audio heard at seg.start_s once fixed
        b = seg.end_s - seg.offset_ms / 1000.0
        pad = ""
        if a < 0:
            pad = f",adelay={-a * 1000:.0f}:all=1"
            a = 0.0
        end = f":end={b:.3f}" if k < len(segments) - 1 else ""
        parts.append(f"[0:a:0]atrim=start={a:.3f}{end},asetpts=PTS-STARTPTS{pad}[a{k}]")
        labels.append(f"[a{k}]")
    graph = ";".join(parts) + f";{''.join(labels)}concat=n={len(segments)}:v=0:a=1[a]"
    return f"ffmpeg -i {q(path)} -filter_complex {q(graph)} -map 0:v:0 -map '[a]' -c:v copy {q(out)}"


def conform_fix_command(path: str, drift: Drift, audio_rate: int, out: str | None = None) -> str:
    """An ffmpeg command that undoes a conform drift: the audio's speed changed by the conform's
    ratio (resampled, as the conform did), then shifted by the remaining constant offset."""
    q = shlex.quote
    out = out or _fixed_name(path)
    speed = float(drift.conform["speed"])
    o0 = drift.intercept_ms / 1000.0 / speed
    chain = f"asetrate={audio_rate * speed:.4f},aresample={audio_rate}"
    if o0 > 0:
        chain += f",adelay={o0 * 1000:.0f}:all=1"
    elif o0 < 0:
        chain += f",atrim=start={-o0:.3f},asetpts=PTS-STARTPTS"
    return f"ffmpeg -i {q(path)} -map 0:v:0 -map 0:a:0 -af {q(chain)} -c:v copy {q(out)}"


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
    #: pieces of constant offset (empty when the timeline is too short to tell) and the steps between them
    segments: list[Segment] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    #: what explains the timeline best: 'constant', 'steps' or 'drift' (None: too few windows)
    offset_model: str | None = None
    #: things that limit what the report can say (a truncated file, decoding stopped early, ...)
    warnings: list[str] = field(default_factory=list)

    @property
    def several_offsets(self) -> bool:
        """The file has more than one offset (its timeline steps)."""
        return len(self.segments) > 1

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
        path = self.media["path"]
        if self.several_offsets:
            return {"ffmpeg": segments_fix_command(path, self.segments),
                    "avsync": f"avsync fix {shlex.quote(path)} {shlex.quote(_fixed_name(path))}",
                    "per_segment": True}
        conform = (self.drift.conform if self.drift is not None else None)
        if conform is not None:
            return {"ffmpeg": conform_fix_command(path, self.drift, self.media.get("audio_rate") or 48000),
                    "avsync": f"avsync fix {shlex.quote(path)} {shlex.quote(_fixed_name(path))} --conform",
                    "conform": conform["name"]}
        return {"ffmpeg": fix_command(path, self.offset_ms)}

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
            "segments": [g.to_dict() for g in self.segments],
            "changes": [c.to_dict() for c in self.changes],
            "several_offsets": self.several_offsets,
            "offset_model": self.offset_model,
            "warnings": list(self.warnings),
        }
        if self.media.get("audio_tracks") is not None and self.media.get("audio_tracks") > 1:
            d["audio_stream"] = self.media.get("audio_stream")
            d["audio_tracks"] = self.media.get("audio_tracks")
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
            **self._lse(),
            "warnings": list(self.warnings),
        }

    def _lse(self) -> dict:
        """syncnet's LSE-D / LSE-C and its 25-fps frame offset (the rows' columns), when present."""
        if "lse_d" not in self.extra:
            return {}
        return {"lse_d": self.extra.get("lse_d"), "lse_c": self.extra.get("lse_c"),
                "offset_frames_25fps": (self.extra.get("syncnet") or {}).get("offset_frames_25fps")}

    def to_text(self) -> str:
        m = self.media
        lines = [f"{m['path']}"]
        lines.append(
            f"  media     {m.get('duration_s', 0):.2f} s, {m.get('width')}x{m.get('height')} @ "
            f"{self.video_fps:.3f} fps, audio {m.get('audio_rate')} Hz"
        )
        if (m.get("audio_tracks") or 0) > 1:
            lines.append(f"  audio     track {m.get('audio_stream')} of {m.get('audio_tracks')} "
                         f"(--audio-stream N picks another, 'all' measures each)")
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
        lse = self._lse()
        if lse.get("lse_d") is not None:
            sync = self.extra.get("syncnet") or {}
            pics = (sync.get("pictures") or {}).get("frames")
            track = next((t for i, t in enumerate(sync.get("tracks") or []) if i == sync.get("chosen_track")), {})
            lines.append(f"  LSE-D     {lse['lse_d']:.4f}   LSE-C {lse['lse_c']:.4f}   (SyncNet min dist / confidence)")
            lines.append(f"  syncnet   AV offset {lse['offset_frames_25fps']:+d} frames: the reference's convention "
                         f"(frames at 25 fps, + = audio leads; {track.get('windows', '?')} windows of 5 frames"
                         f"{f', pictures {pics}' if pics else ''})")
        if self.several_offsets:
            lines.append(f"  offsets   SEVERAL: the file has {len(self.segments)} offsets (the whole-file offset "
                         "above is only the strongest one)")
            for g in self.segments:
                lines.append(f"  segment   {g.start_s:7.2f}-{g.end_s:7.2f} s  {g.offset_ms:+7.1f} ms "
                             f"({g.offset_ms * self.video_fps / 1000.0:+.2f} frames)  confidence {g.confidence:.2f}"
                             f"  {'in' if self.tolerance.accepts(g.offset_ms) else 'OUT of'} tolerance")
            for c in self.changes:
                lines.append(f"  change    at {c.time_s:.2f} s: {c.from_ms:+.1f} -> {c.to_ms:+.1f} ms "
                             f"(step {c.to_ms - c.from_ms:+.1f} ms, confidence {c.confidence:.2f})")
        if self.drift is not None:
            what = "the offset changes steadily" if self.offset_model == "drift" else "line fit"
            lines.append(f"  drift     {self.drift.ms_per_min:+.2f} ms/min (r2 {self.drift.r2:.2f}; {what})")
            if self.drift.conform is not None:
                c = self.drift.conform
                lines.append(f"  conform   matches a {c['name']} frame-rate conform (expected "
                             f"{c['expected_ms_per_min']:+.2f} ms/min): fix by playing the audio at x{c['speed']:.6f}")
        disc = self.extra.get("discontinuity")
        if disc:
            lines.append(f"  note      timestamps jump by {disc['jump_s']:+.1f} s after {disc['at_s']:.2f} s "
                         "(a discontinuity): measured up to it")
        if len(self.windows) > 1:
            judged = [w for w in self.windows if w.offset_ms is not None and w.confidence >= MIN_CONFIDENCE]
            low = [w for w in self.windows if w.offset_ms is not None and w.confidence < MIN_CONFIDENCE]
            none = len(self.windows) - len(judged) - len(low)
            lines.append(f"  timeline  {len(self.windows)} windows: {len(judged)} assessable (confidence >= "
                         f"{MIN_CONFIDENCE:g}), {len(low)} below" + (f", {none} without an offset" if none else ""))
        for w in self.warnings:
            lines.append(f"  WARNING   {w}")
        if self.fix:
            lines.append(f"  fix       {self.fix['ffmpeg']}")
            if self.fix.get("avsync"):
                lines.append(f"  or        {self.fix['avsync']}")
        return "\n".join(lines)


def _offset_line(report: Report) -> str:
    """One line: the offset, confidence and verdict, or why there is none."""
    if report.offset_ms is None:
        return f"not assessable ({report.reason or 'no usable cue'})"
    return (f"{report.offset_ms:+.1f} ms ({report.offset_frames:+.2f} frames), confidence "
            f"{report.confidence:.2f}, {report.verdict.replace('_', ' ')}")


FIX_SCHEMA = "avsync.fix/1"


@dataclass
class FixResult:
    """What :func:`avsync.fix` did: the offset applied to ``input`` to write ``output``, the
    measurement it came from (``before``; None when the offset was given) and the re-measurement
    of ``output`` (``after``; None when not verified)."""

    input: str
    output: str
    applied_offset_ms: float
    before: Report | None = None
    after: Report | None = None
    #: 'shift' (the whole stream moved, no re-encoding), 'segments' (each segment's audio moved by
    #: its own offset, audio re-encoded) or 'conform' (the audio's speed changed, re-encoded)
    mode: str = "shift"
    #: per segment: start_s, end_s, before_ms, before_confidence, after_ms, after_confidence
    segments: list = field(default_factory=list)

    @property
    def delayed(self) -> str:
        """The stream that was delayed: 'audio' (it led), 'video' (the audio lagged) or 'none'."""
        off = self.applied_offset_ms
        return "audio" if off > 0 else "video" if off < 0 else "none"

    def to_dict(self) -> dict:
        return {
            "schema": FIX_SCHEMA,
            "input": self.input,
            "output": self.output,
            "applied_offset_ms": round(self.applied_offset_ms, 2),
            "delayed": self.delayed,
            "before": self.before.to_dict() if self.before is not None else None,
            "after": self.after.to_dict() if self.after is not None else None,
            "mode": self.mode,
            "segments": [dict(g) for g in self.segments],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_text(self) -> str:
        off = self.applied_offset_ms
        lines = [f"{self.input} -> {self.output}"]
        if self.before is not None:
            lines.append(f"  before    {_offset_line(self.before)}")
        else:
            lines.append(f"  before    {off:+.1f} ms (given)")
        if self.mode == "segments":
            lines.append(f"  applied   moved the audio of each of {len(self.segments)} segments by its own offset "
                         "(audio re-encoded, picture copied)")
            for g in self.segments:
                after = g.get("after_ms")
                aft = "not re-measured" if "after_ms" not in g else (
                    "not assessable" if after is None else f"{after:+.1f} ms (confidence {g['after_confidence']:.2f})")
                lines.append(f"  segment   {g['start_s']:7.2f}-{g['end_s']:7.2f} s  before {g['before_ms']:+7.1f} ms"
                             f"  after {aft}")
        elif self.mode == "conform":
            conf = (self.before.drift.conform or {}) if self.before and self.before.drift else {}
            lines.append(f"  applied   conform {conf.get('name', '?')}: audio speed x{conf.get('speed', 1):.6f}, then "
                         f"{off:+.1f} ms (audio re-encoded, picture copied)")
        elif off:
            lines.append(f"  applied   delayed the {'audio' if off > 0 else 'video'} by {abs(off):.1f} ms "
                         "(no re-encoding)")
        else:
            lines.append("  applied   nothing to shift (offset 0); copied the streams")
        if self.after is not None:
            lines.append(f"  after     {_offset_line(self.after)}")
            if self.after.drift is not None and self.mode == "conform":
                lines.append(f"  after     drift {self.after.drift.ms_per_min:+.2f} ms/min")
        return "\n".join(lines)


# -- one row per input: ``detect --csv`` and ``batch`` (JSON Lines rows and --csv) --------------
#: The columns, in CSV order.  They are the union of the two layouts that existed before:
#:   both:          error, method, offset_ms, offset_frames, confidence, verdict
#:   batch:         key (content + options hash), input, status ('ok' | 'error'), drift_ms_per_min,
#:                  reason, duration_s, elapsed_s
#:   detect --csv:  file (the input as given: the same as input), lse_d, lse_c (syncnet's LSE-D /
#:                  LSE-C; empty for other methods)
#: Where they differed, batch's meaning holds: ``error`` is set for failed inputs only (a report
#: without an offset says why in ``reason``), and ``offset_frames`` is the report's (frames of the
#: media's own rate); syncnet's 25-fps frame offset, which detect --csv printed there, is in
#: ``offset_frames_25fps``.  ``key`` is empty for detect.
ROW_FIELDS = ("key", "input", "status", "error", "method", "offset_ms", "offset_frames", "confidence", "verdict",
              "drift_ms_per_min", "reason", "duration_s", "elapsed_s", "file", "lse_d", "lse_c",
              "offset_frames_25fps", "warnings")


def result_row(path: str, report: Report | None = None, error: str | None = None, key: str | None = None,
               elapsed_s: float | None = None, with_report: bool = True) -> dict:
    """The row of one input: its ``report``, or the one-line ``error`` when it failed.  An ok row
    carries the whole report under 'report' (``with_report``); :func:`csv_cells` flattens a row."""
    row: dict = {} if key is None else {"key": key}
    row["input"] = path
    if report is None:
        row.update(status="error", error=error)
        if elapsed_s is not None:
            row["elapsed_s"] = round(elapsed_s, 3)
        return row
    flat = report.to_row()
    flat.pop("path", None)
    row.update(status="ok", error=None, **flat, duration_s=report.media.get("duration_s"),
               elapsed_s=None if elapsed_s is None else round(elapsed_s, 3))
    if with_report:
        row["report"] = report.to_dict()
    return row


def csv_cells(row: dict) -> dict:
    """A row as CSV cells over :data:`ROW_FIELDS` (None -> ''); ``file`` and syncnet's numbers
    are filled from the row's input and report when it has them."""
    rep = row.get("report") or {}
    full = {"file": row.get("input"), "lse_d": rep.get("lse_d"), "lse_c": rep.get("lse_c"),
            "offset_frames_25fps": (rep.get("syncnet") or {}).get("offset_frames_25fps"), **row}
    cells = {k: "" if full.get(k) is None else full[k] for k in ROW_FIELDS}
    if isinstance(cells["warnings"], list):  # a CSV cell: the warnings joined
        cells["warnings"] = "; ".join(cells["warnings"])
    return cells


def csv_writer(fh):
    """A CSV writer of :data:`ROW_FIELDS` on ``fh`` (write its header yourself: ``writeheader()``)."""
    import csv

    return csv.DictWriter(fh, fieldnames=ROW_FIELDS, extrasaction="ignore")
