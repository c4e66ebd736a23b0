"""Every audio track: a file with two audio streams (the second one's audio 200 ms early) is
measured track by track (``--audio-stream N|all``), and ``fix`` corrects the track it is given."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import avsync
from avsync.cli.main import main
from avsync.errors import CannotOpen
from avsync.options import DetectOptions

FRAME_MS = 40.0


@pytest.fixture(scope="module")
def two_tracks(speech_clip, tmp_path_factory):
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg command line not installed (used only to make the two-track file)")
    out = tmp_path_factory.mktemp("tracks") / "dub.mkv"
    # track 0: the clip's own audio; track 1: the same audio 200 ms early (it leads by 200 ms more)
    subprocess.run([exe, "-nostdin", "-v", "error", "-y", "-i", str(speech_clip), "-filter_complex",
                    "[0:a]asplit=2[a0][x];[x]atrim=start=0.2,asetpts=PTS-STARTPTS[a1]",
                    "-map", "0:v", "-map", "[a0]", "-map", "[a1]", "-c:v", "copy", "-c:a", "pcm_s16le", str(out)],
                   check=True)
    return out


def test_all_tracks_give_one_result_each(two_tracks, capsys):
    assert main(["detect", str(two_tracks), "--audio-stream", "all", "--json", "--no-progress"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["audio_stream"] for d in docs] == [0, 1] and all(d["audio_tracks"] == 2 for d in docs)
    base = avsync.detect(two_tracks).offset_ms
    assert docs[0]["offset_ms"] == pytest.approx(base, abs=0.01)
    assert docs[1]["offset_ms"] - docs[0]["offset_ms"] == pytest.approx(200.0, abs=FRAME_MS)


def test_text_names_the_track(two_tracks, capsys):
    assert main(["detect", str(two_tracks), "--audio-stream", "1", "--no-progress"]) == 0
    assert "track 1 of 2" in capsys.readouterr().out


def test_a_missing_track_is_a_one_line_error(two_tracks, capsys):
    with pytest.raises(CannotOpen, match="no audio track 5"):
        avsync.detect(two_tracks, DetectOptions(audio_stream=5))
    assert main(["detect", str(two_tracks), "--audio-stream", "5", "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "no audio track 5 (the file has 2" in err and "Traceback" not in err


def test_fix_corrects_the_track_it_is_given(two_tracks, tmp_path, capsys):
    ref = avsync.detect(two_tracks).offset_ms
    out = tmp_path / "fixed.mkv"
    assert main(["fix", str(two_tracks), str(out), "--audio-stream", "1", "--mode", "shift", "--json",
                 "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["after"]["audio_stream"] == 1
    assert res["after"]["offset_ms"] == pytest.approx(0.0, abs=FRAME_MS)
    # the other track is copied unchanged
    assert avsync.detect(out).offset_ms == pytest.approx(ref, abs=2.0)
