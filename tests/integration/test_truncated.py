"""Truncated and partial files: a file cut to 30 % of its bytes is never reported in sync without a
warning; the warning reaches the text report, ``batch`` rows (JSONL and CSV) and the REST answer."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

import avsync
from avsync.apps.batch import BatchOptions, run_batch
from avsync.cli.main import main


def _cut(src, dst, share: float = 0.3):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


@pytest.fixture(scope="module")
def truncated(media_dir, tmp_path_factory):
    """{name: (whole file, the file cut to 30 % of its bytes)} for AVI, MP4 (moov first) and Matroska."""
    d = tmp_path_factory.mktemp("trunc")
    whole = {"avi": media_dir / "speech" / "syncnet_example.avi"}
    lrs2 = media_dir / "speech" / "lrs2_demo_00016.mp4"
    exe = shutil.which("ffmpeg")
    if exe is not None and lrs2.is_file():
        for ext, extra in (("mp4", ["-movflags", "+faststart"]), ("mkv", [])):
            out = d / f"whole.{ext}"
            subprocess.run([exe, "-nostdin", "-v", "error", "-y", "-i", str(lrs2), "-c", "copy", *extra, str(out)],
                           check=True)
            whole[ext] = out
    if not whole["avi"].is_file():
        pytest.skip("syncnet_example.avi not found")
    return {k: (p, _cut(p, d / f"cut30.{k}")) for k, p in whole.items()}


def test_a_file_cut_to_30_percent_is_never_in_sync_without_a_warning(truncated):
    assert len(truncated) >= 1
    for name, (whole, cut) in truncated.items():
        full = avsync.detect(whole)
        assert full.warnings == [], (name, full.warnings)  # a whole file has none
        rep = avsync.detect(cut)
        assert rep.verdict != "in_sync" or rep.warnings, name
        # the container declares the full length: the report says the file is truncated
        assert any("truncated" in w and "declares" in w for w in rep.warnings), (name, rep.warnings)
        assert rep.to_dict()["warnings"] == rep.warnings


def test_too_little_left_is_not_assessable(truncated, tmp_path):
    whole = truncated["avi"][0]
    cut = _cut(whole, tmp_path / "cut12.avi", 0.12)  # about 1.5 s of 12.7 s
    rep = avsync.detect(cut)
    assert rep.verdict == "not_assessable" and "too little media decoded" in rep.reason, rep.reason
    assert rep.warnings


def test_text_report_shows_the_warning(truncated, capsys):
    cut = truncated["avi"][1]
    assert main(["detect", str(cut), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "WARNING   truncated or damaged file" in out


def test_batch_rows_carry_the_warning(truncated, tmp_path):
    cut = truncated["avi"][1]
    jl = tmp_path / "rows.jsonl"
    run_batch([str(cut)], str(jl), BatchOptions(workers=1))
    row = json.loads(jl.read_text().splitlines()[0])
    assert any("truncated" in w for w in row["warnings"]) and row["report"]["warnings"] == row["warnings"]
    cv = tmp_path / "rows.csv"
    run_batch([str(cut)], str(cv), BatchOptions(workers=1, csv=True))
    with open(cv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert "truncated" in rows[0]["warnings"]


def test_rest_answer_carries_the_warning(truncated, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from avsync.apps.service.app import ServiceConfig, create_app

    cut = truncated["avi"][1]
    cfg = ServiceConfig(data_dir=str(tmp_path / "data"), workers=1, queue=2, max_upload_bytes=8 * 1024 * 1024)
    with TestClient(create_app(cfg), base_url="http://127.0.0.1") as c, open(cut, "rb") as fh:
        r = c.post("/api/detect", files={"file": ("cut.avi", fh, "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert any("truncated" in w for w in r.json()["warnings"])
