"""Issue 14: kill -9 of a batch leaves no worker process behind (they die with their parent)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from avsync.media.synth import make_sample

REPO = Path(__file__).resolve().parents[2]


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


def test_kill_9_of_a_batch_leaves_no_workers(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    make_sample(src / "a.mp4", duration_s=40.0, width=320, height=240)
    for i in range(1, 4):  # different content: each is measured
        (src / f"c{i}.mp4").write_bytes((src / "a.mp4").read_bytes() + bytes([i]) * 16)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    p = subprocess.Popen([sys.executable, "-m", "avsync", "batch", str(src), "--out", str(tmp_path / "r.jsonl"),
                          "--workers", "2", "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        kids: list[int] = []
        while time.monotonic() < deadline and len(kids) < 2:
            kids = [k for k in _children(p.pid)]
            time.sleep(0.2)
        assert len(kids) >= 2, "no worker processes started"
        time.sleep(3.0)  # the workers are measuring now
        assert p.poll() is None, "the batch ended before it could be killed"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        end = time.monotonic() + 5
        while time.monotonic() < end and any(_alive(k) for k in kids):
            time.sleep(0.1)
        left = [k for k in kids if _alive(k)]
        for k in left:
            os.kill(k, signal.SIGKILL)
        assert not left, f"worker processes outlived the batch: {left}"
    finally:
        if p.poll() is None:
            p.kill()
