"""A learned method whose runtime is not installed: one line naming the extra to install, exit 2
(never 'internal error', never blaming weights when a model ships).  Run in a child process
where torch / ONNX Runtime cannot be imported."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avsync.media.synth import make_sample

SRC = Path(__file__).resolve().parents[2] / "src"
HIDE = "import sys\nfor m in {mods!r}: sys.modules[m] = None\nfrom avsync.cli.main import main\nsys.exit(main({argv!r}))"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    p = tmp_path_factory.mktemp("extras") / "s.mp4"
    make_sample(p, offset_ms=0.0, duration_s=2.0)
    return p


def _run(argv, mods):
    code = HIDE.format(mods=list(mods), argv=[str(a) for a in argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


def test_syncnet_without_torch_names_the_extra(clip, tmp_path):
    weights = tmp_path / "syncnet_v2.model"
    weights.write_bytes(b"not read: torch is missing first")
    r = _run(["detect", clip, "--method", "syncnet", "--weights", weights, "--no-progress"], ["torch"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "avsync: method syncnet needs torch: pip install 'avsync[syncnet]'"


def test_fcn_without_any_runtime_names_the_extras_not_the_weights(clip):
    r = _run(["detect", clip, "--method", "fcn", "--no-progress"], ["torch", "onnxruntime"])
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "avsync[onnx]" in err and "avsync[fcn]" in err
    assert "weights" not in err and "internal error" not in err


def test_serve_without_its_extra_names_the_right_spec(tmp_path):
    r = _run(["serve", "--port", "0", "--data-dir", tmp_path / "d"], ["uvicorn"])
    assert r.returncode == 2, r.stderr
    assert "pip install 'avsync[serve]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
