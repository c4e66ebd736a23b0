"""Hardening of ``avsync serve`` against hostile input (issue 14); all traffic on 127.0.0.1.

A loopback canary server proves that nothing is fetched: it counts every connection."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from avsync.apps.service.app import ServiceConfig, create_app  # noqa: E402
from avsync.media.synth import make_sample  # noqa: E402
from net_helpers import Canary  # noqa: E402

BASE = "http://127.0.0.1"


@pytest.fixture()
def canary():
    with Canary() as c:
        yield c


@pytest.fixture(scope="module")
def small_ts(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("media") / "secret.ts"
    make_sample(p, duration_s=4.0, width=160, height=120)
    return p


def _config(tmp_path, **kw) -> ServiceConfig:
    base = dict(data_dir=str(tmp_path / "data"), workers=1, queue=2, max_upload_bytes=4 * 1024 * 1024)
    base.update(kw)
    return ServiceConfig(**base)


@pytest.fixture()
def client(tmp_path):
    with TestClient(create_app(_config(tmp_path)), base_url=BASE) as c:
        yield c


def _wait(c, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    j = None
    while time.monotonic() < deadline:
        j = c.get(f"/api/jobs/{job_id}").json()
        if j["status"] in ("done", "failed"):
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {j}")


# -- 1. an upload is a file, never a playlist ---------------------------------------------------
def _playlist(canary: Canary, local: Path) -> bytes:
    return (f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n{canary.url('/seg0.ts')}\n"
            f"#EXTINF:4.0,\n{local}\n#EXT-X-ENDLIST\n").encode()


@pytest.mark.parametrize("name", ["evil.m3u8", "evil.m3u", "evil.mp4", "evil.ts"])
def test_uploaded_playlist_is_never_followed(client, canary, small_ts, name):
    body = _playlist(canary, small_ts)
    r = client.post("/api/detect", files={"file": (name, body, "application/vnd.apple.mpegurl")})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "\n" not in err and str(small_ts) not in err and str(canary.port) not in err
    assert "playlist" in err or "not a media file" in err or "cannot open" in err, err
    assert canary.connections == 0, canary.requests


def test_uploaded_playlist_job_never_followed(client, canary, small_ts):
    r = client.post("/api/jobs", files={"file": ("evil.m3u8", _playlist(canary, small_ts), "text/plain")})
    assert r.status_code == 202, r.text
    j = _wait(client, r.json()["id"])
    assert j["status"] == "failed" and str(small_ts) not in j["error"]
    assert canary.connections == 0, canary.requests


# -- 2. the allow-list holds for every fetch ----------------------------------------------------
def test_monitor_allow_list_checks_every_fetch(tmp_path, canary, small_ts):
    seg = small_ts.read_bytes()
    canary.serve_bytes("/ok/a.ts", seg)
    canary.serve_bytes("/secret/s.ts", seg)
    canary.redirect("/ok/r.ts", "/secret/s.ts")
    canary.serve_bytes("/ok/index.m3u8", (
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\na.ts\n#EXTINF:4.0,\n../secret/s.ts\n"
        "#EXTINF:4.0,\n/secret/s.ts\n#EXTINF:4.0,\nr.ts\n#EXT-X-ENDLIST\n").encode())
    cfg = _config(tmp_path, hls_allow=(canary.url("/ok/"),))
    with TestClient(create_app(cfg), base_url=BASE) as c:
        r = c.post("/api/monitor", json={"url": canary.url("/ok/../secret/s.m3u8")})
        assert r.status_code == 403, r.text
        r = c.post("/api/monitor", json={"url": canary.url("/ok/index.m3u8"), "max_windows": 1})
        assert r.status_code == 202, r.text
        _wait(c, r.json()["id"])
    assert "/ok/index.m3u8" in canary.requests
    assert not [p for p in canary.requests if p.startswith("/secret")], canary.requests


# -- 3. deadlines and cancellation (a real server process) --------------------------------------
STALLED_LIVE = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"


def _children(pid: int) -> list[int]:
    import os

    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    st = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(st[1]) == pid and st[0] != "Z":
                out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_status(http, job_id: str, want: set, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    j = None
    while time.monotonic() < deadline:
        j = http.get(f"/api/jobs/{job_id}").json()
        if j["status"] in want:
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: {j}")


def test_delete_stops_a_running_monitor_job_and_sigterm_drains(tmp_path, canary, small_ts):
    import signal

    import httpx
    from server_helpers import Server

    canary.serve_bytes("/live/index.m3u8", STALLED_LIVE)
    srv = Server(tmp_path / "data", "--workers", "1", "--queue", "1", "--hls-allow", canary.url("/live/"),
                 "--drain-s", "1")
    (tmp_path / "data").mkdir()
    with srv, httpx.Client(base_url=srv.url, timeout=90) as http:
        r = http.post("/api/monitor", json={"url": canary.url("/live/index.m3u8")})
        assert r.status_code == 202, r.text
        jid = r.json()["id"]
        _wait_status(http, jid, {"running"}, 60)
        t = time.monotonic()
        assert http.delete(f"/api/jobs/{jid}").status_code == 200
        with open(small_ts, "rb") as fh:  # the one worker slot is free again
            r = http.post("/api/detect", files={"file": ("a.ts", fh, "video/mp2t")})
        assert r.status_code in (200, 422), r.text
        assert time.monotonic() - t < 60
        # a running job, then SIGTERM: the server and its workers are gone within a few seconds
        r = http.post("/api/monitor", json={"url": canary.url("/live/index.m3u8")})
        _wait_status(http, r.json()["id"], {"running"}, 60)
        kids = _children(srv.proc.pid)
        assert kids
        t = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(15)
        took = time.monotonic() - t
        time.sleep(0.5)
        assert took < 8, took
        assert not [k for k in kids if _alive(k)]


def test_every_job_has_a_deadline(tmp_path, canary):
    canary.serve_bytes("/live/index.m3u8", STALLED_LIVE)
    cfg = _config(tmp_path, hls_allow=(canary.url("/live/"),), job_deadline_s=3.0)
    with TestClient(create_app(cfg), base_url=BASE) as c:
        t = time.monotonic()
        r = c.post("/api/monitor", json={"url": canary.url("/live/index.m3u8")})
        j = _wait(c, r.json()["id"], timeout=30)
        assert j["status"] == "failed" and "deadline" in j["error"], j
        assert time.monotonic() - t < 20


# -- 4. slow clients -----------------------------------------------------------------------------
def _slow_upload(port: int, total: int = 200_000):
    """Start a multipart upload that announces ``total`` bytes; returns the socket (send more later)."""
    import socket

    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.ts\"\r\n"
            b"Content-Type: video/mp2t\r\n\r\n")
    s.sendall(b"POST /api/detect HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
              b"Content-Type: multipart/form-data; boundary=XX\r\nContent-Length: %d\r\n\r\n" % (port, total) + head)
    return s


def test_slow_clients_do_not_hold_the_slots(tmp_path, small_ts):
    import httpx
    from server_helpers import Server

    (tmp_path / "data").mkdir()
    srv = Server(tmp_path / "data", "--workers", "1", "--queue", "2", "--upload-grace-s", "2",
                 "--upload-min-rate", "5000", "--uploads-per-client", "8")
    with srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        slow = [_slow_upload(srv.port) for _ in range(3)]  # every slot (1 worker + 2 queued) taken
        t = time.monotonic()
        answered = None
        while time.monotonic() - t < 30:
            for s in slow:
                try:
                    s.send(b"\0")  # one byte a second: far below the minimum rate
                except OSError:
                    pass
            with open(small_ts, "rb") as fh:
                r = http.post("/api/detect", files={"file": ("b.ts", fh, "video/mp2t")})
            if r.status_code != 503:
                answered = r
                break
            time.sleep(1.0)
        took = time.monotonic() - t
        assert answered is not None and answered.status_code in (200, 422), answered and answered.text
        assert took < 15, took
        for s in slow:  # the slow ones were told why
            s.settimeout(10)
            reply = s.recv(4096)
            assert b" 408 " in reply.split(b"\r\n")[0], reply[:200]
            s.close()


def test_uploads_per_client_are_bounded(tmp_path, small_ts):
    import httpx
    from server_helpers import Server

    (tmp_path / "data").mkdir()
    srv = Server(tmp_path / "data", "--workers", "1", "--queue", "4", "--uploads-per-client", "2")
    with srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        slow = [_slow_upload(srv.port) for _ in range(2)]
        time.sleep(0.5)
        with open(small_ts, "rb") as fh:
            r = http.post("/api/detect", files={"file": ("b.ts", fh, "video/mp2t")})
        assert r.status_code == 429 and "too many uploads" in r.json()["error"], r.text
        for s in slow:
            s.close()


# -- 5. bodies, content types, Host, numbers, extra parts, stale partial uploads -----------------
def test_monitor_body_is_bounded_and_json_only(tmp_path):
    cfg = _config(tmp_path, hls_allow=("http://127.0.0.1:9/",))
    with TestClient(create_app(cfg), base_url=BASE) as c:
        url = "http://127.0.0.1:9/x.m3u8"
        big = '{"url": "%s", "pad": "%s"}' % (url, "x" * (1 << 20))
        r = c.post("/api/monitor", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        r = c.post("/api/monitor", content='{"url": "%s"}' % url, headers={"content-type": "text/plain"})
        assert r.status_code == 415, r.text
        r = c.post("/api/monitor", data={"url": url})  # a form post from any web page
        assert r.status_code == 415, r.text
        for bad in ("1e999", "-1e999", "NaN", "1" + "0" * 400, '"1e999"', "true", "[1]", "{}", "0.5"):
            for field in ("max_windows", "window_s"):
                r = c.post("/api/monitor", content='{"url": "%s", "%s": %s}' % (url, field, bad),
                           headers={"content-type": "application/json"})
                assert r.status_code == 422, (field, bad, r.status_code, r.text)


def test_host_header_must_name_this_server(tmp_path):
    with TestClient(create_app(_config(tmp_path)), base_url=BASE) as c:
        assert c.get("/api/health", headers={"host": "evil.example"}).status_code == 421
        assert c.get("/api/jobs/x", headers={"host": "rebind.attacker.test:8000"}).status_code == 421
        for ok in ("127.0.0.1:8000", "localhost", "[::1]:8000", "10.1.2.3"):
            assert c.get("/api/health", headers={"host": ok}).status_code == 200, ok
    with TestClient(create_app(_config(tmp_path, allowed_hosts=("sync.example.org",))), base_url=BASE) as c:
        assert c.get("/api/health", headers={"host": "sync.example.org"}).status_code == 200


def test_extra_multipart_parts_count_against_the_limit(tmp_path, small_ts):
    with TestClient(create_app(_config(tmp_path, max_upload_bytes=200_000)), base_url=BASE) as c:
        def body():  # chunked (no Content-Length): the parts themselves must be counted
            yield (b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.ts"\r\n\r\n'
                   + small_ts.read_bytes()[:1000] + b"\r\n")
            for i in range(5):
                yield (b'--XX\r\nContent-Disposition: form-data; name="junk%d"; filename="j.bin"\r\n\r\n' % i
                       + b"\0" * 100_000 + b"\r\n")
            yield b"--XX--\r\n"

        r = c.post("/api/detect", content=body(), headers={"content-type": "multipart/form-data; boundary=XX"})
        assert r.status_code == 413, r.text


def test_stale_partial_uploads_are_removed_on_start(tmp_path):
    import subprocess
    import sys

    from avsync.apps.service.store import open_job_store

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    up = tmp_path / "data" / "uploads"
    for name, fname in ((f"{dead.pid}-a", ".part"), (f"{dead.pid}-b", "request.mp4"), ("legacy", ".part"),
                        (f"{dead.pid}-job", "queued.mp4")):
        (up / name).mkdir(parents=True)
        (up / name / fname).write_bytes(b"x" * 100)
    store = open_job_store(str(tmp_path / "data" / "jobs.sqlite3"))
    store.create("detect", "queued.mp4", str(up / f"{dead.pid}-job" / "queued.mp4"), {})
    create_app(_config(tmp_path))
    assert sorted(p.name for p in up.iterdir()) == [f"{dead.pid}-job"]


# -- the job store on a database server ---------------------------------------------------------
def test_jobs_run_on_the_postgres_store(tmp_path, postgres_server, small_ts):
    url = postgres_server.new_database()
    with TestClient(create_app(_config(tmp_path, db=url)), base_url=BASE) as c:
        with open(small_ts, "rb") as fh:
            r = c.post("/api/jobs", files={"file": ("a.ts", fh, "video/mp2t")}, data={"method": "motion"})
        assert r.status_code == 202, r.text
        j = _wait(c, r.json()["id"])
        assert j["status"] == "done", j
        rep = c.get(f"/api/jobs/{j['id']}/report").json()
        assert rep["schema"] == "avsync.report/1" and rep["media"]["path"] == "a.ts"
    from avsync.apps.service.store import open_job_store

    assert open_job_store(url).get(j["id"]).status == "done"  # in the server's table, not a local file
    assert not (tmp_path / "data" / "jobs.sqlite3").exists()


# -- access control ------------------------------------------------------------------------------
K1, K2 = "key-one-0123456789abcdef", "key-two-0123456789abcdef"


def test_api_keys_guard_every_endpoint_but_health_and_jobs_belong_to_their_key(tmp_path, small_ts):
    with TestClient(create_app(_config(tmp_path, api_keys=(K1, K2), hls_allow=("http://127.0.0.1:9/",))),
                    base_url=BASE) as c:
        assert c.get("/api/health").status_code == 200
        for method, path in (("post", "/api/detect"), ("post", "/api/analyze"), ("post", "/api/jobs"),
                             ("post", "/api/monitor"), ("get", "/api/jobs/x"), ("get", "/api/jobs/x/report"),
                             ("get", "/api/jobs/x/plot.png"), ("get", "/api/jobs/x/fixed"),
                             ("delete", "/api/jobs/x")):
            r = getattr(c, method)(path)
            assert r.status_code == 401 and "API key" in r.json()["error"], (method, path, r.status_code)
            r = getattr(c, method)(path, headers={"X-API-Key": K1 + "x"})
            assert r.status_code == 401, (method, path)
        one = {"Authorization": f"Bearer {K1}"}
        two = {"X-API-Key": K2}
        with open(small_ts, "rb") as fh:
            r = c.post("/api/jobs", files={"file": ("a.ts", fh, "video/mp2t")}, data={"method": "motion"},
                       headers=one)
        assert r.status_code == 202, r.text
        jid = r.json()["id"]
        assert _wait_with(c, jid, one)["status"] == "done"
        assert c.get(f"/api/jobs/{jid}/report", headers=one).status_code == 200
        for path in (f"/api/jobs/{jid}", f"/api/jobs/{jid}/report", f"/api/jobs/{jid}/plot.png",
                     f"/api/jobs/{jid}/fixed"):
            assert c.get(path, headers=two).status_code == 404, path  # another key's job does not exist
        assert c.delete(f"/api/jobs/{jid}", headers=two).status_code == 404
        assert c.delete(f"/api/jobs/{jid}", headers=one).status_code == 200


def _wait_with(c, job_id: str, headers: dict, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    j = None
    while time.monotonic() < deadline:
        j = c.get(f"/api/jobs/{job_id}", headers=headers).json()
        if j.get("status") in ("done", "failed"):
            return j
        time.sleep(0.1)
    raise AssertionError(j)


def test_api_keys_from_options_file_and_environment(tmp_path):
    from avsync.cli.serve import api_keys
    from avsync.errors import UsageError

    f = tmp_path / "keys.txt"
    f.write_text(f"# team keys\n{K2}  # ci\n\n{K1}\n")
    assert api_keys([K1], str(f), f"{K2}, key-three-0123456789") == [K1, K2, "key-three-0123456789"]
    with pytest.raises(UsageError):
        api_keys(["short"], None, None)


def test_serve_beyond_localhost_needs_a_key(tmp_path, capsys):
    from avsync.cli.main import main

    rc = main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2 and "API key" in err and not (tmp_path / "d").exists()
