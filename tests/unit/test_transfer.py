"""The transfer-learning architectures (vggish, wav2vec2, r3d): each loads an encoder weights file
saved from itself (the --pretrained path), runs with FCN-SyncNet's output contract, rejects
mismatched weights with one line, and trains through the real `avsync train` entry."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from avsync.cli.main import main  # noqa: E402
from avsync.errors import UsageError  # noqa: E402
from avsync.nn.fcn_io import HOPS, N_MEL, VIS_DIM  # noqa: E402

TINY = {"vggish": {"n_mels": 32, "width": 4},
        "wav2vec2": {"conv_dim": 8, "d_model": 16, "layers": 1, "heads": 2, "ff": 16},
        "r3d": {"width": 4, "blocks": [1, 1, 1, 1]}}
K, C = 4, 8


def _opts(arch, **kw):
    from avsync.training.transfer import TransferOptions

    return TransferOptions(data=[], out="", arch=arch, encoder=dict(TINY[arch]), max_offset=K, channels=C, **kw)


def _inputs(arch, B, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    am, vm = torch.ones(B, HOPS * T), torch.ones(B, T)
    am[0, :8] = 0
    vm[-1, 3:6] = 0
    if arch == "vggish":
        aud = torch.randn(B, TINY[arch]["n_mels"], HOPS * T, generator=g)
    elif arch == "wav2vec2":
        aud = torch.randn(B, 1, 640 * T, generator=g)
    else:
        aud = torch.randn(B, N_MEL, HOPS * T, generator=g)
    vid = torch.rand(B, 1, T, 48, 96, generator=g) if arch == "r3d" else torch.randn(B, VIS_DIM, T, generator=g)
    return aud, am, vid, vm


@pytest.mark.parametrize("arch", ["vggish", "wav2vec2", "r3d"])
def test_loads_its_own_encoder_weights_and_runs(arch, tmp_path):
    from avsync.training.transfer import build
    from avsync.nn.transfer import save_encoder

    torch.manual_seed(1)
    src, _ = build(_opts(arch))
    path = tmp_path / f"{arch}.enc.pt"
    save_encoder(src, path)
    torch.manual_seed(2)  # a different random start: the loaded weights must replace it
    fresh, loaded = build(_opts(arch, pretrained=str(path), freeze_encoder=True))
    want = src.encoder.state_dict()
    assert loaded["keys"] == len(want)
    for k, v in fresh.encoder.state_dict().items():
        assert torch.equal(v, want[k]), k
    assert not any(p.requires_grad for p in fresh.encoder.parameters())
    assert any(p.requires_grad for p in fresh.head.parameters())
    fresh.train()
    assert not fresh.encoder.training  # frozen: normalisation statistics stay fixed
    for T in (9, 21):  # variable length, fully convolutional
        aud, am, vid, vm = _inputs(arch, 2, T, seed=T)
        probs, a, v = fresh.eval()(aud, vid, am, vm)
        assert probs.shape == (2, 2 * K + 1, T) and a.shape == (2, C, T) and v.shape == (2, C, T)
        assert torch.allclose(probs.sum(1), torch.ones(2, T), atol=1e-5)
        off, conf = fresh.compute_offset(probs)
        assert off.shape == (2, T) and torch.all(off.abs() <= K) and torch.all(conf <= 1 + 1e-6)
        enc_in = (vid, vm) if arch == "r3d" else (aud, am)
        with torch.no_grad():  # the loaded encoder computes what the saved one did
            assert torch.allclose(fresh.encoder(*enc_in), src.eval().encoder(*enc_in), atol=1e-5)


def test_mismatched_pretrained_weights_are_one_line(tmp_path):
    from avsync.training.transfer import build
    from avsync.nn.transfer import save_encoder

    m, _ = build(_opts("vggish"))
    good = tmp_path / "vggish.pt"
    save_encoder(m, good)
    state = m.encoder.state_dict()
    cases = []
    wide = _opts("vggish")
    wide.encoder["width"] = 8
    cases.append((wide, good, "shape mismatch for 'features.0.weight': file 4x2x3x3 vs model 8x2x3x3"))
    cases.append((_opts("r3d"), good, "for a vggish encoder, not r3d"))
    p = tmp_path / "missing_key.pt"
    torch.save({k: v for k, v in state.items() if k != "embed.2.bias"}, p)
    cases.append((_opts("vggish"), p, "lack key 'embed.2.bias'"))
    p = tmp_path / "extra_key.pt"
    torch.save({**state, "fc.weight": torch.zeros(1)}, p)
    cases.append((_opts("vggish"), p, "unexpected key 'fc.weight'"))
    p = tmp_path / "corrupt.pt"
    p.write_bytes(b"\x80garbage")
    cases.append((_opts("vggish"), p, "cannot read pretrained weights"))
    cases.append((_opts("vggish"), tmp_path / "nope.pt", "not found"))
    for opts, path, why in cases:
        opts.pretrained = str(path)
        with pytest.raises(UsageError) as ei:
            build(opts)
        msg = str(ei.value)
        assert "\n" not in msg and why in msg and str(path) in msg, msg


def test_train_cli_r3d_few_steps_then_fine_tune_from_it(tmp_path, capsys):
    """Through the real `avsync train` entry: r3d on synthetic clips taken as mouth crops (a
    flashing square with a beep), then a second run starting from the first model's encoder
    (frozen), and a bad --pretrained as one line, exit 2."""
    from avsync.media.synth import make_clip
    from avsync.nn.transfer import load_model

    data = tmp_path / "clips"
    data.mkdir()
    for i in range(2):
        make_clip(data / f"s{i}_c.mp4", duration_s=2.0, width=96, height=48, audio_rate=16000, seed=i)
    out = tmp_path / "r3d.pt"
    common = ["train", "--model", "r3d", "--crop", "none", "--data", str(data), "--steps", "2", "--batch", "2",
              "--max-offset", str(K), "--channels", str(C), "--encoder", "width=4", "--no-progress"]
    assert main([*common, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and out.is_file()
    m = load_model(out)
    aud, am, vid, vm = _inputs("r3d", 1, 20)
    with torch.no_grad():
        assert m(aud, vid, am, vm)[0].shape == (1, 2 * K + 1, 20)
    out2 = tmp_path / "r3d2.pt"
    assert main([*common, "--out", str(out2), "--pretrained", str(out), "--freeze-encoder"]) == 0
    m2 = load_model(out2)
    for k, v in m.encoder.state_dict().items():  # frozen: the encoder is the pretrained one
        assert torch.equal(v, m2.encoder.state_dict()[k]), k
    capsys.readouterr()
    rc = main([*common, "--out", str(tmp_path / "x.pt"), "--pretrained", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not found" in err
    rc = main(["train", "--model", "fcn", "--data", str(data), "--out", str(tmp_path / "y.pt"), "--freeze-encoder"])
    assert rc == 2 and "--freeze-encoder" in capsys.readouterr().err


def test_sample_window_moves_audio_earlier_by_label():
    from avsync.training.transfer_data import TransferTrack, sample_window

    T = 40
    vis = np.zeros((T, VIS_DIM), np.float32)
    vis[:, 0] = np.arange(T)  # frame numbers, to recover the window start
    ramp = np.arange(640 * T, dtype=np.float32)[:, None]  # a waveform track: 640 samples a frame
    tr = TransferTrack(0.0, vis, np.ones(T, np.float32), ramp, np.ones(HOPS * T, np.float32), 640)
    rng = np.random.default_rng(0)
    labels = set()
    for _ in range(30):
        v, vm, aud, am, lab = sample_window([tr], 0, rng, 30, 5, augment=False)
        labels.add(lab)
        assert aud.shape == (640 * 30, 1) and am.shape == (HOPS * 30,) and -5 <= lab <= 5
        s = int(v[0, 0])
        ok = np.repeat(am, 160) > 0
        i = int(np.argmax(ok))
        # sample i of the window is original sample 640 * (s + label) + i: the audio moved earlier
        assert aud[i, 0] == 640 * (s + lab) + i and np.all(np.diff(aud[ok, 0]) == 1)
    assert len(labels) > 5


def test_waveform_and_log_mel_are_on_the_frame_grid():
    from avsync.training.transfer_data import log_mel, waveform

    sr, T, t0 = 16000, 25, 0.3
    wave = np.zeros(sr * 2, np.float32)
    click = int(0.7 * sr)  # 0.7 s = frame 10 of a grid starting at 0.3 s
    wave[click:click + 80] = 1.0
    x, am = waveform(wave, 0.0, t0, T)
    assert x.shape == (640 * T, 1) and am.shape == (HOPS * T,) and am.all()
    assert int(np.argmax(x[:, 0])) // 640 == 10
    mel, mm = log_mel(wave, 0.0, t0, T, 32)
    assert mel.shape == (HOPS * T, 32) and mm.all()
    assert int(np.argmax(mel.sum(1))) // HOPS == 10
