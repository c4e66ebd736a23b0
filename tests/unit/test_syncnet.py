"""SyncNet v2: the weights file (strict keys and shapes, both torch formats), the
equivalent fast lip stream, the scoring arithmetic and sign, 25-fps decoding, the
command line (missing weights, CSV), and that the default path never imports torch."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avsync.cli.main import main  # noqa: E402
from avsync.media.synth import make_clip  # noqa: E402
from avsync.nn.syncnet_v2 import (N_PARAMETERS, FastLip, WeightsError, load_model,  # noqa: E402
                                      save_weights)
from avsync.estimators.syncnet.prep import windows_count  # noqa: E402
from avsync.estimators.syncnet.score import score_from_embeddings  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def model(random_syncnet):
    return random_syncnet(7)


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    p = tmp_path_factory.mktemp("w") / "syncnet_v2.model"
    save_weights(model, p)
    return p


def test_architecture_matches_spec(model):
    assert sum(p.numel() for p in model.parameters()) == N_PARAMETERS == 13_631_616
    sd = model.state_dict()
    assert tuple(sd["netcnnaud.0.weight"].shape) == (64, 1, 3, 3)
    assert tuple(sd["netcnnaud.18.weight"].shape) == (512, 256, 5, 4)
    assert tuple(sd["netcnnlip.0.weight"].shape) == (96, 3, 5, 7, 7)
    assert tuple(sd["netcnnlip.18.weight"].shape) == (512, 256, 1, 6, 6)
    assert tuple(sd["netfclip.3.weight"].shape) == (1024, 512)
    assert "netcnnlip.19.num_batches_tracked" in sd
    with torch.inference_mode():
        assert model.forward_aud(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
        assert model.forward_lip(torch.zeros(1, 3, 5, 224, 224)).shape == (1, 1024)


@pytest.mark.parametrize("legacy", [False, True])
def test_save_load_roundtrip_both_formats(model, tmp_path, legacy):
    import zipfile

    p = tmp_path / "w.model"
    save_weights(model, p, legacy=legacy)
    assert zipfile.is_zipfile(p) is (not legacy)
    raw = torch.load(p, map_location="cpu", weights_only=True)
    assert isinstance(raw, dict) and set(raw) == set(model.state_dict())  # a plain state dict, no prefix
    m2 = load_model(p)
    x = torch.rand(1, 1, 13, 20) * 10
    with torch.inference_mode():
        assert torch.equal(model.forward_aud(x), m2.forward_aud(x))


def _broken(weights, tmp_path, edit):
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    edit(sd)
    p = tmp_path / "broken.model"
    torch.save(sd, p)
    return p


def test_one_wrong_key_is_refused_by_name(weights, tmp_path):
    def rename(sd):
        sd["netcnnlip.9.wieght"] = sd.pop("netcnnlip.9.weight")

    p = _broken(weights, tmp_path, rename)
    with pytest.raises(WeightsError) as e:
        load_model(p)
    msg = str(e.value)
    assert "netcnnlip.9.weight" in msg and "\n" not in msg


def test_one_wrong_shape_is_refused_by_name(weights, tmp_path):
    def reshape(sd):
        sd["netfcaud.3.weight"] = torch.zeros(1000, 512)

    p = _broken(weights, tmp_path, reshape)
    with pytest.raises(WeightsError, match=r"netfcaud\.3\.weight.*\(1000, 512\).*\(1024, 512\)"):
        load_model(p)


def test_extra_key_and_not_a_weights_file(weights, tmp_path):
    p = _broken(weights, tmp_path, lambda sd: sd.__setitem__("module.extra", torch.zeros(1)))
    with pytest.raises(WeightsError, match="module.extra"):
        load_model(p)
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a torch file at all" * 10)
    with pytest.raises(WeightsError, match="not a torch weights file"):
        load_model(junk)


def test_cli_wrong_key_one_line_exit_2(weights, tmp_path, capsys):
    p = _broken(weights, tmp_path, lambda sd: sd.pop("netcnnaud.5.running_var"))
    clip = tmp_path / "c.mp4"
    make_clip(clip, duration_s=1.0, width=64, height=64, audio_rate=16000)
    rc = main(["detect", str(clip), "--method", "syncnet", "--weights", str(p)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "netcnnaud.5.running_var" in lines[0] and "Traceback" not in err


def test_cli_without_weights_says_where(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AVSYNC_SYNCNET_WEIGHTS", raising=False)
    clip = tmp_path / "c.mp4"
    make_clip(clip, duration_s=1.0, width=64, height=64, audio_rate=16000)
    rc = main(["detect", str(clip), "--method", "syncnet", "--json"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--weights" in lines[0] and "AVSYNC_SYNCNET_WEIGHTS" in lines[0]
    monkeypatch.setenv("AVSYNC_SYNCNET_WEIGHTS", str(tmp_path / "nowhere.model"))
    rc = main(["detect", str(clip), "--method", "syncnet"])
    out, err = capsys.readouterr()
    assert rc == 2 and "nowhere.model" in err and len(err.strip().splitlines()) == 1


def test_fast_lip_equals_reference_layers(model):
    x = torch.rand(3, 3, 5, 224, 224) * 255
    with torch.inference_mode():
        ref = model.forward_lip(x)
        fast = FastLip(model)(x)
        bf16 = FastLip(model, torch.bfloat16)(x)
    rel = ((fast - ref).norm() / ref.norm()).item()
    assert rel < 1e-5
    assert ((bf16 - ref).norm() / ref.norm()).item() < 0.03


def test_score_sign_and_numbers():
    rng = np.random.default_rng(0)
    n = 60
    video = rng.standard_normal((n + 10, 1024))
    lip = video[:n]
    # audio window j carries what the picture shows 3 windows later: the sound comes first
    aud = video[3:n + 3] + 0.01 * rng.standard_normal((n, 1024))
    s = score_from_embeddings(lip, aud)
    assert s.offset == -3 or s.offset == 3
    assert s.offset == 3  # audio leads: positive, the contract's and the reference's sign
    assert s.curve.shape == (31,) and int(np.argmin(s.curve)) == 12
    assert s.min_dist == pytest.approx(s.curve.min())
    assert s.confidence == pytest.approx(np.median(s.curve) - s.curve.min())
    assert s.framewise_conf.shape == (n,)
    assert windows_count(317, 202880) == 312


def _decode25(clip):
    from avsync.media import open_media
    from avsync.estimators.syncnet.prep import Timeline25

    with open_media(clip) as src:
        tl = Timeline25(src, colour=True)
        frames = [(k, img) for k, img in tl]
        return frames, tl.audio()


def test_timeline25_resamples_and_aligns(tmp_path):
    a, b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    make_clip(a, duration_s=2.0, fps=30, width=64, height=48, audio_rate=16000, audio_codec="pcm_s16le")
    make_clip(b, duration_s=2.0, fps=30, width=64, height=48, audio_rate=16000, audio_codec="pcm_s16le",
              audio_start_s=0.2)
    frames, audio_a = _decode25(a)
    _, audio_b = _decode25(b)
    assert [k for k, _ in frames] == list(range(len(frames)))
    assert abs(len(frames) - 50) <= 1  # 2 s at 30 fps -> 50 frames at 25 fps
    assert frames[0][1].shape == (48, 64, 3) and frames[0][1].dtype == np.uint8
    assert audio_a.dtype == audio_b.dtype == np.int16
    first_a = int(np.argmax(np.abs(audio_a) > 0))
    first_b = int(np.argmax(np.abs(audio_b) > 0))
    # the second clip's audio stream starts 0.2 s (3200 samples) after its first picture
    assert abs((first_b - first_a) - 3200) <= 2
    n = min(audio_a.size - first_a, audio_b.size - first_b, 8000)
    assert np.array_equal(audio_a[first_a:first_a + n], audio_b[first_b:first_b + n])


def test_cli_syncnet_json_lines_and_csv(weights, tmp_path, capsys):
    clips = []
    for i in range(2):
        c = tmp_path / f"clip{i}.mp4"
        make_clip(c, duration_s=1.2, width=96, height=96, audio_rate=16000, seed=i)
        clips.append(str(c))
    out_csv = tmp_path / "res.csv"
    rc = main(["detect", *clips, "--method", "syncnet", "--weights", str(weights), "--crop", "none", "--json",
               "--csv", str(out_csv), "--debug-dir", str(tmp_path / "dbg")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    docs = [json.loads(line) for line in out.strip().splitlines()]
    assert len(docs) == 2
    for d in docs:
        assert d["method"] == "syncnet" and d["profile"]["kind"] == "distance" and len(d["profile"]["value"]) == 31
        assert d["lse_d"] == pytest.approx(min(d["profile"]["value"]), abs=1e-4)
        assert d["lse_c"] >= 0 and d["offset_ms"] == pytest.approx(40.0 * d["syncnet"]["offset_frames_25fps"])
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["file"] for r in rows] == clips
    assert float(rows[0]["lse_d"]) == pytest.approx(docs[0]["lse_d"])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    pngs = os.listdir(tmp_path / "dbg")
    assert sorted(pngs) == ["clip0.syncnet.png", "clip1.syncnet.png"]
    # the human-readable output carries the same LSE-D / LSE-C and states the reference's convention
    rc = main(["detect", clips[0], "--method", "syncnet", "--weights", str(weights), "--crop", "none"])
    text, err = capsys.readouterr()
    assert rc in (0, 1), err
    d = docs[0]
    assert f"LSE-D     {d['lse_d']:.4f}   LSE-C {d['lse_c']:.4f}" in text
    assert f"AV offset {d['syncnet']['offset_frames_25fps']:+d} frames: the reference's convention" in text
    assert "frames at 25 fps, + = audio leads" in text and "pictures jpeg" in text


def test_rows_carry_lse_without_the_report(weights, tmp_path):
    """Batch rows (JSON Lines, with or without the embedded report) and CSV cells: syncnet's numbers."""
    from avsync.api import DetectOptions, detect
    from avsync.report import ROW_FIELDS, csv_cells, result_row

    c = tmp_path / "clip.mp4"
    make_clip(c, duration_s=1.2, width=96, height=96, audio_rate=16000, seed=5)
    rep = detect(str(c), DetectOptions(method="syncnet", weights=str(weights), crop="none"))
    d = rep.to_dict()
    row = result_row(str(c), rep, with_report=False)
    assert (row["lse_d"], row["lse_c"], row["offset_frames_25fps"]) == \
        (d["lse_d"], d["lse_c"], d["syncnet"]["offset_frames_25fps"])
    cells = csv_cells(row)
    assert set(cells) == set(ROW_FIELDS) and cells["lse_d"] == d["lse_d"] and cells["lse_c"] == d["lse_c"]
    plain = result_row(str(c), detect(str(c), DetectOptions(method="motion")), with_report=False)
    assert "lse_d" not in plain and csv_cells(plain)["lse_d"] == ""


def test_default_detect_does_not_import_torch(tmp_path):
    clip = tmp_path / "c.mp4"
    make_clip(clip, duration_s=3.0, width=96, height=72)
    code = ("import sys, io, contextlib\n"
            "from avsync.cli.main import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            f"    rc = main(['detect', {str(clip)!r}, '--json'])\n"
            "assert rc == 0, rc\n"
            "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "print('HEAVY', len(heavy))\n")
    env = dict(os.environ, PYTHONPATH=SRC)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("HEAVY 0"), p.stdout
