"""avsync.apps.batch input expansion, keys and the resumable output (no media decoding)."""
from __future__ import annotations

import json
import os
import sys
import types

from avsync.api import DetectOptions
from avsync.apps.batch import _Output, expand_inputs, input_key


def test_expand_files_folders_globs_and_manifest(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for n in ("d/a.mp4", "d/sub/b.MKV", "d/notes.txt", "c.avi"):
        (tmp_path / n).write_bytes(b"x")
    man = tmp_path / "list.csv"
    man.write_text("path,label\nc.avi,1\nmissing.mp4,0\n")
    got = expand_inputs([str(tmp_path / "d"), str(tmp_path / "*.avi"), str(man), str(tmp_path / "d" / "a.mp4")])
    assert got == [str(tmp_path / "d" / "a.mp4"), str(tmp_path / "d" / "sub" / "b.MKV"), str(tmp_path / "c.avi"),
                   str(tmp_path / "missing.mp4")]


def test_key_follows_content_and_options(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    o = DetectOptions()
    assert input_key(str(a), o) == input_key(str(b), o)  # renamed copy: same key
    assert input_key(str(a), o) != input_key(str(a), DetectOptions(tolerance="atsc"))
    b.write_bytes(b"changed")
    assert input_key(str(a), o) != input_key(str(b), o)
    assert input_key(str(tmp_path / "none.mp4"), o) != input_key(str(tmp_path / "none2.mp4"), o)


def test_output_drops_a_torn_tail(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps({"key": "k1", "status": "ok"}) + "\n" + '{"key": "k2", "sta')
    o = _Output(str(out), as_csv=False)
    assert set(o.rows) == {"k1"}
    o.write({"key": "k3", "status": "error", "error": "x"})
    o.close()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["key"] for r in lines] == ["k1", "k3"]


def test_csv_output_round_trip(tmp_path):
    out = tmp_path / "r.csv"
    o = _Output(str(out), as_csv=True)
    o.write({"key": "k1", "input": "a,b.mp4", "status": "ok", "offset_ms": 12.5, "verdict": "in_sync"})
    o.close()
    o2 = _Output(str(out), as_csv=True)
    assert o2.rows["k1"]["input"] == "a,b.mp4" and o2.rows["k1"]["offset_ms"] == "12.5"
    o2.close()


def test_thread_budget_divides_the_cpus():
    from avsync.apps.batch import thread_budget, usable_cpus

    assert thread_budget(1, 2) == 2 and thread_budget(2, 2) == 1 and thread_budget(3, 2) == 1
    assert thread_budget(4, 16) == 4 and thread_budget(0, 8) == 8
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_limit_threads_caps_opencv_and_the_blas_environment(monkeypatch):
    import cv2

    import avsync.apps.batch as batch

    before = cv2.getNumThreads()
    for name in batch.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(batch, "_applied_budget", None)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in a fresh worker
    try:
        batch.limit_threads(1)
        assert cv2.getNumThreads() == 1
        assert all(os.environ[n] == "1" for n in batch.THREAD_ENV)
        calls = []  # torch loaded later (a learned method's first file): capped on the next call
        monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(set_num_threads=calls.append))
        batch.limit_threads(1)
        batch.limit_threads(1)
        assert calls == [1]
    finally:
        cv2.setNumThreads(before)


def test_largest_inputs_go_first_and_the_budget_reaches_detect(tmp_path, monkeypatch):
    import avsync.apps.batch as batch

    sizes = {"small.mp4": 10, "big.mp4": 3000, "mid.mp4": 500}
    for name, n in sizes.items():
        (tmp_path / name).write_bytes(b"x" * n)
    seen = []

    def fake(path, key, options, threads=None):
        seen.append((os.path.basename(path), options.get("threads")))
        return {"key": key, "input": path, "status": "ok"}

    monkeypatch.setattr(batch, "process_one", fake)
    res = batch.run_batch([str(tmp_path)], str(tmp_path / "out.jsonl"), batch.BatchOptions(workers=1, threads=1))
    assert res.done == 3
    assert seen == [("big.mp4", 1), ("mid.mp4", 1), ("small.mp4", 1)]  # an explicit budget caps the decoder
    seen.clear()
    batch.run_batch([str(tmp_path)], str(tmp_path / "out2.jsonl"), batch.BatchOptions(workers=1))
    assert seen == [("big.mp4", None), ("mid.mp4", None), ("small.mp4", None)]  # FFmpeg's own choice
