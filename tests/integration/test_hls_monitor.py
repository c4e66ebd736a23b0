"""avsync monitor on HLS streams that ffmpeg makes from a real clip, served on 127.0.0.1."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from avsync.apps.monitor import Monitor, MonitorOptions
from avsync.media import open_media
from hls_helpers import SHIFT_MS, HlsServer, LivePublisher, make_shifted_hls

REPO = Path(__file__).resolve().parents[2]
SHIFT_AT_S = 25.0
WINDOW_S = 5.0
FRAME_MS = 40.0


@pytest.fixture(scope="module")
def shifted_hls(speech_clip, tmp_path_factory) -> Path:
    return make_shifted_hls(speech_clip, tmp_path_factory.mktemp("hls"), loops=4, shift_at_s=SHIFT_AT_S)


def _stream_start(playlist_url: str) -> float:
    with open_media(playlist_url) as src:
        return min(src.info.video_start_s, src.info.audio_start_s)


def _check_shift(windows: list[dict], shift_t: float) -> None:
    """In-sync windows first; the +200 ms shift within two windows of its start, within a frame."""
    before = [w for w in windows if w["end_s"] <= shift_t]
    assert len(before) >= 3, windows
    # in sync first: never out_of_sync, mostly in_sync (a window may fall just under the 0.5
    # confidence of a verdict and read not_assessable), every offset within a frame of the median
    assert not [w for w in before if w["verdict"] == "out_of_sync"], before
    assert sum(w["verdict"] == "in_sync" for w in before) >= 0.75 * len(before), before
    base = float(sorted(w["offset_ms"] for w in before)[len(before) // 2])
    assert all(abs(w["offset_ms"] - base) <= FRAME_MS for w in before), before
    k = next(i for i, w in enumerate(windows) if w["end_s"] > shift_t)  # the window holding the start
    first_two = windows[k:k + 2]
    hit = [w for w in first_two if w["verdict"] == "out_of_sync" and abs(w["offset_ms"] - base - SHIFT_MS) <= FRAME_MS]
    assert hit, (base, first_two)
    after = [w for w in windows if w["start_s"] >= shift_t]
    good = [w for w in after if abs(w["offset_ms"] - base - SHIFT_MS) <= FRAME_MS and w["verdict"] == "out_of_sync"]
    assert len(good) >= 0.8 * len(after), (base, after)


def test_vod_stream_shift_found_within_two_windows(shifted_hls):
    with HlsServer(shifted_hls.parent) as srv:
        url = srv.url("index.m3u8")
        shift_t = _stream_start(url) + SHIFT_AT_S
        events = []
        summary = Monitor(url, MonitorOptions(window_s=WINDOW_S), events.append).run()
    windows = [e.data for e in events if e.kind == "window"]
    _check_shift(windows, shift_t)
    alerts = [e.data for e in events if e.kind == "alert"]
    assert len(alerts) == 1 and alerts[0]["at_s"] >= shift_t - WINDOW_S, alerts
    assert summary.stopped == "end" and summary.alerts == 1 and summary.skipped_segments == 0
    assert summary.latency_mean_s is not None and 0 <= summary.latency_max_s < 30
    assert all(w["latency_s"] >= 0 for w in windows)
    # the summary reports the two offsets as segments (no median over both) and when the step came
    assert summary.median_offset_ms is None and len(summary.offset_segments) == 2, summary.offset_segments
    a, b = summary.offset_segments
    assert abs(b["offset_ms"] - a["offset_ms"] - SHIFT_MS) <= FRAME_MS
    assert abs(summary.offset_changes[0]["time_s"] - shift_t) <= 2 * WINDOW_S
    assert all(len(w["wall_time"]) >= 19 for w in windows)  # wall-clock time on every window


def test_cli_json_survives_a_missing_segment(shifted_hls):
    with HlsServer(shifted_hls.parent) as srv:
        srv.control["missing"].add("seg004.ts")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        r = subprocess.run([sys.executable, "-m", "avsync", "monitor", srv.url("index.m3u8"), "--json",
                            "--timeout-s", "5"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [d["type"] for d in docs]
    assert kinds[-1] == "summary" and "gap" in kinds
    summary = docs[-1]
    assert summary["skipped_segments"] == 1 and summary["stopped"] == "end"
    windows = [d for d in docs if d["type"] == "window"]
    assert len(windows) >= 8
    assert any(d["type"] == "alert" for d in docs)
    for w in windows:
        assert set(w) >= {"start_s", "end_s", "offset_ms", "confidence", "verdict", "latency_s"}
        assert w["end_s"] > w["start_s"]


def test_rejects_other_url_schemes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for url in ("file:///etc/passwd", "ftp://example.com/x.m3u8", "rtmp://host/live"):
        r = subprocess.run([sys.executable, "-m", "avsync", "monitor", url], capture_output=True, text=True,
                           env=env, timeout=60)
        assert r.returncode == 2, (url, r.stderr)
        assert "unsupported URL scheme" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_unreachable_stream_is_one_line_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "avsync", "monitor", "http://127.0.0.1:9/none.m3u8", "--timeout-s", "2"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert "none.m3u8" in r.stderr


@pytest.mark.slow
def test_live_sliding_playlist_reconnect_and_ctrl_c(shifted_hls, tmp_path):
    """A live playlist (sliding window of 4 segments, no ENDLIST) published faster than real
    time; the playlist is unavailable for a while (503s) and the monitor reconnects; Ctrl-C
    ends it with a summary."""
    live = tmp_path / "live"
    with LivePublisher(shifted_hls, live, period=0.7, window=4) as pub, HlsServer(live) as srv:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.Popen([sys.executable, "-m", "avsync", "monitor", srv.url("live.m3u8"), "--json",
                                 "--poll-s", "0.3", "--live-edge", "4"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        lines: list[dict] = []
        q: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda: [q.put(x) for x in proc.stdout], daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 240
            down_done = False
            last_line = time.monotonic()
            while time.monotonic() < deadline:
                try:
                    line = q.get(timeout=0.5)
                except queue.Empty:
                    if pub.published >= len(pub.segs) and time.monotonic() - last_line > 6:
                        break  # the publisher is done and the monitor waits for more
                    continue
                last_line = time.monotonic()
                lines.append(json.loads(line))
                n_win = sum(1 for d in lines if d["type"] == "window")
                if n_win >= 2 and not down_done:
                    srv.control["playlist_down"] = 3  # three 503s in a row: a reconnect
                    down_done = True
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            reader.join(10)
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    while not q.empty():
        lines.append(json.loads(q.get()))
    assert proc.returncode == 0, err
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["stopped"] == "interrupted", summary
    assert summary["reconnects"] >= 1, summary
    assert any(d["type"] == "reconnect" for d in lines)
    windows = [d for d in lines if d["type"] == "window"]
    assert len(windows) >= 7
    # joined 4 segments before the live edge: stream time does not start at 0; the shift is still found
    assert any(d["type"] == "alert" for d in lines), windows
    late = [w for w in windows if w["verdict"] == "out_of_sync"]
    assert late and all(abs(w["offset_ms"] - SHIFT_MS) <= 3 * FRAME_MS for w in late[-3:]), late
