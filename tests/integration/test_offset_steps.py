"""Acceptance of issue 13 on a real talking head: a file whose audio steps by -390 ms after
25 s, one with two steps, one with a 1000/1001 conform drift (made with the ffmpeg command line
from SyncNet's example clip, looped to 50 s) and a file with two audio tracks.  The segments'
boundaries must be within 2 s and their offsets within one frame of the truth, and ``fix`` must
bring every segment within one frame (re-measured)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import avsync
from avsync.cli.main import main

FRAME_MS = 40.0  # 25 fps


def ffmpeg(*args):
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg command line not installed (used only to make the faulty test files)")
    subprocess.run([exe, "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def made(speech_clip, tmp_path_factory):
    """The 50-s base clip and its faulty copies; the base's own offset is the reference (the
    example clip itself is not exactly in sync)."""
    d = tmp_path_factory.mktemp("steps")
    base = d / "base.mkv"
    # loop the 12.7-s clip, starting 6 s in, so no loop seam sits at a step
    ffmpeg("-stream_loop", 4, "-i", speech_clip, "-ss", 6, "-t", 50, "-c:v", "libx264", "-preset", "veryfast",
           "-crf", 18, "-g", 25, "-c:a", "pcm_s16le", base)

    def audio_graph(graph, name):
        ffmpeg("-i", base, "-filter_complex", graph, "-map", "0:v", "-map", "[a]", "-c:v", "copy", "-c:a",
               "pcm_s16le", d / name)
        return d / name

    files = {
        "base": base,
        # in sync until 25 s, then the audio 390 ms late: output t >= 25 s plays the input's t - 0.39
        "step": audio_graph("[0:a]atrim=0:25,asetpts=PTS-STARTPTS[a0];[0:a]atrim=start=24.61,asetpts=PTS-STARTPTS[a1];"
                            "[a0][a1]concat=n=2:v=0:a=1[a]", "step.mkv"),
        # -300 ms from 17 s, +200 ms from 34 s
        "two": audio_graph("[0:a]atrim=0:17,asetpts=PTS-STARTPTS[a0];[0:a]atrim=start=16.7:end=33.7,asetpts=PTS-STARTPTS[a1];"
                           "[0:a]atrim=start=34.2,asetpts=PTS-STARTPTS[a2];[a0][a1][a2]concat=n=3:v=0:a=1[a]", "two.mkv"),
        # the audio played at 1000/1001 of its speed: it falls behind by 60 ms per minute
        "drift": audio_graph("[0:a]atempo=1000/1001[a]", "drift.mkv"),
    }
    ref = avsync.detect(base)
    assert ref.several_offsets is False and ref.confidence > 0.5
    return files, float(ref.offset_ms), d


def check_segments(report, truth, ref):
    """``truth``: [(start, end, shift)] against the base's offset ``ref``."""
    segs = report.segments
    assert len(segs) == len(truth), [g.to_dict() for g in segs]
    for g, (s0, s1, shift) in zip(segs, truth):
        assert g.offset_ms == pytest.approx(ref + shift, abs=FRAME_MS)
    for c, (s0, _, _) in zip(report.changes, truth[1:]):
        assert c.time_s == pytest.approx(s0, abs=2.0)


def test_one_step(made):
    files, ref, _ = made
    rep = avsync.detect(files["step"])
    assert rep.several_offsets and rep.offset_model == "steps" and rep.verdict == "out_of_sync"
    check_segments(rep, [(0, 25, 0.0), (25, 50, -390.0)], ref)
    d = json.loads(rep.to_json())
    assert d["several_offsets"] is True and len(d["changes"]) == 1


def test_two_steps(made):
    files, ref, _ = made
    rep = avsync.detect(files["two"])
    check_segments(rep, [(0, 17, 0.0), (17, 34, -300.0), (34, 50, 200.0)], ref)


def test_conform_drift_is_named(made):
    files, ref, _ = made
    rep = avsync.detect(files["drift"])
    assert rep.offset_model == "drift" and not rep.several_offsets
    assert rep.drift.conform is not None and rep.drift.conform["name"] == "1000/1001"
    assert rep.drift.ms_per_min == pytest.approx(-59.94, abs=12.0)


@pytest.mark.parametrize("name", ["step", "two"])
def test_fix_brings_every_segment_within_a_frame(made, name, capsys):
    files, ref, d = made
    out = d / f"{name}.fixed.mkv"
    assert main(["fix", str(files[name]), str(out), "--json", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mode"] == "segments" and len(res["segments"]) >= 2
    for g in res["segments"]:
        # every segment in sync within one frame, re-measured on the written file
        assert g["after_ms"] == pytest.approx(0.0, abs=FRAME_MS), g
    assert res["after"]["several_offsets"] is False
    assert res["after"]["offset_ms"] == pytest.approx(0.0, abs=FRAME_MS)


def test_fix_undoes_the_conform(made, capsys):
    files, ref, d = made
    out = d / "drift.fixed.mp4"
    assert main(["fix", str(files["drift"]), str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "conform 1000/1001" in text
    after = avsync.detect(out)
    assert after.offset_model != "drift" or abs(after.drift.ms_per_min) < 15.0
    assert after.offset_ms == pytest.approx(0.0, abs=FRAME_MS)  # the whole offset removed too
