"""Issue 14: memory is bounded whatever the timestamps do.  A small MPEG-TS file whose second half
jumps 3 hours ahead needed over 4 GB (the decoder filled the gap with silence); now the jump is a
reported discontinuity and the peak stays far below 1 GB."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from avsync.media.synth import make_clip

SRC = Path(__file__).resolve().parents[2] / "src"

_CHILD = r"""
import json, resource, sys
lim = 3 << 30  # address space: an unbounded allocation fails here instead of eating the machine
resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
from avsync.api import detect
from avsync.options import DetectOptions
try:
    d = detect(sys.argv[1], DetectOptions(method="motion")).to_dict()
    out = {"verdict": d["verdict"], "duration_s": d["media"]["duration_s"], "discontinuity": d.get("discontinuity"),
           "windows": len(d["windows"])}
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {exc}"[:300]}
# VmHWM: this process image's own peak (ru_maxrss keeps the forking parent's peak across exec)
with open("/proc/self/status") as fh:
    out["peak_mb"] = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM")) / 1024
print(json.dumps(out))
"""


def _jump_file(tmp_path: Path, offset_s: int = 3 * 3600) -> Path:
    a, b = tmp_path / "a.ts", tmp_path / "b.ts"
    make_clip(a, duration_s=4.0, width=160, height=120, seed=1)
    make_clip(b, duration_s=4.0, width=160, height=120, seed=2, container_options={"output_ts_offset": str(offset_s)})
    out = tmp_path / "jump.ts"
    out.write_bytes(a.read_bytes() + b.read_bytes())  # MPEG-TS joins by concatenation
    return out


def test_three_hour_jump_is_a_discontinuity_with_bounded_memory(tmp_path):
    f = _jump_file(tmp_path)
    assert f.stat().st_size < 400_000
    r = subprocess.run([sys.executable, "-c", _CHILD, str(f)], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(out)
    assert "error" not in out, out
    assert out["peak_mb"] < 1024, out
    d = out["discontinuity"]
    assert d is not None and d["jump_s"] > 3 * 3600 - 10 and 3.5 < d["at_s"] < 4.5, out
    assert out["duration_s"] < 5 and out["verdict"] == "in_sync", out


def test_persistent_decoder_restarts_its_timeline(tmp_path):
    """HLS segments: a jump starts a new timeline (no fill), reported in ``discontinuities``."""
    from avsync.media.hls import SegmentDecoder

    a, b = tmp_path / "a.ts", tmp_path / "b.ts"
    make_clip(a, duration_s=2.0, width=160, height=120, seed=1)
    make_clip(b, duration_s=2.0, width=160, height=120, seed=2, container_options={"output_ts_offset": "3600"})
    dec = SegmentDecoder()
    first = dec.decode(a.read_bytes())
    second = dec.decode(b.read_bytes())
    n_first = sum(getattr(i, "samples", None) is not None and i.samples.size for i in first)
    n_second = sum(getattr(i, "samples", None) is not None and i.samples.size for i in second)
    assert n_second < 2 * n_first  # no hour of silence
    assert any(d["jump_s"] > 3000 for d in dec._decoder.discontinuities)
