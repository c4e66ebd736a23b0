"""FCN-SyncNet: shapes, offset decoding, training pairs, a tiny training run that must
learn a known shift, the estimator (chunking, missing weights) and the torch-free default."""
from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from avsync.nn.fcn_io import HOPS, N_MEL, VIS_DIM, Track, track_from_raw
from avsync.training.fcn_data import sample_pair


def synth_track(rng, T, name="c", group="g", lag=0):
    """A random articulation signal drives the mouth opening and the audio loudness;
    the audio is ``lag`` frames EARLIER than the video (audio leads by ``lag``)."""
    x = np.convolve(rng.normal(size=T + 2 * abs(lag) + 10), np.ones(3) / 3, "same")
    xv = x[abs(lag):abs(lag) + T]
    xa = x[abs(lag) + lag:abs(lag) + lag + T]  # a'(t) = a(t + lag)
    vis = np.zeros((T, VIS_DIM), np.float32)
    vis[:, 1:2 * 20:2] = xv[:, None] * rng.uniform(0.5, 1.5, 20)[None]
    vis += rng.normal(0, 0.3, vis.shape).astype(np.float32)
    a = np.repeat(xa, HOPS)
    aud = (a[:, None] * rng.uniform(0.5, 1.5, N_MEL)[None] + rng.normal(0, 0.3, (HOPS * T, N_MEL))).astype(np.float32)
    return Track(0.0, vis, np.ones(T, np.float32), aud, np.ones(HOPS * T, np.float32), group, name)


# ------------------------------------------------------------------ numpy side (no torch)
def test_sample_pair_moves_audio_earlier_by_label():
    T = 60
    ramp = np.arange(HOPS * T, dtype=np.float32)
    tr = Track(0.0, np.zeros((T, VIS_DIM), np.float32), np.ones(T, np.float32),
               np.repeat(ramp[:, None], N_MEL, 1), np.ones(HOPS * T, np.float32))
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        vis, vm, aud, am, lab = sample_pair([tr], 0, rng, 20, 8, augment=False)
        seen.add(lab)
        # find s from the visual? vis is zeros: recover it from the valid audio instead
        ok = am > 0
        assert ok.any()
        i = int(np.argmax(ok))
        # audio hop i of the window holds original hop 4 * (s + lab) + i: consecutive, shifted
        assert np.all(np.diff(aud[ok, 0]) == 1)
        assert aud.shape == (HOPS * 20, N_MEL) and vis.shape == (20, VIS_DIM)
        assert (aud[i, 0] - i) % HOPS == 0
    assert len(seen) > 5 and all(-8 <= s <= 8 for s in seen)


def test_track_from_raw_resamples_to_25hz_and_masks_missing_faces():
    n = 90  # 3 s at 30 fps
    lips = np.random.default_rng(0).normal(size=(n, 20, 2)).astype(np.float32)
    lips[10:20] = np.nan  # no face there
    raw = {"v_times": np.arange(n) / 30.0, "lips": lips, "dark": np.zeros(n, np.float32),
           "a_t0": 0.0125, "a_rate": 100.0, "mel": np.random.default_rng(1).normal(size=(300, N_MEL))}
    tr = track_from_raw(raw)
    assert len(tr) == int(np.floor(89 / 30 * 25)) + 1
    assert tr.aud.shape == (HOPS * len(tr), N_MEL)
    t = tr.t0 + np.arange(len(tr)) / 25.0
    gap = (t > 11 / 30) & (t < 18 / 30)
    assert tr.vmask[gap].sum() == 0 and tr.vmask[~gap].mean() > 0.9
    assert np.all(tr.vis[tr.vmask == 0] == 0)


# ------------------------------------------------------------------ torch side
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_shapes_variable_length():
    from avsync.nn.fcn import FCNSyncNet

    m = FCNSyncNet(max_offset=6, channels=8).eval()
    for T in (9, 37, 80):
        probs, a, v = m(torch.randn(2, N_MEL, HOPS * T), torch.randn(2, VIS_DIM, T))
        assert probs.shape == (2, 13, T)
        assert a.shape == (2, 8, T) and v.shape == (2, 8, T)
        assert torch.allclose(probs.sum(1), torch.ones(2, T), atol=1e-5)
        off, conf = m.compute_offset(probs)
        assert off.shape == (2, T) and conf.shape == (2, T)
        assert torch.all(conf <= 1 + 1e-6) and torch.all(off.abs() <= 6)


def test_impossible_offsets_get_no_probability():
    from avsync.nn.fcn import FCNSyncNet

    m = FCNSyncNet(max_offset=5, channels=8).eval()
    probs, _, _ = m(torch.randn(1, N_MEL, HOPS * 20), torch.randn(1, VIS_DIM, 20))
    # at frame 0 the audio of frame 0 - k exists only for k <= 0
    assert float(probs[0, 6:, 0].sum().detach()) < 1e-6
    assert float(probs[0, :5, 19].sum().detach()) < 1e-6  # at the last frame only k >= 0


def test_decode_offsets_peak_and_confidence():
    from avsync.nn.fcn import decode_offsets
    from avsync.nn.fcn_io import decode_offset

    K = 4
    p = torch.zeros(1, 2 * K + 1, 3)
    p[0, K + 2, 0] = 1.0  # offset +2
    p[0, K - 3, 1], p[0, K - 2, 1] = 0.5, 0.5  # between -3 and -2
    p[0, 0, 2], p[0, 1, 2], p[0, 8, 2] = 0.6, 0.2, 0.2  # peak at the range edge -4
    off, conf = decode_offsets(p, K)
    assert off[0, 0] == pytest.approx(2.0) and conf[0, 0] == pytest.approx(1.0)
    assert off[0, 1] == pytest.approx(-2.5) and conf[0, 1] == pytest.approx(1.0)
    assert off[0, 2] == pytest.approx((-4 * 0.6 - 3 * 0.2) / 0.8) and conf[0, 2] == pytest.approx(0.8)
    for t in range(3):
        o, c = decode_offset(p[0, :, t].numpy(), K)
        assert o == pytest.approx(float(off[0, t])) and c == pytest.approx(float(conf[0, t]))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small model trained for a few seconds on synthetic tracks."""
    from avsync.training.fcn import TrainOptions, train

    rng = np.random.default_rng(0)
    tr = [synth_track(rng, int(rng.integers(40, 120)), f"c{i}", f"g{i}") for i in range(40)]
    va = [synth_track(rng, 100, f"v{i}", f"h{i}") for i in range(6)]
    out = str(tmp_path_factory.mktemp("fcn") / "tiny.pt")
    res = train(TrainOptions(data=[], out=out, steps=40, batch=8, max_offset=8, channels=16, length=40,
                             checkpoint_every=40, threads=1), tracks=(tr, va))
    return out, res


def test_tiny_training_learns_a_known_shift(tiny_model):
    from avsync.nn.fcn import load
    from avsync.training.fcn import predict_clip

    path, res = tiny_model
    assert res.history and res.history[-1]["val_acc_1f"] >= 0.5
    m = load(path)
    assert m.calibration and len(m.calibration["coef"]) == 1  # fitted on the validation tracks
    rng = np.random.default_rng(42)
    hits = 0
    for lag in (-6, -3, 0, 2, 5):
        t = synth_track(rng, 100, lag=lag)
        b = (torch.from_numpy(t.aud.T[None].copy()), torch.from_numpy(t.amask[None]),
             torch.from_numpy(t.vis.T[None].copy()), torch.from_numpy(t.vmask[None]))
        off, conf = predict_clip(m, *b)
        hits += abs(off - lag) <= 1.0
    assert hits >= 4, hits
    # and with the audio of an unrelated clip it is not confident
    a = synth_track(rng, 100)
    v = synth_track(rng, 100)
    off, conf = predict_clip(m, torch.from_numpy(a.aud.T[None].copy()), torch.from_numpy(a.amask[None]),
                             torch.from_numpy(v.vis.T[None].copy()), torch.from_numpy(v.vmask[None]))
    assert conf < 0.9


def test_resume_continues_from_checkpoint(tmp_path):
    from avsync.training.fcn import TrainOptions, train

    rng = np.random.default_rng(1)
    tr = [synth_track(rng, 50, f"c{i}", f"g{i}") for i in range(6)]
    out = str(tmp_path / "m.pt")
    opts = TrainOptions(data=[], out=out, steps=6, batch=4, max_offset=4, channels=8, length=30,
                        checkpoint_every=3)

    class Stop(Exception):
        pass

    def interrupt(stage, done, total):
        if "step=3" in stage:
            raise Stop  # killed right after the first checkpoint

    with pytest.raises(Stop):
        train(opts, interrupt, tracks=(tr, []))
    r = train(TrainOptions(**{**opts.__dict__, "resume": True}), tracks=(tr, []))
    assert [h["step"] for h in r.history] == [3, 6]
    full = train(TrainOptions(**{**opts.__dict__, "out": str(tmp_path / "n.pt")}), tracks=(tr, []))
    assert r.history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-4)  # same seed, same run


def _features_from_track(tr: Track):
    """A Features-like object carrying the raw arrays the fcn estimator reads."""
    T = len(tr)
    lips = tr.vis[:, :40].reshape(T, 20, 2).copy()
    visual = types.SimpleNamespace(times=np.arange(T) / 25.0, lips=lips, mouth={"dark": tr.vis[:, 40] / 4},
                                   face_detected=np.ones(T, bool), face_coverage=1.0)
    mel = tr.aud.copy()
    audio = types.SimpleNamespace(t0=-1.5 / 100, rate=100.0, mel=mel)
    return types.SimpleNamespace(visual=visual, audio=audio)


def test_estimator_chunked_equals_whole_and_finds_offset(tiny_model, monkeypatch):
    from avsync.estimators import fcn as est_mod
    from avsync.estimators.base import EstimatorOptions
    from avsync.estimators.registry import get_estimator

    path, _ = tiny_model
    rng = np.random.default_rng(7)
    feats = _features_from_track(synth_track(rng, 400, lag=4))
    est = get_estimator("fcn", EstimatorOptions(weights=path))
    whole = est.estimate(feats)
    assert whole.offset_ms == pytest.approx(160.0, abs=40.0)
    assert whole.profile.value.shape == (17,)
    monkeypatch.setattr(est_mod, "CHUNK_FRAMES", 90)
    feats2 = _features_from_track(synth_track(np.random.default_rng(7), 400, lag=4))
    chunked = est.estimate(feats2)
    assert chunked.offset_ms == pytest.approx(whole.offset_ms, abs=1.0)
    win = est.estimate(feats2, 4.0, 9.0)  # a timeline window, from the cached frame logits
    assert win.assessable and win.stats["frames"] <= 126


def test_confidence_calibration_is_monotone_in_peak_mass():
    from avsync.errors import UsageError
    from avsync.nn.fcn_io import apply_confidence

    cal = {"coef": [1.5], "intercept": -2.0}
    vals = [apply_confidence(cal, c, 100) for c in (0.05, 0.3, 0.6, 0.95)]
    assert vals == sorted(vals) and all(0 < v < 1 for v in vals)
    assert apply_confidence(None, 0.42, 10) == 0.42
    with pytest.raises(UsageError, match="calibration"):  # a file from another version: one line
        apply_confidence({"coef": [1.0, 2.0], "intercept": 0.0}, 0.5, 10)


def test_missing_weights_is_a_one_line_usage_error(tmp_path, capsys, monkeypatch):
    from avsync.cli.main import main
    from avsync.errors import MissingWeights
    from avsync.estimators import fcn as est_mod
    from avsync.estimators.registry import get_estimator

    monkeypatch.setattr(est_mod, "default_weights", lambda: None)  # an installation without a model file
    monkeypatch.setattr(est_mod, "shipped_model", lambda: False)
    with pytest.raises(MissingWeights) as ei:
        get_estimator("fcn").prepare()
    assert "\n" not in str(ei.value) and "--weights" in str(ei.value)
    clip = tmp_path / "x.mkv"
    clip.write_bytes(b"\0" * 10)
    rc = main(["detect", "--method", "fcn", str(clip)])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("avsync: ") and "weights" in lines[0]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    rc = main(["detect", "--method", "fcn", "--weights", str(bad), str(clip)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "cannot load" in err


def test_default_detect_never_imports_torch(tmp_path):
    code = (
        "import sys\n"
        "from avsync.media.synth import make_sample\n"
        f"make_sample({str(tmp_path / 's.mkv')!r}, offset_ms=80, duration_s=3)\n"
        "from avsync.cli.main import main\n"
        f"rc = main(['detect', '--json', {str(tmp_path / 's.mkv')!r}])\n"
        "assert rc in (0, 1), rc\n"
        "from avsync.estimators.registry import available_methods\n"
        "assert 'fcn' in available_methods()\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "NO_TORCH"


def test_estimator_applies_fusion_stored_in_weights(tiny_model, tmp_path, monkeypatch):
    import shutil

    from avsync.estimators import lips as lips_mod
    from avsync.estimators.base import Estimate, EstimatorOptions
    from avsync.estimators.registry import get_estimator
    from avsync.nn.fcn import set_extra

    path = str(tmp_path / "fused.pt")
    shutil.copy(tiny_model[0], path)
    set_extra(path, fusion={"theta": 0.5, "coef": [0.0, 0.0, 0.0, 0.0, 2.0]})
    class FakeLips:
        def __init__(self, options=None):
            pass

        def estimate(self, features, t0=None, t1=None):
            return Estimate(offset_ms=-400.0, confidence=lips_conf)

    monkeypatch.setattr(lips_mod, "LipsEstimator", FakeLips)
    feats = _features_from_track(synth_track(np.random.default_rng(7), 400, lag=4))
    feats.info = types.SimpleNamespace(video_fps=25.0)
    lips_conf = 0.9  # confident lips: taken; confidence from the stored logistic model
    e = get_estimator("fcn", EstimatorOptions(weights=path)).estimate(feats)
    assert e.offset_ms == -400.0 and e.stats["fused_from"] == "lips"
    assert e.confidence == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert e.stats["fcn_offset_ms"] == pytest.approx(160.0, abs=40.0)
    lips_conf = 0.2  # below theta: the learned estimate stands
    e = get_estimator("fcn", EstimatorOptions(weights=path)).estimate(feats)
    assert e.offset_ms == pytest.approx(160.0, abs=40.0) and e.stats["fused_from"] == "fcn"
    alone = get_estimator("fcn", EstimatorOptions(weights=path, fusion=False)).estimate(feats)
    assert "fused_from" not in alone.stats and alone.offset_ms == pytest.approx(160.0, abs=40.0)


def test_default_weights_prefer_onnx_and_need_a_runtime(monkeypatch):
    from importlib import resources

    from avsync.estimators import fcn as est_mod

    root = resources.files("avsync")
    shipped = [rel for rel in est_mod.DEFAULT_WEIGHTS if root.joinpath(rel).is_file()]
    monkeypatch.setattr(est_mod, "_has", lambda m: False)
    assert est_mod.default_weights() is None and not est_mod.auto_available()
    monkeypatch.setattr(est_mod, "_has", lambda m: m == "torch")
    got = est_mod.default_weights()
    assert (got is None) == ("data/fcn_syncnet.pt" not in shipped)
    assert got is None or got.endswith(".pt")
    monkeypatch.setattr(est_mod, "_has", lambda m: True)
    got = est_mod.default_weights()
    assert got is None or got.endswith(".onnx" if "data/fcn_syncnet.onnx" in shipped else ".pt")


def test_training_device_is_resolved_or_refused():
    from avsync.errors import UsageError
    from avsync.training.fcn import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA"):
            resolve_device("cuda")


def test_find_media_groups_dataset_layouts_by_speaker_or_video(tmp_path):
    from avsync.training.fcn_data import find_media

    files = ["vox/id10001/1zcIwhmdeo4/00001.mp4", "vox/id10001/7gWzIy6yIIk/00002.mp4",
             "vox/id10002/abcdefghijk/00001.mp4", "lrs2/5535415699068794046/00001.mp4",
             "lrs2/5535415699068794046/00002.mp4", "lrs2/6330311066473698535/00001.mp4",
             "ave/-0A9suni5YA.mp4", "named/grid_s1_bbaf2n.mpg"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"")
    got = {os.path.relpath(p, tmp_path): g for p, g in find_media([str(tmp_path)])}
    assert got["vox/id10001/1zcIwhmdeo4/00001.mp4"] == got["vox/id10001/7gWzIy6yIIk/00002.mp4"] == "id10001"
    assert got["vox/id10002/abcdefghijk/00001.mp4"] == "id10002"
    assert got["lrs2/5535415699068794046/00001.mp4"] == got["lrs2/5535415699068794046/00002.mp4"] \
        == "5535415699068794046"
    assert got["lrs2/6330311066473698535/00001.mp4"] == "6330311066473698535"
    assert got["ave/-0A9suni5YA.mp4"] == "-0A9suni5YA" and got["named/grid_s1_bbaf2n.mpg"] == "grid_s1"
    # --exclude: a speaker group or a path substring; nothing left is one line
    from avsync.errors import UsageError
    from avsync.training.fcn_data import training_clips

    kept = {os.path.relpath(p, tmp_path) for p, _ in training_clips([str(tmp_path)], ["id10001", "lrs2/"])}
    assert kept == {"vox/id10002/abcdefghijk/00001.mp4", "ave/-0A9suni5YA.mp4", "named/grid_s1_bbaf2n.mpg"}
    with pytest.raises(UsageError, match="no usable video clips"):
        training_clips([str(tmp_path / "vox")], ["vox"])


def test_train_options_belong_to_their_model_family(capsys):
    """`avsync train` reads each family's options only for its models: any other is one line, exit 2."""
    from avsync.cli.main import main

    cases = [(["--model", "fcn", "--data", "x", "--max-epochs", "5"], "--max-epochs does not apply to --model fcn"),
             (["--model", "transformer", "--metadata", "m", "--features", "f", "--steps", "5"],
              "--steps does not apply to --model transformer"),
             (["--model", "r3d", "--data", "x", "--resume", "--device", "cpu"],
              "--resume, --device do not apply to --model r3d"),
             (["--model", "mlp", "--data", "x", "--pretrained", "p"], "--data, --pretrained do not apply")]
    for argv, needle in cases:
        rc = main(["train", *argv, "--out", "never.pt"])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, (argv, err)
