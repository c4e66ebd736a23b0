"""HLS playlist parsing, URL rules and the monitor's alert logic (no network, no media)."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.errors import CannotOpen, UsageError
from avsync.apps.monitor import Monitor, MonitorOptions
from avsync.media import open_media
from avsync.media.hls import check_location, load_playlist, parse_playlist, resolve

MEDIA = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:17
#EXTINF:2.000,
a.ts
#EXT-X-DISCONTINUITY
#EXTINF:1.5,
sub/b.ts?x=1
#EXT-X-ENDLIST
"""


def test_media_playlist():
    pl = parse_playlist(MEDIA, "http://h:1/live/index.m3u8")
    assert [s.seq for s in pl.segments] == [17, 18]
    assert [s.duration for s in pl.segments] == [2.0, 1.5]
    assert pl.segments[0].uri == "http://h:1/live/a.ts"
    assert pl.segments[1].uri == "http://h:1/live/sub/b.ts?x=1"
    assert pl.segments[1].discontinuity and not pl.segments[0].discontinuity
    assert pl.endlist and pl.target_duration == 2.0 and not pl.is_master


def test_master_playlist_and_local_resolution(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "m.m3u8").write_text(MEDIA)
    (tmp_path / "master.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nv/m.m3u8\n")
    pl = load_playlist(str(tmp_path / "master.m3u8"))
    assert pl.segments[0].uri == str(tmp_path / "v" / "a.ts")


def test_not_a_playlist_and_encrypted():
    with pytest.raises(CannotOpen, match="not an HLS playlist"):
        parse_playlist("hello", "x.m3u8")
    with pytest.raises(CannotOpen, match="encrypted"):
        parse_playlist("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:2,\na.ts\n", "x.m3u8")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://h/x.m3u8", "rtmp://h/live", "gopher://h/"])
def test_other_schemes_refused(url):
    with pytest.raises(UsageError, match="unsupported URL scheme"):
        check_location(url)
    with pytest.raises(UsageError):
        open_media(url)


def test_playlist_cannot_point_at_other_schemes():
    with pytest.raises(CannotOpen, match="unsupported URL scheme"):
        resolve("http://h/index.m3u8", "file:///etc/passwd")
    with pytest.raises(CannotOpen):
        parse_playlist("#EXTM3U\n#EXTINF:2,\nfile:///etc/shadow\n", "http://h/index.m3u8")
    assert check_location("http://h/x.m3u8") and check_location("some/local.m3u8")


def test_alert_after_n_and_recovery():
    events = []
    m = Monitor("http://h/x.m3u8", MonitorOptions(alert_after=2, window_s=5.0), events.append)
    t = 0.0
    for v, off in [("in_sync", 10), ("out_of_sync", 200), ("not_assessable", None), ("in_sync", 5),
                   ("out_of_sync", 210), ("out_of_sync", 205), ("out_of_sync", 190), ("in_sync", 12)]:
        m._update_alert(v, off, t, t + 5)
        t += 5
    kinds = [e.kind for e in events]
    assert kinds == ["alert", "recovery"]
    assert events[0].data["at_s"] == 20.0 and events[0].data["windows"] == 2
    assert events[1].data["at_s"] == 35.0 and events[1].data["alert_s"] == 15.0
    assert m.summary.alerts == 1 and not m.summary.alerting


def _monitor_with_windows(offsets, window_s=5.0):
    from avsync.report import Window

    m = Monitor("http://h/x.m3u8", MonitorOptions(window_s=window_s))
    for k, off in enumerate(offsets):
        m._judged_windows.append(Window(k * window_s, (k + 1) * window_s, off, 0.9))
        m._offsets.append(off)
    m._finish_summary()
    return m.summary


def test_summary_reports_segments_not_a_median_over_two_offsets():
    rng = np.random.default_rng(0)
    offs = list(20 + rng.normal(0, 5, 10)) + list(220 + rng.normal(0, 5, 10))
    s = _monitor_with_windows(offs)
    assert s.median_offset_ms is None  # a median over two offsets means nothing
    assert len(s.offset_segments) == 2 and len(s.offset_changes) == 1
    assert abs(s.offset_changes[0]["time_s"] - 50.0) <= 5.0
    assert abs(s.offset_segments[0]["offset_ms"] - 20) < 10 and abs(s.offset_segments[1]["offset_ms"] - 220) < 10
    text = s.to_text()
    assert "2 segments" in text and "median" not in text
    # few windows (too few for the timeline segmentation): still two pieces
    s = _monitor_with_windows([18.0, 22.0, 230.0, 226.0])
    assert [round(g["offset_ms"]) for g in s.offset_segments] == [20, 228] and s.median_offset_ms is None
    # one offset: one segment and the median
    s = _monitor_with_windows([18.0, 22.0, 20.0, 25.0, 19.0, 21.0, 20.0])
    assert len(s.offset_segments) == 1 and s.median_offset_ms == 20.0


def test_events_carry_wall_clock_time():
    import datetime as dt

    events = []
    t = dt.datetime(2031, 5, 6, 7, 8, 9).timestamp()
    m = Monitor("http://h/x.m3u8", MonitorOptions(alert_after=1), events.append, wall=lambda: t)
    m._update_alert("out_of_sync", 200.0, 0.0, 5.0)
    ev = events[0]
    assert ev.data["wall_time"].startswith("2031-05-06T07:08:09")
    assert ev.to_text().startswith("07:08:09 ALERT")


def test_missing_playlist_is_one_error_line_and_no_empty_summary(tmp_path, capsys):
    from avsync.cli.main import main

    missing = tmp_path / "gone.m3u8"
    assert main(["monitor", str(missing)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [f"avsync: {missing}: cannot read (No such file or directory)"]
