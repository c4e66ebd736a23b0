"""``avsync bench speed``: looping a clip whose audio starts before 0 (AAC priming, as in every
LRS2 mp4) must not stop with an internal error."""
from __future__ import annotations

import os
import subprocess
import sys

import avsync
from avsync.media.remux import loop_file

from server_helpers import REPO


def test_loop_file_with_audio_priming(media_dir, tmp_path):
    clip = media_dir / "speech" / "lrs2_demo_00016.mp4"
    out = tmp_path / "long.mkv"
    dur = loop_file(clip, out, 30.0)
    assert 30.0 <= dur < 30.0 + 11.4
    rep = avsync.detect(out, avsync.DetectOptions(method="motion"))
    assert abs(rep.media["duration_s"] - dur) < 0.2 and rep.warnings == []
    assert "discontinuity" not in rep.extra


def test_bench_speed_runs(media_dir):
    clip = media_dir / "speech" / "lrs2_demo_00016.mp4"
    r = subprocess.run([sys.executable, "-m", "avsync", "bench", "speed", str(clip), "--seconds", "30", "--runs", "1",
                        "--method", "motion"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert r.returncode == 0, r.stderr
    assert "real time" in r.stdout and "internal error" not in r.stderr
