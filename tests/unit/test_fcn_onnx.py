"""FCN-SyncNet exported to ONNX: the ONNX Runtime frame logits equal torch's (two lengths, masks,
batch of 2), metadata makes the .onnx file self-contained, detect picks ONNX Runtime by suffix
and gives the same estimate as the .pt file without importing torch, and bad files are one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from avsync.cli.main import main  # noqa: E402
from avsync.nn.fcn_io import HOPS, N_MEL, VIS_DIM  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
CAL = {"coef": [1.3], "intercept": -0.7, "n": 10}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny randomly initialised FCN-SyncNet (with non-trivial BatchNorm statistics) saved with
    ``save`` and exported with the CLI."""
    from avsync.nn.fcn import FCNSyncNet, save

    torch.manual_seed(5)
    m = FCNSyncNet(max_offset=7, channels=12).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
        m.clip_scale.fill_(1.7)
    d = tmp_path_factory.mktemp("fcnonnx")
    pt, ox = d / "m.pt", d / "m.onnx"
    save(m, str(pt), {"calibration": CAL})
    assert main(["export-onnx", "--weights", str(pt), "--out", str(ox)]) == 0
    assert not list(d.glob("*.tmp"))
    return pt, ox, m


def _inputs(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    aud = torch.randn(B, N_MEL, HOPS * T, generator=g)
    vis = torch.randn(B, VIS_DIM, T, generator=g)
    am, vm = torch.ones(B, HOPS * T), torch.ones(B, T)
    am[0, : HOPS * 5] = 0  # audio starts late in the first example
    vm[-1, T // 2: T // 2 + 6] = 0  # a face drop-out in the last one
    return aud, am, vis, vm


def test_onnx_matches_torch_on_two_lengths_with_masks(models):
    from avsync.nn.fcn_onnx import OUTPUTS, FCNOnnx

    _, ox, m = models
    o = FCNOnnx(ox, threads=1)
    assert o.K == 7 and o.calibration == CAL and o.clip_scale == pytest.approx(1.7)
    assert o.config == m.config
    for B, T in ((2, 31), (1, 403)):
        aud, am, vis, vm = _inputs(B, T, seed=T)
        with torch.no_grad():
            probs, a, v = m(aud, vis, am, vm)
        ref = {"sync_probs": probs, "frame_logits": m.last["logits"], "valid": m.last["valid"],
               "clip_logits": m.last["clip_logits"], "audio_features": a, "video_features": v}
        got = o.run(aud.numpy(), am.numpy(), vis.numpy(), vm.numpy())
        assert set(got) == set(OUTPUTS)
        for k in OUTPUTS:
            assert got[k].shape == tuple(ref[k].shape), k
            np.testing.assert_allclose(got[k], ref[k].numpy(), atol=1e-4, rtol=0, err_msg=k)
        assert got["frame_logits"].shape == (B, 15, T)
        assert (got["valid"][0, 7, :5] == 0).all() and got["valid"][0, 7, 5:T // 2].all()  # offset 0, audio masked


def test_onnx_metadata_is_in_the_file(models):
    import onnx

    _, ox, _ = models
    meta = {p.key: p.value for p in onnx.load(str(ox)).metadata_props}
    assert meta["format"] == "avsync-fcn-onnx/1" and meta["max_offset"] == "7"
    assert json.loads(meta["calibration"]) == CAL and json.loads(meta["config"])["channels"] == 12


def _features(T, lag, seed):
    """A Features-like object whose mouth opening and audio loudness follow one random signal
    (the audio ``lag`` frames early) -- what the fcn estimator reads."""
    import types

    rng = np.random.default_rng(seed)
    x = np.convolve(rng.normal(size=T + 40), np.ones(3) / 3, "same")
    xv, xa = x[20:20 + T], x[20 + lag:20 + lag + T]
    lips = rng.normal(0, 0.2, (T, 20, 2)).astype(np.float32)
    lips[:, :, 1] += xv[:, None]
    mel = np.repeat(xa, HOPS)[:, None] * rng.uniform(0.5, 1.5, N_MEL) + rng.normal(0, 0.3, (HOPS * T, N_MEL))
    visual = types.SimpleNamespace(times=np.arange(T) / 25.0, lips=lips, mouth={"dark": np.zeros(T, np.float32)},
                                   face_detected=np.ones(T, bool), face_coverage=1.0)
    audio = types.SimpleNamespace(t0=-1.5 / 100, rate=100.0, mel=mel.astype(np.float32))
    return types.SimpleNamespace(visual=visual, audio=audio)


def test_estimator_same_result_with_pt_and_onnx_chunked(models, monkeypatch):
    from avsync.estimators import fcn as est_mod
    from avsync.estimators.base import EstimatorOptions
    from avsync.estimators.registry import get_estimator

    pt, ox, _ = models
    monkeypatch.setattr(est_mod, "CHUNK_FRAMES", 120)  # 3 chunks with overlaps, stitched
    res = {}
    for w in (pt, ox):
        est = get_estimator("fcn", EstimatorOptions(weights=str(w)))
        f = _features(330, 3, seed=2)
        whole, win = est.estimate(f), est.estimate(f, 2.0, 7.0)
        res[w.suffix] = (whole, win, est_mod.frame_offsets(f, str(w)))
    (a, aw, ad), (b, bw, bd) = res[".pt"], res[".onnx"]
    assert a.assessable and b.assessable
    assert b.offset_ms == pytest.approx(a.offset_ms, abs=1e-3)
    assert b.confidence == pytest.approx(a.confidence, abs=1e-4)
    np.testing.assert_allclose(b.profile.value, a.profile.value, atol=1e-4)
    assert bw.offset_ms == pytest.approx(aw.offset_ms, abs=1e-3)
    np.testing.assert_allclose(bd[1], ad[1], atol=1e-2)  # dense per-frame offsets, ms


def test_detect_onnx_path_never_imports_torch(models, tmp_path):
    """In a fresh interpreter: the CLI detect with the .onnx file, and the estimator on a clip with a
    face signal, run on ONNX Runtime and give the .pt file's answer (passed in), without torch."""
    from avsync.estimators.base import EstimatorOptions
    from avsync.estimators.registry import get_estimator
    from avsync.media.synth import make_clip

    pt, ox, _ = models
    clip = tmp_path / "c.mp4"
    make_clip(clip, duration_s=1.0, width=64, height=64, audio_rate=16000)
    ref = get_estimator("fcn", EstimatorOptions(weights=str(pt))).estimate(_features(200, -2, seed=9))
    assert ref.assessable
    import inspect

    code = (
        "import sys, json, io, contextlib\n"
        "import numpy as np\n"
        "from avsync.nn.fcn_io import HOPS, N_MEL\n"
        + inspect.getsource(_features) +
        "from avsync.cli.main import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    rc = main(['detect', '--json', '--method', 'fcn', '--weights', {str(ox)!r}, {str(clip)!r}])\n"
        "from avsync.estimators.base import EstimatorOptions\nfrom avsync.estimators.registry import get_estimator\n"
        f"e = get_estimator('fcn', EstimatorOptions(weights={str(ox)!r})).estimate(_features(200, -2, seed=9))\n"
        "print(json.dumps({'rc': rc, 'report': json.loads(buf.getvalue()), 'off': e.offset_ms, "
        "'conf': e.confidence, 'torch': 'torch' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["torch"] is False
    assert r["rc"] == 0 and r["report"]["method"] == "fcn"  # (no face in this clip: not assessable)
    assert r["off"] == pytest.approx(ref.offset_ms, abs=1e-3) and r["conf"] == pytest.approx(ref.confidence, abs=1e-4)


def test_bad_onnx_files_are_one_line(models, tmp_path, capsys):
    from avsync.media.synth import make_clip

    clip = tmp_path / "c.mp4"
    make_clip(clip, duration_s=1.0, width=64, height=64, audio_rate=16000)
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(models[1].read_bytes()[:500])  # truncated
    cases = [(tmp_path / "missing.onnx", "not found"), (bad, "cannot load FCN-SyncNet ONNX model")]
    # a valid ONNX model that is not ours: the syncnet-style export of a plain conv
    from avsync.nn.onnx import export_bytes

    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(export_bytes(torch.nn.Conv1d(2, 2, 1), (torch.zeros(1, 2, 5),), ["x"], ["y"], {}))
    cases.append((foreign, "without avsync FCN-SyncNet metadata"))
    for path, why in cases:
        rc = main(["detect", "--method", "fcn", "--weights", str(path), str(clip)])
        out, err = capsys.readouterr()
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and out == "", (path, err)
        assert len(lines) == 1 and lines[0].startswith("avsync: ") and why in lines[0], lines
    # export: a missing / corrupt .pt and a wrong suffix
    for args, why in ((["--weights", str(tmp_path / "no.pt"), "--out", str(tmp_path / "x.onnx")], "not found"),
                      (["--weights", str(bad), "--out", str(tmp_path / "x.onnx")], "cannot load FCN-SyncNet weights"),
                      (["--weights", str(models[0]), "--out", str(tmp_path / "x.pt")], "must end in .onnx")):
        rc = main(["export-onnx", *args])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and why in err, err
        assert not (tmp_path / "x.onnx").exists()
