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
