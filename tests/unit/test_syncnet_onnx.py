"""The optional ONNX Runtime path of syncnet: in-memory export, per-weights cache, agreement
with the torch networks, and a one-line error when onnxruntime is missing."""
from __future__ import annotations

import builtins
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avsync.cli.main import main  # noqa: E402
from avsync.media.synth import make_clip  # noqa: E402
from avsync.nn.syncnet_v2 import FastAud, FastLip, save_weights  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory, random_syncnet):
    m = random_syncnet(11)
    p = tmp_path_factory.mktemp("w") / "syncnet_v2.model"
    save_weights(m, p)
    return p, m


def _hide_onnxruntime(monkeypatch):
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_missing_onnxruntime_is_one_line(weights, tmp_path, capsys, monkeypatch):
    from avsync.estimators.syncnet import plugin

    plugin._scorer.cache_clear()
    _hide_onnxruntime(monkeypatch)
    clip = tmp_path / "c.mp4"
    make_clip(clip, duration_s=1.0, width=64, height=64, audio_rate=16000)
    rc = main(["detect", str(clip), "--method", "syncnet", "--weights", str(weights[0]), "--crop", "none",
               "--precision", "onnx"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "onnxruntime" in lines[0] and "pip install" in lines[0] and "Traceback" not in err


def test_fast_and_precision_contradict(weights, tmp_path, capsys):
    clip = tmp_path / "c.mp4"
    make_clip(clip, duration_s=1.0, width=64, height=64, audio_rate=16000)
    rc = main(["detect", str(clip), "--method", "syncnet", "--weights", str(weights[0]), "--fast",
               "--precision", "onnx"])
    _, err = capsys.readouterr()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--fast" in err


def test_onnx_networks_match_torch_and_cache_in_memory(weights, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from avsync.nn import onnx as onnx_rt
    from avsync.estimators.syncnet.score import Scorer

    monkeypatch.delenv(onnx_rt.CACHE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    path, m = weights
    onnx_rt._MEMO.clear()
    s = Scorer(str(path), precision="onnx", threads=1)
    assert len(onnx_rt._MEMO) == 2  # lip and audio, keyed by this weights file
    Scorer(str(path), precision="onnx", threads=1)
    assert len(onnx_rt._MEMO) == 2  # the second scorer reused the exported models
    assert os.listdir(tmp_path) == []  # nothing written
    g = torch.Generator().manual_seed(3)
    for batch in (1, 5):  # the batch axis is dynamic
        x = torch.rand(batch, 15, 224, 224, generator=g) * 255
        a = torch.randn(batch, 1, 13, 20, generator=g) * 10
        with torch.inference_mode():
            ref_l, ref_a = FastLip(m)(x), FastAud(m)(a)
        got_l, got_a = s.lip(x), s.aud(a)
        assert got_l.shape == ref_l.shape and got_a.shape == ref_a.shape
        assert ((got_l - ref_l).norm() / ref_l.norm()).item() < 1e-5
        assert ((got_a - ref_a).norm() / ref_a.norm()).item() < 1e-5


def test_onnx_cache_dir_only_when_asked(weights, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from avsync.nn import onnx as onnx_rt
    from avsync.estimators.syncnet.score import Scorer

    onnx_rt._MEMO.clear()
    cache = tmp_path / "cache"
    monkeypatch.setenv(onnx_rt.CACHE_ENV, str(cache))
    Scorer(str(weights[0]), precision="onnx", threads=1)
    files = sorted(os.listdir(cache))
    assert len(files) == 2 and all(f.endswith(".onnx") for f in files)
    onnx_rt._MEMO.clear()
    s = Scorer(str(weights[0]), precision="onnx", threads=1)  # read back from the folder
    x = torch.rand(2, 1, 13, 20)
    assert np.isfinite(s.aud(x).numpy()).all()
    assert sorted(os.listdir(cache)) == files
