"""HLS playlist parsing, URL rules and the monitor's alert logic (no network, no media)."""
from __future__ import annotations

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
