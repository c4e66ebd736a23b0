"""Follow an HLS stream and judge its sync window by window, on stream time.

Each decoded item is routed to the window of stream time it belongs to
(``[t0 + k W, t0 + (k + 1) W)``, with audio chunks split at the boundaries); a window
is analysed as soon as both streams have passed its end, with the same features and
estimators as ``avsync detect`` (:func:`avsync.api.analyse`), so its verdict is the
file verdict applied to that span.  Memory is bounded: a window's features are
dropped once it is judged.

Skipped segments, discontinuities and reconnects close the open windows (a partial
window is still judged when it holds at least ``min_window_s`` of both streams) and
the window grid restarts at the next decoded frame.  An alert is raised after
``alert_after`` consecutive out-of-sync windows and cleared after ``recover_after``
consecutive in-sync ones; not-assessable windows change neither count.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import numpy as np

from ..api import analyse
from ..errors import AvsyncError, DecodeError, UsageError
from ..features import Features
from ..features.audio import AudioFeatureExtractor
from ..features.visual import VisualFeatureExtractor
from ..media.hls import FollowOptions, SegmentDecoder, check_location, follow
from ..media.base import (DISCONTINUITY_BACK_S, DISCONTINUITY_S, AudioChunk, DecodeOptions, MediaInfo,
                          VideoFrame)
from ..options import DetectOptions, check_number
from ..report import MIN_CONFIDENCE, Change, Segment, Window
from ..segmentation import segment_windows
from ..timeline import DEFAULT_TOLERANCE, tolerance as tolerance_preset


@dataclass(frozen=True)
class MonitorOptions:
    """How to follow and judge a stream.  Checked when built (:class:`avsync.errors.UsageError`):
    the analysis fields through :class:`avsync.options.DetectOptions`, the rest here."""

    method: str = "auto"
    tolerance: str = DEFAULT_TOLERANCE
    max_lag_ms: float = 1000.0
    window_s: float = 5.0
    #: a window cut short (gap, end of stream) is judged only when it holds this much media
    min_window_s: float = 2.5
    alert_after: int = 2
    recover_after: int = 1
    #: stop after this many windows / this much stream time (None: until the stream ends)
    max_windows: int | None = None
    max_duration_s: float | None = None
    #: live playlists: start this many segments from the live edge
    live_edge_segments: int = 3
    follow: FollowOptions = field(default_factory=FollowOptions)

    def __post_init__(self) -> None:
        self.detect_options  # noqa: B018  (validates method, tolerance, max_lag_ms)
        check_number("window_s", self.window_s)
        check_number("min_window_s", self.min_window_s)
        for name in ("alert_after", "recover_after", "live_edge_segments"):
            check_number(name, getattr(self, name), minimum=1, strict=False, whole=True)
        check_number("max_windows", self.max_windows, minimum=1, strict=False, whole=True, optional=True)
        check_number("max_duration_s", self.max_duration_s, optional=True)
        if not isinstance(self.follow, FollowOptions):
            raise UsageError(f"follow must be FollowOptions, not {type(self.follow).__name__}")
        f = self.follow
        check_number("timeout_s", f.timeout_s)
        check_number("reconnect_s", f.reconnect_s)
        check_number("poll_s", f.poll_s, optional=True)
        check_number("retries", f.retries, strict=False, whole=True)

    @property
    def detect_options(self) -> DetectOptions:
        """The analysis of each window (no timeline: a window is one measurement)."""
        return DetectOptions(method=self.method, tolerance=self.tolerance, max_lag_ms=self.max_lag_ms,
                             timeline=False)


@dataclass
class MonitorEvent:
    """One line of monitor output.  ``kind``: window, alert, recovery, gap, reconnect, reconnected."""

    kind: str
    data: dict

    def to_dict(self) -> dict:
        return {"type": self.kind, **self.data}

    def to_text(self) -> str:
        d = self.data
        clock = f"{d['wall_time'][11:19]} " if d.get("wall_time") else ""
        return clock + self._text(d)

    def _text(self, d: dict) -> str:
        if self.kind == "window":
            off = d["offset_ms"]
            if off is None:
                what = f"offset     n/a            conf {d['confidence']:.2f}  NOT ASSESSABLE ({d.get('reason')})"
            else:
                what = (f"offset {off:+8.1f} ms ({d['offset_frames']:+6.2f} fr)  conf {d['confidence']:.2f}  "
                        f"{d['verdict'].replace('_', ' ').upper()}")
            part = " partial" if d.get("partial") else ""
            return (f"[{d['start_s']:9.2f} - {d['end_s']:9.2f} s] {what}  latency {d['latency_s']:.2f} s"
                    f"{part}")
        if self.kind == "alert":
            return (f"ALERT at {d['at_s']:.2f} s: out of sync for {d['windows']} consecutive windows "
                    f"(offset {d['offset_ms']:+.1f} ms; tolerance {d['tolerance']})")
        if self.kind == "recovery":
            return f"RECOVERED at {d['at_s']:.2f} s: back in sync (offset {d['offset_ms']:+.1f} ms) after {d['alert_s']:.1f} s"
        if self.kind == "gap":
            return f"gap: {d['reason']}"
        if self.kind == "reconnect":
            return f"reconnecting: {d['reason']}"
        if self.kind == "reconnected":
            return f"reconnected after {d['after_s']:.1f} s"
        return f"{self.kind}: {d}"


@dataclass
class MonitorSummary:
    url: str
    stopped: str  # 'end' | 'interrupted' | 'limit' | 'error'
    windows: int = 0
    in_sync: int = 0
    out_of_sync: int = 0
    not_assessable: int = 0
    alerts: int = 0
    alerting: bool = False
    segments: int = 0
    skipped_segments: int = 0
    reconnects: int = 0
    stream_start_s: float | None = None
    stream_end_s: float | None = None
    #: the median of the window offsets; None when the stream has several offsets (see offset_segments)
    median_offset_ms: float | None = None
    #: pieces of constant offset over the judged windows ({start_s, end_s, offset_ms, confidence})
    #: and the steps between them ({time_s, from_ms, to_ms, confidence}), on stream time
    offset_segments: list = field(default_factory=list)
    offset_changes: list = field(default_factory=list)
    latency_mean_s: float | None = None
    latency_max_s: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        d = {"type": "summary"}
        for k, v in self.__dict__.items():
            d[k] = round(v, 3) if isinstance(v, float) else v
        return d

    def to_text(self) -> str:
        span = ""
        if self.stream_start_s is not None and self.stream_end_s is not None:
            span = f" over {self.stream_end_s - self.stream_start_s:.1f} s of stream"
        lines = [f"summary ({self.stopped}): {self.windows} windows{span}: {self.in_sync} in sync, "
                 f"{self.out_of_sync} out of sync, {self.not_assessable} not assessable; {self.alerts} alert(s)"
                 + (" (still alerting)" if self.alerting else "")]
        lines.append(f"  segments {self.segments} decoded, {self.skipped_segments} skipped, "
                     f"{self.reconnects} reconnect(s)")
        if len(self.offset_segments) > 1:
            lines.append(f"  offsets   {len(self.offset_segments)} segments (the offset steps at "
                         + ", ".join(f"{c['time_s']:.1f} s" for c in self.offset_changes) + "):")
            for g in self.offset_segments:
                lines.append(f"    {g['start_s']:9.2f} - {g['end_s']:9.2f} s  {g['offset_ms']:+8.1f} ms  "
                             f"(confidence {g['confidence']:.2f})")
        elif self.median_offset_ms is not None:
            lines.append(f"  offset    {self.median_offset_ms:+.1f} ms (median of the windows; one offset throughout)")
        if self.latency_mean_s is not None:
            lines.append(f"  latency segment arrival -> verdict: mean {self.latency_mean_s:.2f} s, "
                         f"max {self.latency_max_s:.2f} s")
        if self.error:
            lines.append(f"  stopped by error: {self.error}")
        return "\n".join(lines)


class _Window:
    """Feature extractors of one window of stream time."""

    def __init__(self, index: int, t0: float, t1: float, fps: float, faces: str):
        self.index, self.t0, self.t1 = index, t0, t1
        self.audio = AudioFeatureExtractor(16000)
        # windows overlap and come and go: the face mesh runs in this process (no child per window)
        self.visual = VisualFeatureExtractor(fps, faces=faces, mesh_child=False)
        self.first_v = self.last_v = None
        self.first_a: float | None = None
        self.audio_end: float | None = None

    def add_video(self, f: VideoFrame) -> None:
        self.visual.add(f)
        self.first_v = f.t if self.first_v is None else self.first_v
        self.last_v = f.t

    def add_audio(self, c: AudioChunk) -> None:
        self.audio.add(c)
        self.first_a = c.t if self.first_a is None else self.first_a
        self.audio_end = c.t + c.samples.size / c.rate

    def span_s(self) -> float:
        if self.first_v is None or self.first_a is None:
            return 0.0
        return min(self.last_v, self.audio_end) - max(self.first_v, self.first_a)


class Monitor:
    """Runs the monitoring loop; every result goes to ``on_event`` as it happens."""

    def __init__(self, url: str, options: MonitorOptions = MonitorOptions(),
                 on_event: Callable[[MonitorEvent], None] | None = None, clock=time.monotonic,
                 wall=time.time):
        self.url = check_location(url)
        self.options = options
        self.on_event = on_event or (lambda ev: None)
        self.clock = clock
        self.wall = wall  # wall-clock time (epoch seconds) stamped on every event
        self.detect_options = options.detect_options
        self.summary = MonitorSummary(url=self.url, stopped="end")
        self._windows: dict[int, _Window] = {}
        self._grid0: float | None = None
        self._decoder = SegmentDecoder(DecodeOptions(), self.url)
        self._offsets: list[float] = []
        self._judged_windows: list[Window] = []
        self._latencies: list[float] = []
        self._bad = self._good = 0
        self._alert_since: float | None = None
        self._stop = False
        self._judged = 0
        self._last_t: dict[str, float] = {}  # stream kind -> last routed timestamp

    # -- public -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end after the current segment (thread-safe)."""
        self._stop = True

    def run(self) -> MonitorSummary:
        s = self.summary
        fo = self.options.follow
        if fo.live_edge_segments != self.options.live_edge_segments:
            fo = FollowOptions(**{**fo.__dict__, "live_edge_segments": self.options.live_edge_segments})
        try:
            for sd in follow(self.url, fo, on_event=self._follow_event, stop=lambda: self._stop):
                if sd.gap:
                    self._close_all(sd.arrived, "gap")
                if sd.data is None:
                    s.skipped_segments += 1
                    continue
                try:
                    items = self._decoder.decode(sd.data)
                except DecodeError as exc:
                    s.skipped_segments += 1
                    self._emit("gap", reason=f"segment {sd.segment.seq} not decodable ({exc.reason})",
                               seq=sd.segment.seq)
                    self._close_all(sd.arrived, "gap")
                    continue
                s.segments += 1
                self._last_arrival = sd.arrived
                self._route(items, sd.arrived)
                self._judge_ready(sd.arrived)
                if self._limit_reached():
                    s.stopped = "limit"
                    break
            else:
                if self._stop:
                    s.stopped = "interrupted"
            if s.stopped != "limit":
                self._close_all(self._last_arrival or self.clock(), "end")
        except KeyboardInterrupt:
            s.stopped = "interrupted"
        except AvsyncError as exc:
            s.stopped = "error"
            s.error = str(exc)
        self._finish_summary()
        return s

    # -- internals ----------------------------------------------------------------------------
    def _emit(self, kind: str, **data) -> None:
        from datetime import datetime

        data["wall_time"] = datetime.fromtimestamp(self.wall()).astimezone().isoformat(timespec="seconds")
        self.on_event(MonitorEvent(kind, data))

    def _follow_event(self, kind: str, info: dict) -> None:
        if kind == "skip":
            self._emit("gap", reason=f"segment {info['seq']} skipped ({info['reason']})", seq=info["seq"])
        elif kind == "behind":
            self._emit("gap", reason=f"{info['missed']} segment(s) left the live playlist before they were read",
                       missed=info["missed"])
            self.summary.skipped_segments += info["missed"]
        elif kind == "discontinuity":
            self._emit("gap", reason=f"discontinuity before segment {info['seq']}", seq=info["seq"])
        elif kind == "reconnect":
            self.summary.reconnects += 1
            self._emit("reconnect", reason=info["reason"])
        elif kind == "reconnected":
            self._emit("reconnected", after_s=info["after_s"])

    def _limit_reached(self) -> bool:
        o = self.options
        if o.max_windows is not None and self._judged >= o.max_windows:
            return True
        s = self.summary
        if (o.max_duration_s is not None and s.stream_start_s is not None and s.stream_end_s is not None
                and s.stream_end_s - s.stream_start_s >= o.max_duration_s):
            return True
        return False

    def _window(self, k: int) -> _Window:
        w = self._windows.get(k)
        if w is None:
            W = self.options.window_s
            fps = float(self._decoder.params.get("video_fps") or 25.0)
            faces = "off" if self.options.method == "motion" else "auto"
            w = _Window(k, self._grid0 + k * W, self._grid0 + (k + 1) * W, fps, faces)
            self._windows[k] = w
        return w

    def _route(self, items: list, arrived: float | None = None) -> None:
        W = self.options.window_s
        for it in items:
            t = it.t
            kind = "video" if isinstance(it, VideoFrame) else "audio"
            last = self._last_t.get(kind)
            if last is not None and not (-DISCONTINUITY_BACK_S <= t - last <= DISCONTINUITY_S):
                # timestamps restarted or jumped without a discontinuity tag: a gap, not items to drop
                self._emit("gap", reason=f"timestamps jump by {t - last:+.2f} s without a discontinuity tag",
                           jump_s=round(t - last, 3))
                self._close_all(arrived if arrived is not None else self.clock(), "gap")
            self._last_t[kind] = t
            if self._grid0 is None:
                self._grid0 = t
            if self.summary.stream_start_s is None:
                self.summary.stream_start_s = t
            k = math.floor((t - self._grid0) / W + 1e-9)
            if k < 0 or (self._judged_upto is not None and k <= self._judged_upto):
                continue  # late item for a window already judged
            if isinstance(it, VideoFrame):
                self._window(k).add_video(it)
                continue
            # audio: split at window boundaries
            rate, samples, start = it.rate, it.samples, it.start
            while samples.size:
                kk = math.floor((float(start) - self._grid0) / W + 1e-9)
                end_t = self._grid0 + (kk + 1) * W
                n = int(math.ceil((end_t - float(start)) * rate - 1e-9))
                n = max(1, min(n, samples.size))
                if self._judged_upto is None or kk > self._judged_upto:
                    self._window(kk).add_audio(AudioChunk(start, samples[:n], rate))
                samples = samples[n:]
                start = start + Fraction(n, rate)

    _judged_upto: int | None = None
    _last_arrival: float | None = None

    def _judge_ready(self, arrived: float) -> None:
        # both streams must have passed a window's end before it is judged
        v_hi = max((w.last_v for w in self._windows.values() if w.last_v is not None), default=None)
        a_hi = max((w.audio_end for w in self._windows.values() if w.audio_end is not None), default=None)
        if v_hi is None or a_hi is None:
            return
        frame = 1.0 / float(self._decoder.params.get("video_fps") or 25.0)
        done_t = min(v_hi + frame, a_hi)
        for k in sorted(self._windows):
            w = self._windows[k]
            if w.t1 <= done_t + 1e-6:
                self._judge(self._windows.pop(k), arrived, partial=False)
                if self._limit_reached():
                    return
            else:
                break

    def _close_all(self, arrived: float, why: str) -> None:
        for k in sorted(self._windows):
            w = self._windows.pop(k)
            if w.span_s() >= self.options.min_window_s:
                self._judge(w, arrived, partial=True)
        self._windows.clear()
        self._grid0 = None
        self._judged_upto = None
        self._last_t = {}
        self._decoder.reset_timeline()

    def _judge(self, w: _Window, arrived: float, partial: bool) -> None:
        s = self.summary
        self._judged_upto = w.index if self._judged_upto is None else max(self._judged_upto, w.index)
        audio, visual = w.audio.finish(), w.visual.finish()
        p = self._decoder.params
        info = MediaInfo(path=self.url, duration_s=round(w.t1 - w.t0, 3), video_fps=p.get("video_fps"),
                         audio_rate=p.get("audio_rate"), width=p.get("width"), height=p.get("height"),
                         format_name="hls")
        start = w.t0 if not partial else max(w.t0, min(w.first_v or w.t0, w.first_a or w.t0))
        end = w.t1 if not partial else min(w.t1, max(w.last_v or w.t0, w.audio_end or w.t0))
        if audio is None or visual is None or len(visual) < 3 or len(audio) < 50:
            offset, conf, verdict, method, reason = None, 0.0, "not_assessable", self.options.method, \
                "no audio" if audio is None else "too little video"
        else:
            rep = analyse(Features(info=info, audio=audio, visual=visual), self.detect_options)
            offset, conf, verdict, method, reason = rep.offset_ms, rep.confidence, rep.verdict, rep.method, \
                rep.reason
        latency = max(0.0, self.clock() - arrived)
        fps = float(p.get("video_fps") or 25.0)
        self._judged += 1
        s.windows += 1
        s.stream_end_s = end if s.stream_end_s is None else max(s.stream_end_s, end)
        setattr(s, verdict, getattr(s, verdict) + 1)
        if offset is not None:
            self._offsets.append(offset)
        self._judged_windows.append(Window(start, end, offset, conf))
        self._latencies.append(latency)
        self._emit("window", index=s.windows - 1, start_s=round(start, 3), end_s=round(end, 3),
                   offset_ms=None if offset is None else round(offset, 2),
                   offset_frames=None if offset is None else round(offset * fps / 1000.0, 3),
                   confidence=round(conf, 4), verdict=verdict, method=method, reason=reason,
                   latency_s=round(latency, 3), partial=partial)
        self._update_alert(verdict, offset, start, end)

    def _update_alert(self, verdict: str, offset: float | None, start: float, end: float) -> None:
        o, s = self.options, self.summary
        if verdict == "out_of_sync":
            self._bad += 1
            self._good = 0
            if self._alert_since is None and self._bad >= o.alert_after:
                self._alert_since = start - (self._bad - 1) * o.window_s
                s.alerts += 1
                s.alerting = True
                tol = tolerance_preset(o.tolerance, self._decoder.params.get("video_fps"))
                self._emit("alert", at_s=round(self._alert_since, 3), windows=self._bad,
                           offset_ms=round(offset, 2), tolerance=f"{tol.name} +{tol.lead_ms:g}/-{tol.lag_ms:g} ms")
        elif verdict == "in_sync":
            self._good += 1
            self._bad = 0
            if self._alert_since is not None and self._good >= o.recover_after:
                self._emit("recovery", at_s=round(start, 3), offset_ms=round(offset, 2),
                           alert_s=round(start - self._alert_since, 3))
                self._alert_since = None
                s.alerting = False

    def _finish_summary(self) -> None:
        s = self.summary
        fps = float(self._decoder.params.get("video_fps") or 25.0)
        segments, changes = stream_segments(self._judged_windows, self.options.window_s, fps)
        s.offset_segments = [g.to_dict() for g in segments]
        s.offset_changes = [c.to_dict() for c in changes]
        if self._offsets and len(segments) <= 1:
            s.median_offset_ms = float(statistics.median(self._offsets))
        if self._latencies:
            s.latency_mean_s = float(np.mean(self._latencies))
            s.latency_max_s = float(np.max(self._latencies))


def stream_segments(windows: list[Window], window_s: float, fps: float) -> tuple[list[Segment], list[Change]]:
    """Pieces of constant offset over a stream's judged windows: the file timeline's segmentation
    (:func:`avsync.segmentation.segment_windows`) when there are enough confident windows; else the
    confident windows grouped while each stays within two frames of its group's median."""
    seg = segment_windows(windows, window_s, window_s, fps)
    if seg is not None:
        return seg.segments, seg.changes
    good = [w for w in windows if w.offset_ms is not None and w.confidence >= MIN_CONFIDENCE]
    groups: list[list[Window]] = []
    for w in good:
        if groups and abs(w.offset_ms - statistics.median(x.offset_ms for x in groups[-1])) <= 2000.0 / fps:
            groups[-1].append(w)
        else:
            groups.append([w])
    segments = [Segment(g[0].start_s, g[-1].end_s, float(statistics.median(x.offset_ms for x in g)),
                        float(statistics.median(x.confidence for x in g)), len(g)) for g in groups]
    changes = [Change((a.end_s + b.start_s) / 2, a.offset_ms, b.offset_ms, min(a.confidence, b.confidence))
               for a, b in zip(segments[:-1], segments[1:])]
    return segments, changes


def monitor(url: str, options: MonitorOptions = MonitorOptions(),
            on_event: Callable[[MonitorEvent], None] | None = None) -> MonitorSummary:
    """Follow ``url`` until it ends (or Ctrl-C); returns the summary."""
    return Monitor(url, options, on_event).run()
