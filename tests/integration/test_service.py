"""The REST service on real clips: detect/analyze, jobs, limits, hostile names, restarts."""
from __future__ import annotations

import base64
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from avsync.api import DetectOptions, detect  # noqa: E402
from avsync.apps.service.app import ServiceConfig, create_app  # noqa: E402
from server_helpers import REPO, Server  # noqa: E402


@pytest.fixture()
def client(tmp_path):
    cfg = ServiceConfig(data_dir=str(tmp_path / "data"), workers=1, queue=4, max_upload_bytes=8 * 1024 * 1024)
    with TestClient(create_app(cfg), base_url="http://127.0.0.1") as c:
        yield c


def _upload(c, path: Path, name: str | None = None, url="/api/detect", **fields):
    with open(path, "rb") as fh:
        return c.post(url, files={"file": (name or path.name, fh, "application/octet-stream")}, data=fields)


def _wait(c, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = c.get(f"/api/jobs/{job_id}").json()
        if j["status"] in ("done", "failed"):
            return j
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {j}")


def test_detect_matches_the_api(client, speech_clip):
    r = _upload(client, speech_clip)
    assert r.status_code == 200, r.text
    rep = r.json()
    want = detect(speech_clip, DetectOptions()).to_dict()
    assert rep["schema"] == "avsync.report/1"
    for k in ("offset_ms", "confidence", "verdict", "method", "windows"):
        assert rep[k] == want[k], k
    assert rep["media"]["path"] == speech_clip.name  # the upload's name, never a server path


def test_analyze_has_plot_and_segment_labels(client, speech_clip):
    pytest.importorskip("torch")  # the segment classifier (test extra)
    r = _upload(client, speech_clip, url="/api/analyze", tolerance="bt1359-accept")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["tolerance"]["name"] == "bt1359-accept"
    assert base64.b64decode(d["plot_png_base64"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(d["windows"]) > 3
    # the labels of avsync.classify: one per 1-s segment of the ~12.7-s clip, as ``avsync classify`` gives
    segs = d["labels"]
    assert isinstance(segs, list) and len(segs) >= 10, segs
    for s in segs:
        assert set(s) == {"start_s", "end_s", "label", "p_sync", "fault"}, s
        assert s["label"] in ("sync", "desync") and 0.0 <= s["p_sync"] <= 1.0
        assert 0.0 <= s["start_s"] < s["end_s"] <= s["start_s"] + 1.001


def test_bad_media_is_422_one_line(client, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"this is not a video\n" * 50)
    r = _upload(client, bad)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err.startswith("notes.mp4: ") and "\n" not in err and str(tmp_path) not in err
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    r = _upload(client, empty)
    assert r.status_code == 422 and "empty" in r.json()["error"]


def test_bad_requests_are_clear_4xx(client, speech_clip):
    assert client.post("/api/detect", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    r = client.post("/api/detect", data={"method": "auto"}, files={"other": ("a.txt", b"abc")})
    assert r.status_code == 422 and "file" in r.json()["error"]
    r = _upload(client, speech_clip, method="nonsense")
    assert r.status_code == 422 and "unknown method" in r.json()["error"]
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.delete("/api/jobs/nope").status_code == 404


def test_upload_over_the_limit_is_413(tmp_path):
    cfg = ServiceConfig(data_dir=str(tmp_path / "data"), workers=1, max_upload_bytes=100_000)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(300_000))
    with TestClient(create_app(cfg), base_url="http://127.0.0.1") as c:
        r = _upload(c, big)
        assert r.status_code == 413 and "too large" in r.json()["error"]
        # without Content-Length (chunked): refused while streaming, nothing left behind
        def gen():
            yield b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\r\n"
            for _ in range(30):
                yield os.urandom(10_000)
            yield b"\r\n--B--\r\n"
        r = c.post("/api/detect", content=gen(), headers={"content-type": "multipart/form-data; boundary=B"})
        assert r.status_code == 413
    left = [p for p in (tmp_path / "data" / "uploads").rglob("*") if p.is_file()]
    assert left == []


def test_hostile_name_stays_inside(client, speech_clip, tmp_path):
    data = tmp_path / "data"
    r = _upload(client, speech_clip, name="../../x.mp4", url="/api/jobs")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["name"] == "x.mp4"
    # while queued/running the upload lies under data/uploads; never outside
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path.parent / "x.mp4").exists()
    for p in data.rglob("x.mp4"):
        assert str(p.resolve()).startswith(str((data / "uploads").resolve()))
    j = _wait(client, job["id"])
    assert j["status"] == "done"
    assert client.get(f"/api/jobs/{job['id']}/report").json()["media"]["path"] == "x.mp4"
    for name in ("..\\..\\evil.avi", "/etc/passwd", "\x00\n.mp4", "....//...//a b.mp4"):
        r = _upload(client, speech_clip, name=name)
        assert r.status_code == 200, (name, r.text)
        shown = r.json()["media"]["path"]
        assert "/" not in shown and "\\" not in shown and not shown.startswith(".")
    assert [p for p in (data / "uploads").rglob("*") if p.is_file()] == []  # temp files cleaned


def test_job_lifecycle(client, speech_clip):
    r = _upload(client, speech_clip, url="/api/jobs")
    assert r.status_code == 202 and r.headers["location"].startswith("/api/jobs/")
    jid = r.json()["id"]
    early = client.get(f"/api/jobs/{jid}/report")
    assert early.status_code in (200, 409)
    j = _wait(client, jid)
    assert j["status"] == "done" and j["progress"] == 1.0 and j["attempts"] == 1
    rep = client.get(f"/api/jobs/{jid}/report").json()
    assert rep["verdict"] in ("in_sync", "out_of_sync", "not_assessable")
    png = client.get(f"/api/jobs/{jid}/plot.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert client.delete(f"/api/jobs/{jid}").status_code == 200
    assert client.get(f"/api/jobs/{jid}").status_code == 404
    # a failed job: report says why (422), plot is 404
    r = client.post("/api/jobs", files={"file": ("junk.mov", b"junk" * 100)})
    f = _wait(client, r.json()["id"])
    assert f["status"] == "failed" and f["error"].startswith("junk.mov: ")
    assert client.get(f"/api/jobs/{f['id']}/report").status_code == 422


def test_full_pool_is_503_with_retry_after(tmp_path, speech_clip):
    cfg = ServiceConfig(data_dir=str(tmp_path / "data"), workers=1, queue=0)
    with TestClient(create_app(cfg), base_url="http://127.0.0.1") as c:
        first = _upload(c, speech_clip, url="/api/jobs")
        assert first.status_code == 202
        second = _upload(c, speech_clip, url="/api/jobs")
        assert second.status_code == 503 and int(second.headers["retry-after"]) > 0
        assert "busy" in second.json()["error"]
        assert _wait(c, first.json()["id"])["status"] == "done"
        # the slot is freed when the worker hands its result back (just after 'done' is stored)
        for _ in range(50):
            third = _upload(c, speech_clip, url="/api/jobs")
            if third.status_code != 503:
                break
            time.sleep(0.2)
        assert third.status_code == 202
        _wait(c, third.json()["id"])


def test_monitor_endpoint_needs_the_allow_list(client):
    r = client.post("/api/monitor", json={"url": "http://127.0.0.1:1/x.m3u8"})
    assert r.status_code == 403 and "disabled" in r.json()["error"]


def _looped(src: Path, dst: Path, seconds: float) -> Path:
    from avsync.bench.speed import loop_file

    loop_file(str(src), str(dst), seconds)
    return dst


def _children(pid: int) -> list[int]:
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


def test_kill_9_during_a_job_then_restart_resumes_it(tmp_path, speech_clip):
    long_clip = _looped(speech_clip, tmp_path / "long.mkv", 90)
    data = tmp_path / "data"
    data.mkdir()
    srv = Server(data, "--workers", "1").start()
    try:
        with open(long_clip, "rb") as fh:
            r = httpx.post(srv.url + "/api/jobs", files={"file": ("long.mkv", fh)}, timeout=60)
        assert r.status_code == 202, r.text
        jid = r.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            j = httpx.get(f"{srv.url}/api/jobs/{jid}").json()
            if j["status"] == "running" and j["progress"] > 0.05:
                break
            time.sleep(0.2)
        assert j["status"] == "running", j
        kids = _children(srv.proc.pid)
        assert kids
        os.kill(srv.proc.pid, signal.SIGKILL)  # the server only; its worker notices and stops
        srv.proc.wait(10)
        end = time.monotonic() + 5
        while time.monotonic() < end and any(_alive(k) for k in kids):
            time.sleep(0.1)
        assert not [k for k in kids if _alive(k)], "worker processes outlived the server"
    finally:
        srv.stop()
    (data / "uploads" / "999999999-stale").mkdir(parents=True)  # a partial upload of a killed server
    (data / "uploads" / "999999999-stale" / ".part").write_bytes(b"x" * 1000)
    time.sleep(1.5)
    srv2 = Server(data, "--workers", "1").start()
    assert not (data / "uploads" / "999999999-stale").exists()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            j = httpx.get(f"{srv2.url}/api/jobs/{jid}").json()
            if j["status"] in ("done", "failed"):
                break
            time.sleep(0.5)
        assert j["status"] == "done", j  # resumed, not lost
        assert j["attempts"] == 2
        rep = httpx.get(f"{srv2.url}/api/jobs/{jid}/report").json()
        assert rep["media"]["path"] == "long.mkv" and rep["media"]["duration_s"] > 80
    finally:
        srv2.stop()


@pytest.mark.slow
def test_20_concurrent_uploads_match_the_cli(tmp_path, media_dir):
    clips = sorted((media_dir / "speech").glob("*.mp4"))[:10]
    clips = (clips * 2)[:20]
    assert len(clips) == 20
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    want = {}
    for c in set(clips):
        out = subprocess.run([sys.executable, "-m", "avsync", "detect", str(c), "--json"], capture_output=True,
                             text=True, env=env, timeout=300)
        import json as _json

        want[c.name] = _json.loads(out.stdout)
    data = tmp_path / "data"
    data.mkdir()
    # twenty clients, all on 127.0.0.1 here: one address, so its per-client upload limit is raised
    with Server(data, "--workers", "2", "--queue", "20", "--uploads-per-client", "20") as srv:
        def one(c):
            with open(c, "rb") as fh:
                return c.name, httpx.post(srv.url + "/api/detect", files={"file": (c.name, fh)}, timeout=600)

        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(20) as ex:
            results = list(ex.map(one, clips))
        wall = time.perf_counter() - t
    print(f"20 concurrent uploads: {wall:.1f} s wall")
    for name, r in results:
        assert r.status_code == 200, (name, r.text)
        got = r.json()
        for k in ("offset_ms", "confidence", "verdict", "method"):
            assert got[k] == want[name][k], (name, k, got[k], want[name][k])


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(tmp_path):
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.skip("schemathesis is not installed")
    data = tmp_path / "data"
    data.mkdir()
    with Server(data, "--workers", "1", "--queue", "64", "--max-upload-mb", "1") as srv:
        r = subprocess.run([exe, "run", srv.url + "/openapi.json", "--checks", "not_a_server_error",
                            "--max-examples", "30", "--no-color"], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_monitor_job_for_an_allowed_hls_url(tmp_path, speech_clip):
    from hls_helpers import HlsServer, make_shifted_hls

    pl = make_shifted_hls(speech_clip, tmp_path / "hls", loops=1, shift_at_s=6.0)
    with HlsServer(pl.parent) as hls:
        prefix = hls.url("")
        cfg = ServiceConfig(data_dir=str(tmp_path / "data"), workers=1, hls_allow=(prefix,))
        with TestClient(create_app(cfg), base_url="http://127.0.0.1") as c:
            assert c.post("/api/monitor", json={"url": "http://example.com/x.m3u8"}).status_code == 403
            assert c.post("/api/monitor", json={"url": prefix + "index.m3u8", "max_windows": 0}).status_code == 422
            r = c.post("/api/monitor", json={"url": prefix + "index.m3u8", "max_windows": 2, "window_s": 5})
            assert r.status_code == 202, r.text
            j = _wait(c, r.json()["id"])
            assert j["status"] == "done", j
            rep = c.get(f"/api/jobs/{j['id']}/report").json()
    assert rep["schema"] == "avsync.monitor/1" and rep["summary"]["windows"] == 2
    assert [e["type"] for e in rep["events"]].count("window") == 2


def test_pool_survives_a_crashed_worker():
    from avsync.apps.service.pool import WorkerDied, WorkerPool

    pool = WorkerPool(1, 2)
    try:
        crashed = []
        pool.reserve()
        f = pool.submit(os._exit, 3, on_crash=crashed.append)
        with pytest.raises(WorkerDied):
            f.result(timeout=60)
        deadline = time.monotonic() + 10
        while not crashed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert crashed and isinstance(crashed[0], WorkerDied)
        assert pool.inflight == 0
        pool.reserve()
        assert pool.submit(abs, -2).result(timeout=60) == 2  # a fresh worker took over
    finally:
        pool.shutdown()
