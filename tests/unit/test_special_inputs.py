"""Issue 14: inputs that used to hang or be mislabelled: named pipes (batch hashing blocked
forever; detect said "empty file"), a steady tone (said "silent audio"), HLS timestamps that
restart without a discontinuity tag (silently dropped by the monitor)."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

from avsync.errors import CannotOpen
from avsync.media import open_media
from avsync.media.synth import make_clip, make_sample


def test_named_pipe_is_not_an_empty_file(tmp_path):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    with pytest.raises(CannotOpen, match="named pipe"):
        open_media(fifo)


def test_named_pipe_in_a_batch_folder_is_an_error_row(tmp_path):
    from avsync.apps.batch import BatchOptions, run_batch

    d = tmp_path / "in"
    d.mkdir()
    make_sample(d / "a.mp4", duration_s=4.0, width=160, height=120)
    os.mkfifo(d / "pipe.mp4")
    out = tmp_path / "rows.jsonl"
    done = []
    th = threading.Thread(target=lambda: done.append(run_batch([str(d)], str(out), BatchOptions(workers=1))),
                          daemon=True)
    th.start()
    th.join(120)
    assert done, "batch hung on a named pipe"
    import json

    rows = {os.path.basename(r["input"]): r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["a.mp4"]["status"] == "ok"
    assert rows["pipe.mp4"]["status"] == "error" and "named pipe" in rows["pipe.mp4"]["error"]


def test_steady_tone_is_not_silent_audio(tmp_path):
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg CLI not found (makes the steady-tone clip)")
    from avsync.api import detect
    from avsync.options import DetectOptions

    tone = tmp_path / "tone.mp4"
    subprocess.run([exe, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=48000", "-t", "6", "-c:v", "libx264", "-c:a", "aac",
                    "-shortest", str(tone)], check=True, timeout=120)
    rep = detect(tone, DetectOptions(method="motion"))
    assert rep.offset_ms is None and rep.reason != "silent audio" and "steady" in rep.reason, rep.reason
    quiet = tmp_path / "quiet.mp4"
    make_clip(quiet, duration_s=6.0, width=160, height=120, audio="silence")
    assert detect(quiet, DetectOptions(method="motion")).reason == "silent audio"


def test_monitor_keeps_segments_whose_timestamps_restart(tmp_path):
    """Two segments that both start at 0 s and no #EXT-X-DISCONTINUITY: the second is a new
    timeline (a gap event), not items silently dropped as late."""
    from avsync.apps.monitor import Monitor, MonitorOptions

    for name, seed in (("s0.ts", 1), ("s1.ts", 2)):
        make_sample(tmp_path / name, duration_s=6.0, width=160, height=120, seed=seed)
    pl = tmp_path / "index.m3u8"
    pl.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\ns0.ts\n#EXTINF:6.0,\ns1.ts\n#EXT-X-ENDLIST\n")
    events = []
    summary = Monitor(str(pl), MonitorOptions(method="motion", window_s=3.0, min_window_s=1.5),
                      events.append).run()
    gaps = [e for e in events if e.kind == "gap"]
    windows = [e for e in events if e.kind == "window"]
    assert any("timestamps jump" in e.data["reason"] for e in gaps), [e.data for e in gaps]
    assert len(windows) >= 3, [e.data for e in windows]  # both segments judged
    assert summary.stopped == "end"


def test_identical_content_under_two_names_gets_two_rows(tmp_path):
    """Issue 14: rows were keyed by content, so a copy under another name got no row of its own."""
    import json
    import shutil as sh

    from avsync.apps.batch import BatchOptions, run_batch

    d = tmp_path / "in"
    d.mkdir()
    make_sample(d / "a.mp4", duration_s=4.0, width=160, height=120)
    sh.copy(d / "a.mp4", d / "b.mp4")
    out = tmp_path / "rows.jsonl"
    res = run_batch([str(d)], str(out), BatchOptions(workers=1))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(os.path.basename(r["input"]) for r in rows) == ["a.mp4", "b.mp4"]
    assert rows[0]["key"] == rows[1]["key"] and rows[0]["offset_ms"] == rows[1]["offset_ms"]
    assert {r["report"]["media"]["path"] for r in rows} == {str(d / "a.mp4"), str(d / "b.mp4")}
    assert res.total == 2 and res.done == 2
    assert rows[0]["elapsed_s"] == rows[1]["elapsed_s"]  # measured once, reused
    # a third copy later: its own row, nothing measured again; a rerun skips all three
    sh.copy(d / "a.mp4", d / "c.mp4")
    res = run_batch([str(d)], str(out), BatchOptions(workers=1))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(os.path.basename(r["input"]) for r in rows) == ["a.mp4", "b.mp4", "c.mp4"]
    assert res.done == 0  # nothing measured again
    assert (res.skipped, res.reused) == (2, 1)
    res = run_batch([str(d)], str(out), BatchOptions(workers=1))
    assert (res.skipped, res.reused, res.done) == (3, 0, 0)
    assert len(out.read_text().splitlines()) == 3
