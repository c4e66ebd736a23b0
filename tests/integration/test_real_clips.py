"""Every real clip in ../shared/media/{speech,event,known_offset} opens and decodes
with the frame count the container declares and an audio track as long as the
picture; a container-level audio shift (ffmpeg -itsoffset) shows up exactly in the
decoded audio timeline."""
from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import avsync
from avsync.media import AudioChunk, open_media

FOLDERS = ("speech", "event", "known_offset")
SHIFT_CLIPS = ("event/vas_drum_video_02480.mp4", "speech/syncnet_example.avi")


def _clips(shared_dir: Path) -> list[Path]:
    out = []
    for folder in FOLDERS:
        d = shared_dir / "media" / folder
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    if not out:
        pytest.skip(f"no clips under {shared_dir / 'media'}")
    return out


def _container_counts(path: Path) -> dict:
    """What the container says, from its index and packets (no decoding)."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        declared = v.frames
        nonempty = empty = 0
        audio_s = 0.0
        for pkt in c.demux(*[s for s in (v, a) if s is not None]):
            if pkt.stream is v:
                if pkt.size:
                    nonempty += 1
                else:
                    empty += 1
            elif pkt.size and pkt.duration and pkt.time_base:
                audio_s += float(pkt.duration * pkt.time_base)
    return {"declared": declared, "nonempty": nonempty, "empty": empty, "audio_s": audio_s}


def _decode(path: Path):
    frames, chunks = [], []
    with open_media(path) as src:
        info = src.info
        for item in src.decode():
            if isinstance(item, AudioChunk):
                chunks.append((item.start, item.samples.size, item.rate, item.samples))
            else:
                frames.append(item.pts)
    return info, frames, chunks


@pytest.mark.slow
def test_every_real_clip_decodes(shared_dir):
    problems = []
    for path in _clips(shared_dir):
        name = f"{path.parent.name}/{path.name}"
        try:
            info, frames, chunks = _decode(path)
        except avsync.AvsyncError as exc:  # pragma: no cover - reported below
            problems.append(f"{name}: {exc}")
            continue
        cc = _container_counts(path)
        n = len(frames)
        # the decoded frames are the container's non-empty video packets (AVI marks
        # dropped frames with empty packets; those carry no picture)
        if n != cc["nonempty"]:
            problems.append(f"{name}: decoded {n} frames, container has {cc['nonempty']} video packets")
        # (two syncnetfcn_test_offset_* AVIs declare 2 frames more than they hold)
        if cc["declared"] and abs(n - cc["declared"]) > cc["empty"] + 2:
            problems.append(f"{name}: decoded {n} frames, container declares {cc['declared']}")
        if not cc["declared"]:  # no count in the header (MPEG-PS): compare with duration x rate
            if abs(n - (info.duration_s - (info.video_start_s or 0.0)) * info.video_fps) > 3:
                problems.append(f"{name}: decoded {n} frames for {info.duration_s} s at {info.video_fps} fps")
        assert all(isinstance(t, Fraction) for t in frames)
        assert all(b > a for a, b in zip(frames, frames[1:])), f"{name}: frame times not increasing"
        vdur = float(frames[-1] - frames[0]) + 1.0 / info.video_fps
        adur = sum(c[1] for c in chunks) / chunks[0][2]
        if abs(cc["audio_s"] - vdur) <= 0.1:
            ok = abs(adur - vdur) <= 0.1
        else:  # the file itself carries more or less audio than picture: match the container
            ok = abs(adur - cc["audio_s"]) <= 0.1
        if not ok:
            problems.append(f"{name}: audio {adur:.3f} s (container {cc['audio_s']:.3f} s), video {vdur:.3f} s")
    assert not problems, "\n".join(problems)


def _audio_signal(chunks):
    start = chunks[0][0]
    return start, np.concatenate([c[3] for c in chunks])


def _envelope_lag_s(x: np.ndarray, y: np.ndarray, rate: int, max_lag_s: float = 0.5) -> float:
    """Lag (s) that best aligns y to x: y[n] ~ x[n - lag] on 5 ms RMS envelopes."""
    hop = rate // 200
    def env(s):
        m = s[: s.size // hop * hop].reshape(-1, hop)
        e = np.log10((m.astype(np.float64) ** 2).mean(1) + 1e-8)
        return e - e.mean()
    ex, ey = env(x), env(y)
    n = min(ex.size, ey.size)
    ex, ey = ex[:n], ey[:n]
    L = int(max_lag_s * 200)
    scores = [np.dot(ey[max(0, k):n + min(0, k)], ex[max(0, -k):n - max(0, k)]) /
              max(1, n - abs(k)) for k in range(-L, L + 1)]
    return (int(np.argmax(scores)) - L) / 200


@pytest.mark.parametrize("rel", SHIFT_CLIPS)
def test_container_audio_shift_is_seen(shared_dir, tmp_path, rel):
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg command line not installed")
    clip = shared_dir / "media" / rel
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    # AVI cannot store a stream start offset (the shift would be lost): remux into MKV
    out = tmp_path / f"shifted{clip.suffix if clip.suffix in ('.mp4', '.mov', '.mkv') else '.mkv'}"
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-itsoffset", "0.2", "-i", str(clip), "-i", str(clip),
           "-map", "1:v", "-map", "0:a", "-c", "copy", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    info0, frames0, chunks0 = _decode(clip)
    info1, frames1, chunks1 = _decode(out)
    # the picture keeps its timeline
    assert len(frames1) == len(frames0)
    assert float(frames1[0] - frames0[0]) == pytest.approx(0.0, abs=0.002)
    # the audio timeline starts 0.2 s later ...
    s0, x0 = _audio_signal(chunks0)
    s1, x1 = _audio_signal(chunks1)
    # (the first chunk of AAC may be the encoder's priming frame, up to 1024 samples early)
    assert 0.2 - 0.05 <= float(s1 - s0) <= 0.2 + 0.002
    assert info1.audio_start_s - (info0.audio_start_s or 0.0) == pytest.approx(0.2, abs=0.05)
    # ... and the same sound sits 0.2 s later on the decoded timeline
    n = min(x0.size, x1.size)
    shift = float(s1 - s0) + _envelope_lag_s(x0[:n], x1[:n], 16000)
    assert shift == pytest.approx(0.2, abs=0.006)
