"""avsync.batch input expansion, keys and the resumable output (no media decoding)."""
from __future__ import annotations

import json

from avsync.api import DetectOptions
from avsync.batch import _Output, expand_inputs, input_key


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
