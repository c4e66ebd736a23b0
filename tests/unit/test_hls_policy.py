"""Issue 14: every location an HLS session fetches is checked after normalisation (segments,
variants, redirects, '..'), and non-global addresses are reached only when named explicitly.
A loopback canary server counts every connection."""
from __future__ import annotations

import socket
import time

import pytest

from avsync.errors import CannotOpen
from avsync.media.hls import FollowOptions, UrlPolicy, fetch, follow, load_playlist, normalise_url
from net_helpers import Canary

TS = b"\x47" + b"\0" * 187  # one (empty) MPEG-TS packet: enough to be "fetched"


@pytest.fixture()
def canary():
    with Canary() as c:
        yield c


@pytest.fixture()
def other():
    with Canary() as c:
        yield c


def _media(*uris: str) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2"]
    for u in uris:
        lines += ["#EXTINF:2.0,", u]
    return ("\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n").encode()


@pytest.mark.parametrize("url,want", [
    ("http://H:80/a/./b/../c.ts", "http://h/a/c.ts"),
    ("https://h:443/%2e%2e/%2E%2e/x?q=1#frag", "https://h/x?q=1"),
    ("http://h:8080", "http://h:8080/"),
])
def test_normalise(url, want):
    assert normalise_url(url) == want


@pytest.mark.parametrize("url", ["http://u:p@h/x", "http://h/a%2f..%2fb", "http://h/a\\..\\b", "http://h:99999/",
                                 "ftp://h/x"])
def test_ambiguous_urls_refused(url):
    with pytest.raises(CannotOpen):
        normalise_url(url)


def test_prefix_matching_is_by_origin_then_path():
    pol = UrlPolicy.allow_list(["http://127.0.0.1:8000/live/"])
    assert pol.allows("http://127.0.0.1:8000/live/a/b.ts")
    for bad in ("http://127.0.0.1:80001/live/x", "http://127.0.0.1:800/live/x", "http://127.0.0.1:8000/x",
                "http://127.0.0.1:8000/live/../secret.ts", "https://127.0.0.1:8000/live/x",
                "http://127.0.0.1:8000.evil/live/x", "/etc/passwd", "http://127.0.0.1:8000@evil/live/x"):
        assert not pol.allows(bad), bad


def test_segments_variants_and_dot_segments_outside_the_prefix_are_never_fetched(canary, other):
    canary.serve_bytes("/ok/index.m3u8", _media(
        "/secret/a.ts", "../secret/b.ts", "%2e%2e/secret/c.ts", other.url("/x.ts"), "good.ts"))
    canary.serve_bytes("/ok/good.ts", TS)
    pol = UrlPolicy.allow_list([canary.url("/ok/")])
    got = list(follow(canary.url("/ok/index.m3u8"), FollowOptions(policy=pol, retries=2), sleep=lambda s: None))
    assert [g.data is not None for g in got] == [False, False, False, False, True]
    assert all("refused" in g.error for g in got[:4]), [g.error for g in got]
    assert canary.requests == ["/ok/index.m3u8", "/ok/good.ts"]
    assert other.connections == 0
    # a master playlist whose variant is outside
    canary.serve_bytes("/ok/master.m3u8", f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{other.url('/v.m3u8')}\n"
                       .encode())
    with pytest.raises(CannotOpen, match="refused"):
        load_playlist(canary.url("/ok/master.m3u8"), policy=pol)
    assert other.connections == 0


def test_redirects_are_followed_only_inside_the_allow_list(canary, other):
    canary.serve_bytes("/ok/in.ts", TS)
    canary.redirect("/ok/stay.ts", "/ok/in.ts")
    canary.redirect("/ok/out.ts", "/secret/s.ts")
    canary.redirect("/ok/away.ts", other.url("/x.ts"))
    canary.redirect("/ok/index.m3u8", other.url("/index.m3u8"))
    pol = UrlPolicy.allow_list([canary.url("/ok/")])
    assert fetch(canary.url("/ok/stay.ts"), policy=pol) == TS
    for path in ("/ok/out.ts", "/ok/away.ts"):
        with pytest.raises(CannotOpen, match="refused"):
            fetch(canary.url(path), policy=pol)
    with pytest.raises(CannotOpen, match="refused"):
        load_playlist(canary.url("/ok/index.m3u8"), policy=pol)
    assert "/secret/s.ts" not in canary.requests and other.connections == 0


def test_names_resolving_to_loopback_need_explicit_permission(canary, monkeypatch):
    real = socket.getaddrinfo

    def fake(host, *a, **kw):  # "media.example" is a name that resolves to loopback (DNS rebinding)
        return real("127.0.0.1" if host == "media.example" else host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    canary.serve_bytes("/ok/a.ts", TS)
    url = f"http://media.example:{canary.port}/ok/a.ts"
    with pytest.raises(CannotOpen, match="loopback"):
        fetch(url, policy=UrlPolicy.allow_list([f"http://media.example:{canary.port}/ok/"]))
    assert canary.connections == 0
    assert fetch(url, policy=UrlPolicy.allow_list([f"http://media.example:{canary.port}/ok/"],
                                                  allow_private=True)) == TS


def test_command_line_default_never_reaches_link_local_or_other_loopback_hosts(canary):
    # a remote playlist (here on 127.0.0.1, named by the user) may not send us to the cloud
    # metadata address or to another loopback name
    canary.serve_bytes("/index.m3u8", _media("http://169.254.169.254/latest/meta-data", "http://[::1]:9/x.ts",
                                             "a.ts"))
    canary.serve_bytes("/a.ts", TS)
    got = list(follow(canary.url("/index.m3u8"), sleep=lambda s: None))
    assert [g.data is not None for g in got] == [False, False, True]
    assert all("refused" in g.error for g in got[:2])


def test_policy_refuses_local_paths_for_url_playlists_and_the_service(tmp_path):
    f = tmp_path / "x.ts"
    f.write_bytes(TS)
    assert fetch(str(f)) == TS  # the user's own local path
    for pol in (UrlPolicy.allow_list(["http://127.0.0.1:1/"]), UrlPolicy.for_top("http://127.0.0.1:1/x.m3u8")):
        with pytest.raises(CannotOpen, match="refused"):
            fetch(str(f), policy=pol)


def test_segment_deadline_covers_the_whole_transfer(canary):
    """--timeout-s is a deadline per segment (every try), not per read: a segment that trickles one
    byte every 0.3 s (each read well inside the timeout) is skipped once the deadline passes."""
    canary.trickle("/slow.ts", 188 * 100, 0.3)
    canary.serve_bytes("/fast.ts", TS)
    canary.serve_bytes("/index.m3u8", _media("slow.ts", "fast.ts"))
    t = time.monotonic()
    got = list(follow(canary.url("/index.m3u8"), FollowOptions(timeout_s=1.5, retries=2)))
    took = time.monotonic() - t
    assert [g.data is not None for g in got] == [False, True]
    assert "deadline" in got[0].error
    assert took < 5, took
    assert canary.requests.count("/slow.ts") == 1  # a deadline is not retried


def test_too_large_segment_is_fetched_once(canary):
    canary.serve_bytes("/big.ts", TS * 64)
    canary.serve_bytes("/index.m3u8", _media("big.ts"))
    got = list(follow(canary.url("/index.m3u8"), FollowOptions(retries=2, max_segment_bytes=1000)))
    assert got[0].data is None and "larger than" in got[0].error
    assert canary.requests.count("/big.ts") == 1


def test_stalled_live_playlist_ends(canary):
    canary.serve_bytes("/live.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n")
    t = time.monotonic()
    with pytest.raises(CannotOpen, match="no new segment"):
        list(follow(canary.url("/live.m3u8"), FollowOptions(stall_s=1.0, poll_s=0.2)))
    assert time.monotonic() - t < 5
