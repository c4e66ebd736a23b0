"""Test helpers: HLS streams made by ffmpeg from a real clip, served on 127.0.0.1."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

#: the source clip's own offset as SyncNet reports it (+3 frames at 25 fps): the stream
#: delays the audio by this much first, so its first half is (nearly) in sync
PRE_DELAY_MS = 120
SHIFT_MS = 200


def need_ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg CLI not found (needed to make the HLS test streams)")
    return exe


def make_shifted_hls(clip: Path, out_dir: Path, loops: int = 4, shift_at_s: float = 25.0,
                     segment_s: int = 2, live: bool = False) -> Path:
    """Loop ``clip`` ``loops`` times into an HLS stream (h264 + aac in MPEG-TS) whose audio is
    delayed by PRE_DELAY_MS, then advanced by SHIFT_MS (audio leads) from ``shift_at_s`` of
    source time on.  Returns the playlist path (all segments listed, with ENDLIST)."""
    exe = need_ffmpeg()
    out_dir.mkdir(parents=True, exist_ok=True)
    m = shift_at_s
    fc = (f"[0:a]adelay={PRE_DELAY_MS}:all=1,asplit[a1][a2];[a1]atrim=0:{m},asetpts=PTS-STARTPTS[p1];"
          f"[a2]atrim=start={m + SHIFT_MS / 1000:.3f},asetpts=PTS-STARTPTS[p2];[p1][p2]concat=n=2:v=0:a=1[aout]")
    cmd = [exe, "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(clip), "-filter_complex", fc,
           "-map", "0:v", "-map", "[aout]", "-c:v", "libx264", "-g", str(25 * segment_s), "-keyint_min",
           str(25 * segment_s), "-sc_threshold", "0", "-preset", "veryfast", "-c:a", "aac", "-f", "hls",
           "-hls_time", str(segment_s), "-hls_list_size", "0", "-hls_playlist_type", "vod",
           "-hls_segment_filename", str(out_dir / "seg%03d.ts"), str(out_dir / "index.m3u8")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"ffmpeg could not make the HLS stream: {r.stderr.strip()[:200]}")
    return out_dir / "index.m3u8"


class _Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "test"

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):
        ctl = self.server.control
        name = self.path.split("?")[0].rsplit("/", 1)[-1]
        with ctl["lock"]:
            ctl["requests"].append(name)
            if name in ctl["missing"]:
                self.send_error(404, "gone")
                return
            if name.endswith(".m3u8") and ctl["playlist_down"] > 0:
                ctl["playlist_down"] -= 1
                self.send_error(503, "down")
                return
        return super().do_GET()


class HlsServer:
    """``python -m http.server`` in a thread, with switches for faults."""

    def __init__(self, root: Path):
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.control = {"lock": threading.Lock(), "missing": set(), "playlist_down": 0, "requests": []}
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def control(self) -> dict:
        return self.httpd.control

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def segments_of(playlist: Path) -> list[tuple[float, str]]:
    out, dur = [], None
    for ln in playlist.read_text().splitlines():
        if ln.startswith("#EXTINF:"):
            dur = float(ln.split(":")[1].split(",")[0])
        elif ln and not ln.startswith("#"):
            out.append((dur, ln))
    return out


class LivePublisher:
    """Publishes a sliding live playlist (no ENDLIST) one segment every ``period`` seconds."""

    def __init__(self, vod: Path, live_dir: Path, period: float, window: int = 4, end: bool = False):
        self.segs = segments_of(vod)
        self.vod_dir = vod.parent
        self.dir = live_dir
        self.period = period
        self.window = window
        self.end = end
        self.stop = threading.Event()
        self.published = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        live_dir.mkdir(parents=True, exist_ok=True)
        for _, name in self.segs:
            os.link(self.vod_dir / name, live_dir / name) if not (live_dir / name).exists() else None
        self._write(min(self.window, len(self.segs)))

    def _write(self, n: int) -> None:
        first = max(0, n - self.window)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for d, name in self.segs[first:n]:
            lines += [f"#EXTINF:{d:.6f},", name]
        if self.end and n >= len(self.segs):
            lines.append("#EXT-X-ENDLIST")
        tmp = self.dir / "live.m3u8.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.dir / "live.m3u8")
        self.published = n

    def _run(self):
        n = self.published
        while not self.stop.wait(self.period) and n < len(self.segs):
            n += 1
            self._write(n)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
