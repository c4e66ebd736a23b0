"""Speed and memory benchmark (benchmarks.md section 4).

``avsync bench speed CLIP [--seconds 60] [--runs 5]``: loops CLIP (packets copied, no
re-encode) to at least ``--seconds``, then times ``ffmpeg -v error -i LONG -f null -``
(the decode floor) and ``avsync detect LONG --json`` alternately, each in its own
process, and prints the medians, their ratio, the real-time factor and the peak RSS
of the detect process.  ``--seconds 3600`` makes the one-hour memory check.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from ..media.remux import loop_file


def _timed(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MiB, return code) of a child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, int(usage.ru_maxrss / 1024), proc.returncode


def main(args) -> int:
    import platform

    tmp = tempfile.mkdtemp(prefix="avsync-speed-")
    try:
        long = os.path.join(tmp, "long.mkv")
        dur = loop_file(args.clip, long, args.seconds)
        ffmpeg = shutil.which("ffmpeg")
        detect = [sys.executable, "-m", "avsync", "detect", long, "--json", "--method", args.method]
        floors, walls, rss = [], [], []
        for _ in range(args.runs):
            if ffmpeg:
                floors.append(_timed([ffmpeg, "-v", "error", "-i", long, "-f", "null", "-"])[0])
            w, m, rc = _timed(detect)
            if rc not in (0, 1):
                print(f"avsync detect failed (exit {rc})", file=sys.stderr)
                return 3
            walls.append(w)
            rss.append(m)
        print(f"avsync bench speed, {time.strftime('%Y-%m-%d')}, {platform.machine()} {os.cpu_count()} cores")
        print(f"clip {args.clip} looped to {dur:.1f} s ({os.path.getsize(long) / 2**20:.1f} MiB), "
              f"method {args.method}, {args.runs} runs")
        wd = statistics.median(walls)
        print(f"avsync detect: median {wd:.2f} s  ({dur / wd:.1f}x real time), peak RSS {max(rss)} MiB")
        if floors:
            wf = statistics.median(floors)
            print(f"ffmpeg decode floor: median {wf:.2f} s;  ratio detect/floor = {wd / wf:.2f}")
        else:
            print("ffmpeg not found: no decode-floor ratio")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
