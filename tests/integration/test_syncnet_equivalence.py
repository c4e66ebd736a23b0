"""SyncNet v2 equivalence of the lossless path: the package (``--syncnet-frames lossless``)
against an independent, straight-line implementation of the reference procedure written here
from the spec (shared/spec/syncnet-v2.md).  Nothing below imports avsync code except to run the
package itself (the command line / API) and to write the weights file.

The reference side: ffmpeg extracts 25-fps BGR pictures and 16-kHz int16 PCM (as the
reference's ffmpeg calls do, without the JPEG round trip), its own MFCC with plain
loops, its own network as functional calls on the loaded state dict, its own
windows, shifts, curve, offset, confidence and frame-wise confidence.

What this shows: the network, MFCC, windows and scoring agree with this repository's reading of
the procedure, to 1e-4, on other random weights and a lossless re-encode.  It cannot show that the
reading is the public code's: ``test_syncnet_reference.py`` does that, against the public code's
own outputs, JPEG round trip included (the default ``--syncnet-frames jpeg``).
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

REPO_SRC = str(__import__("pathlib").Path(__file__).resolve().parents[2] / "src")


# -- fixed random weights in the syncnet_v2 format ------------------------------------------------
def make_random_weights(path, seed: int = 20161121) -> dict:
    """The package's model with fixed random parameters (BatchNorm affine randomised,
    realistic running statistics), written as the public file is: a plain state dict."""
    from avsync.nn.syncnet_v2 import SyncNetV2, save_weights

    g = torch.Generator().manual_seed(seed)
    m = SyncNetV2()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.05)
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                c = mod.weight.shape[0]
                mod.weight.copy_(0.5 + torch.rand(c, generator=g))
                mod.bias.copy_(torch.randn(c, generator=g) * 0.2)
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                mod.running_var.copy_(0.3 + 2.0 * torch.rand(c, generator=g))
                mod.num_batches_tracked.fill_(100000)
    # the first layers see raw 0-255 pixels / MFCCs: running statistics of that size
    with torch.no_grad():
        m.netcnnlip[1].running_mean.mul_(200.0)
        m.netcnnlip[1].running_var.mul_(2000.0)
        m.netcnnaud[1].running_mean.mul_(10.0)
        m.netcnnaud[1].running_var.mul_(100.0)
    save_weights(m, path)
    return {k: v.clone() for k, v in m.state_dict().items()}


# -- the reference procedure, written out ---------------------------------------------------------
def ref_decode(path):
    """25-fps BGR pictures and 16-kHz mono int16 samples, through the ffmpeg command line."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True).stdout.split(",")
    w, h = int(probe[0]), int(probe[1])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-r", "25", "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", "16000",
                          "-f", "s16le", "-acodec", "pcm_s16le", "-"], capture_output=True, check=True).stdout
    return frames, np.frombuffer(pcm, np.int16)


def ref_mfcc(signal):
    """python_speech_features.mfcc(signal, 16000) defaults, with loops."""
    rate, flen, fstep, nfft, nfilt, ncep, lifter = 16000, 400, 160, 512, 26, 13, 22
    sig = [float(v) for v in signal]
    emph = [sig[0]] + [sig[i] - 0.97 * sig[i - 1] for i in range(1, len(sig))]
    if len(emph) <= flen:
        nframes = 1
    else:
        nframes = 1 + int(math.ceil((len(emph) - flen) / fstep))
    emph += [0.0] * ((nframes - 1) * fstep + flen - len(emph))

    def mel(hz):
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    top = mel(rate / 2)
    points = [top * i / (nfilt + 1) for i in range(nfilt + 2)]
    bins = [math.floor((nfft + 1) * hz(p) / rate) for p in points]
    bank = [[0.0] * (nfft // 2 + 1) for _ in range(nfilt)]
    for j in range(nfilt):
        for i in range(bins[j], bins[j + 1]):
            bank[j][i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(bins[j + 1], bins[j + 2]):
            bank[j][i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    bank = np.array(bank)
    dct = np.zeros((ncep, nfilt))
    for k in range(ncep):
        for n in range(nfilt):
            scale = math.sqrt(1.0 / nfilt) if k == 0 else math.sqrt(2.0 / nfilt)
            dct[k, n] = scale * math.cos(math.pi * k * (2 * n + 1) / (2 * nfilt))
    lift = [1 + (lifter / 2.0) * math.sin(math.pi * k / lifter) for k in range(ncep)]
    out = np.zeros((nframes, ncep))
    eps = np.finfo(float).eps
    for f in range(nframes):
        frame = np.array(emph[f * fstep:f * fstep + flen])
        spec = np.fft.rfft(frame, nfft)
        power = (spec.real ** 2 + spec.imag ** 2) / nfft
        energy = power.sum()
        energy = eps if energy == 0 else energy
        logs = []
        for j in range(nfilt):
            e = float(bank[j] @ power)
            logs.append(math.log(e if e != 0 else eps))
        for k in range(ncep):
            out[f, k] = sum(dct[k, j] * logs[j] for j in range(nfilt)) * lift[k]
        out[f, 0] = math.log(energy)
    return out


def _bn(x, sd, key):
    return F.batch_norm(x, sd[key + ".running_mean"], sd[key + ".running_var"], sd[key + ".weight"],
                        sd[key + ".bias"], training=False, eps=1e-5)


def ref_audio_net(x, sd):
    p = "netcnnaud."
    x = F.relu(_bn(F.conv2d(x, sd[p + "0.weight"], sd[p + "0.bias"], padding=1), sd, p + "1"))
    x = F.max_pool2d(x, (1, 1), (1, 1))
    x = F.relu(_bn(F.conv2d(x, sd[p + "4.weight"], sd[p + "4.bias"], padding=1), sd, p + "5"))
    x = F.max_pool2d(x, (3, 3), (1, 2))
    for c, b in ((8, 9), (11, 12), (14, 15)):
        x = F.relu(_bn(F.conv2d(x, sd[f"{p}{c}.weight"], sd[f"{p}{c}.bias"], padding=1), sd, f"{p}{b}"))
    x = F.max_pool2d(x, (3, 3), (2, 2))
    x = F.relu(_bn(F.conv2d(x, sd[p + "18.weight"], sd[p + "18.bias"]), sd, p + "19"))
    return ref_head(x.reshape(x.shape[0], -1), sd, "netfcaud.")


def ref_lip_net(x, sd):
    p = "netcnnlip."
    x = F.relu(_bn(F.conv3d(x, sd[p + "0.weight"], sd[p + "0.bias"], stride=(1, 2, 2)), sd, p + "1"))
    x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2))
    x = F.relu(_bn(F.conv3d(x, sd[p + "4.weight"], sd[p + "4.bias"], stride=(1, 2, 2), padding=(0, 1, 1)),
                   sd, p + "5"))
    x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2), padding=(0, 1, 1))
    for c, b in ((8, 9), (11, 12), (14, 15)):
        x = F.relu(_bn(F.conv3d(x, sd[f"{p}{c}.weight"], sd[f"{p}{c}.bias"], padding=(0, 1, 1)), sd, f"{p}{b}"))
    x = F.max_pool3d(x, (1, 3, 3), (1, 2, 2))
    x = F.relu(_bn(F.conv3d(x, sd[p + "18.weight"], sd[p + "18.bias"]), sd, p + "19"))
    return ref_head(x.reshape(x.shape[0], -1), sd, "netfclip.")


def ref_head(x, sd, p):
    x = F.linear(x, sd[p + "0.weight"], sd[p + "0.bias"])
    x = F.relu(_bn(x, sd, p + "1"))
    return F.linear(x, sd[p + "3.weight"], sd[p + "3.bias"])


def ref_median_filter9(x):
    """scipy.signal.medfilt(x, 9): zero padding at both ends."""
    out = []
    for i in range(len(x)):
        win = [x[j] if 0 <= j < len(x) else 0.0 for j in range(i - 4, i + 5)]
        out.append(sorted(win)[4])
    return np.array(out)


def reference_score(path, weights_file):
    sd = {k: v.float() for k, v in torch.load(weights_file, map_location="cpu", weights_only=True).items()}
    frames, audio = ref_decode(path)
    cc = ref_mfcc(audio).T  # (13, steps)
    im = torch.from_numpy(np.transpose(frames[None], (0, 4, 1, 2, 3)).astype(np.float32))  # [1,3,T,H,W]
    cct = torch.from_numpy(cc[None, None].astype(np.float32))
    n = min(len(frames), len(audio) // 640) - 5
    lip, aud = [], []
    with torch.no_grad():
        for i in range(0, n, 20):
            idx = range(i, min(n, i + 20))
            lip.append(ref_lip_net(torch.cat([im[:, :, k:k + 5] for k in idx], 0), sd))
            aud.append(ref_audio_net(torch.cat([cct[:, :, :, 4 * k:4 * k + 20] for k in idx], 0), sd))
    lip = torch.cat(lip).double().numpy()
    aud = torch.cat(aud).double().numpy()
    vshift = 15
    padded = np.concatenate([np.zeros((vshift, aud.shape[1])), aud, np.zeros((vshift, aud.shape[1]))])
    dists = []
    for i in range(n):
        row = []
        for s in range(2 * vshift + 1):
            d = lip[i] - padded[i + s] + 1e-6  # torch pairwise_distance's eps
            row.append(math.sqrt(float(d @ d)))
        dists.append(row)
    dists = np.array(dists)
    curve = [sum(dists[i][s] for i in range(n)) / n for s in range(2 * vshift + 1)]
    idx = min(range(len(curve)), key=lambda j: curve[j])
    med = sorted(curve)[len(curve) // 2]
    fconf = [med - dists[i][idx] for i in range(n)]
    return {"curve": np.array(curve), "offset": vshift - idx, "min_dist": curve[idx], "conf": med - curve[idx],
            "fconf": ref_median_filter9(fconf), "windows": n}


# -- the comparison ---------------------------------------------------------------------------------
def _package(path, weights, extra=()):
    cmd = [sys.executable, "-m", "avsync", "detect", str(path), "--method", "syncnet", "--weights", str(weights),
           "--crop", "none", "--syncnet-frames", "lossless", "--json", *extra]
    env = dict(__import__("os").environ, PYTHONPATH=REPO_SRC)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _compare(doc, ref, tol=1e-4):
    curve = np.array(doc["profile"]["value"])
    assert doc["profile"]["kind"] == "distance" and curve.size == 31
    rel = np.abs(curve - ref["curve"]) / np.abs(ref["curve"])
    assert rel.max() < tol, (rel.max(), curve, ref["curve"])
    if tol > 1e-4:  # a reduced-precision mode: the curve and the offset, not every digit
        assert doc["syncnet"]["offset_frames_25fps"] == ref["offset"]
        return
    # the curve must not be flat, or the comparison of offsets would say nothing
    assert ref["curve"].max() - ref["curve"].min() > 1e-3 * ref["curve"].mean()
    sync = doc["syncnet"]
    assert sync["offset_frames_25fps"] == ref["offset"]
    assert doc["offset_ms"] == pytest.approx(ref["offset"] * 40.0)
    assert doc["lse_d"] == pytest.approx(ref["min_dist"], rel=1e-4)
    scale = ref["curve"].mean()
    assert abs(doc["lse_c"] - ref["conf"]) < 1e-4 * scale
    fconf = np.array(sync["framewise_confidence"])
    assert fconf.size == ref["windows"] == ref["fconf"].size
    assert np.abs(fconf - ref["fconf"]).max() < 1e-4 * scale + 1e-4


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    make_random_weights(path)
    return path


def _need_ffmpeg():
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("the reference side needs the ffmpeg command line")


def test_mfcc_reference_loops_match_package(shared_dir):
    """The package's vectorised MFCC against the loop version above (and python_speech_features when
    installed) on the example clip's first second."""
    from avsync.estimators.syncnet.mfcc import mfcc

    _need_ffmpeg()
    _, audio = ref_decode(shared_dir / "media/speech/syncnet_example.avi")
    x = audio[:16000]
    a = mfcc(x, 16000)
    b = ref_mfcc(x)
    assert a.shape == b.shape == (99, 13)
    assert np.abs(a - b).max() < 1e-5 * max(1.0, np.abs(b).max())
    try:
        import python_speech_features as psf
    except ImportError:
        return
    c = psf.mfcc(x, 16000)
    assert np.abs(a - c).max() < 1e-5


@pytest.fixture(scope="module")
def first3s(shared_dir, weights, tmp_path_factory):
    """The first 3 s of syncnet_example.avi (frames losslessly re-encoded, PCM copied) and the
    reference procedure's numbers for it."""
    _need_ffmpeg()
    clip = tmp_path_factory.mktemp("first3s") / "first3s.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(shared_dir / "media/speech/syncnet_example.avi"), "-t", "3",
                    "-c:v", "ffv1", "-c:a", "pcm_s16le", str(clip)], check=True)
    ref = reference_score(clip, weights)
    assert ref["windows"] == 70
    return clip, ref


def test_equivalence_first_3s(first3s, weights):
    clip, ref = first3s
    _compare(_package(clip, weights), ref)


def test_onnx_runtime_equivalence_first_3s(first3s, weights):
    """The ONNX Runtime path (fp32) reproduces the reference as the exact mode does."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    clip, ref = first3s
    _compare(_package(clip, weights, ("--precision", "onnx")), ref)


@pytest.mark.slow
def test_equivalence_whole_example(shared_dir, weights):
    _need_ffmpeg()
    clip = shared_dir / "media/speech/syncnet_example.avi"
    ref = reference_score(clip, weights)
    assert ref["windows"] == 312
    _compare(_package(clip, weights), ref)

