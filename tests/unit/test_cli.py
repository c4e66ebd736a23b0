"""The ``avsync`` command line: exit codes, one-line errors, JSON on stdout, plots."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from avsync.cli.main import build_parser, main, plot_paths
from avsync.progress import ProgressBar

CONTRACT_FIELDS = ["schema", "media", "method", "offset_ms", "offset_frames", "confidence", "verdict",
                   "tolerance", "windows", "drift", "profile", "fix"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, path) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"avsync: {path}: "), lines[0]
    return lines[0]


@pytest.fixture
def text_as_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    return p


@pytest.fixture
def empty_mp4(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    return p


# -- usage and errors (no media needed) ---------------------------------------------------------
def test_version(capsys):
    from avsync import __version__

    rc, out, _ = run(capsys, "--version")
    assert rc == 0
    assert out.strip() == f"avsync {__version__}"


def test_no_command_is_usage_error(capsys):
    rc, out, err = run(capsys)
    assert rc == 2 and out == ""


def test_nonexistent_file(capsys, tmp_path):
    missing = tmp_path / "missing.mp4"
    rc, out, err = run(capsys, "detect", missing)
    assert rc == 3
    assert out == ""
    assert "no such file" in one_line_error(err, missing)


def test_text_file_renamed_mp4(capsys, text_as_mp4):
    rc, out, err = run(capsys, "detect", "--json", text_as_mp4)
    assert rc == 3 and json.loads(out)["status"] == "error"  # --json: an error document, nothing else
    one_line_error(err, text_as_mp4)


def test_empty_file(capsys, empty_mp4):
    rc, out, err = run(capsys, "detect", empty_mp4)
    assert rc == 3 and out == ""
    assert "empty" in one_line_error(err, empty_mp4)


def test_directory_is_not_media(capsys, tmp_path):
    rc, _, err = run(capsys, "detect", tmp_path)
    assert rc == 3
    one_line_error(err, tmp_path)


def test_every_bad_input_reported_once(capsys, tmp_path, text_as_mp4, empty_mp4):
    missing = tmp_path / "missing.mkv"
    rc, out, err = run(capsys, "detect", missing, text_as_mp4, empty_mp4)
    assert rc == 3 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in err
    assert [str(p) in ln for p, ln in zip((missing, text_as_mp4, empty_mp4), lines)] == [True] * 3


def test_bad_tolerance_is_usage_error(capsys, tmp_path):
    rc, out, err = run(capsys, "detect", "--tolerance", "strict", tmp_path / "x.mp4")
    assert rc == 2 and out == ""
    assert "tolerance" in err and "Traceback" not in err


def test_unknown_method_is_usage_error(capsys, text_as_mp4):
    rc, out, err = run(capsys, "detect", "--method", "telepathy", text_as_mp4)
    assert rc == 2 and out == ""
    assert "telepathy" in err and "Traceback" not in err


@pytest.mark.parametrize("opt,val", [("--max-lag-ms", "-5"), ("--window-s", "0"), ("--hop-s", "abc")])
def test_bad_numbers_are_usage_errors(capsys, text_as_mp4, opt, val):
    rc, out, _ = run(capsys, "detect", opt, val, text_as_mp4)
    assert rc == 2 and out == ""


def test_missing_weights_file_is_usage_error(capsys, text_as_mp4, tmp_path):
    rc, _, err = run(capsys, "detect", "--weights", tmp_path / "nope.pt", text_as_mp4)
    assert rc == 2 and "nope.pt" in err


def test_fix_same_input_and_output_is_usage_error(capsys, text_as_mp4):
    rc, _, err = run(capsys, "fix", text_as_mp4, text_as_mp4, "--offset-ms", "40")
    assert rc == 2 and "differ" in err


def test_fix_unreadable_input(capsys, text_as_mp4, tmp_path):
    out_file = tmp_path / "out.mkv"
    rc, out, err = run(capsys, "fix", text_as_mp4, out_file, "--offset-ms", "40")
    assert rc == 3 and out == ""
    one_line_error(err, text_as_mp4)
    assert not out_file.exists()
    assert sorted(os.listdir(tmp_path)) == ["notes.mp4"]  # no half-written leftovers


def test_subcommands_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"detect", "fix", "sample", "bench"} <= set(sub.choices)


def test_python_dash_m_no_traceback(tmp_path):
    missing = tmp_path / "missing.mp4"
    p = subprocess.run([sys.executable, "-m", "avsync", "detect", "--json", str(missing)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3
    assert json.loads(p.stdout) == {"schema": "avsync.error/1", "input": str(missing), "media": {"path": str(missing)},
                                    "status": "error", "error": f"{missing}: no such file", "exit_code": 3,
                                    "verdict": None, "offset_ms": None}
    assert p.stderr.strip() == f"avsync: {missing}: no such file"


# -- helpers -----------------------------------------------------------------------------------
def test_plot_paths_insert_the_stem():
    assert plot_paths("out.png", ["/a/clip.mp4"]) == ["out.png"]
    assert plot_paths("plots/t.png", ["/a/one.mp4", "/b/two.avi"]) == ["plots/t_one.png", "plots/t_two.png"]
    names = plot_paths("t.png", ["/a/x.mp4", "/b/x.mp4"])
    assert len(set(names)) == 2


def test_progress_bar_only_for_long_media():
    s = io.StringIO()
    bar = ProgressBar("clip", True, stream=s)
    bar("decode", 1.0, 10.0)
    bar("windows", 1, 5)
    bar.close()
    assert s.getvalue() == ""  # short media: silent
    s = io.StringIO()
    bar = ProgressBar("clip", True, stream=s)
    bar("decode", 30.0, 60.0)
    bar("decode", 60.0, 60.0)
    bar.close()
    assert "100.0%" in s.getvalue() and s.getvalue().endswith("\n")
    s = io.StringIO()
    bar = ProgressBar("clip", False, stream=s)
    bar("decode", 60.0, 60.0)
    assert s.getvalue() == ""


def test_progress_renderers_share_the_protocol():
    from avsync.progress import CountLine

    s = io.StringIO()
    bar = ProgressBar("batch", True, stream=s, min_duration_s=None, counts=True)  # no 'decode' gate
    bar("files", 0, 3)
    bar("files", 3, 3)
    bar.close()
    assert "3/3" in s.getvalue() and "100.0%" in s.getvalue() and s.getvalue().endswith("\n")
    s = io.StringIO()
    line = CountLine("trim", True, stream=s)
    line("trim", 1, 2)
    line("trim", 2, 2)
    assert s.getvalue() == "\rtrim 1/2\rtrim 2/2\n"


def test_help_lists_user_commands_first(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    user = [out.index(f"    {c} ") for c in ("detect", "fix", "sample", "batch", "monitor", "serve")]
    dev = out.index("developer and research commands:")
    assert user == sorted(user) and max(user) < dev
    for c in ("bench", "dataset", "features", "train", "evaluate", "classify", "export-onnx"):
        assert out.index(f"    {c} ") > dev, c


def test_plot_not_assessable_report(tmp_path):
    from avsync.plot import plot_report
    from avsync.report import Report, Window
    from avsync.timeline import tolerance

    r = Report(media={"path": "x.mp4", "duration_s": 4.0, "video_fps": 25.0}, method="motion", offset_ms=None,
               confidence=0.0, verdict="not_assessable", tolerance=tolerance("frame", 25.0),
               windows=[Window(0.0, 4.0, None, 0.0)], reason="no motion")
    png = tmp_path / "na.png"
    plot_report(r, png)
    assert png.read_bytes()[:8] == PNG_MAGIC


# -- real clips ----------------------------------------------------------------------------------
def test_detect_json_has_contract_fields(capsys, speech_clip):
    rc, out, err = run(capsys, "detect", "--json", "--no-progress", speech_clip)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    for k in CONTRACT_FIELDS:
        assert k in d, k
    assert d["schema"] == "avsync.report/1"
    assert d["media"]["path"] == str(speech_clip)
    assert set(d["media"]) >= {"path", "duration_s", "video_fps", "audio_rate", "width", "height"}
    assert d["verdict"] in ("in_sync", "out_of_sync", "not_assessable")
    assert 0.0 <= d["confidence"] <= 1.0
    assert set(d["tolerance"]) == {"name", "lead_ms", "lag_ms"} and d["tolerance"]["name"] == "ebu-r37"
    assert isinstance(d["windows"], list) and d["windows"]
    assert set(d["profile"]) >= {"lag_ms", "value", "kind"}


def test_json_lines_for_several_inputs_and_errors_on_stderr(capsys, speech_clip, far_out_clip, tmp_path):
    missing = tmp_path / "gone.mp4"
    jsonl = tmp_path / "res.jsonl"
    rc, out, err = run(capsys, "detect", "--json", "--tolerance", "frame", "--out", jsonl,
                       speech_clip, missing, far_out_clip)
    assert rc == 3  # one input failed; the others were still measured
    docs = [json.loads(ln) for ln in out.splitlines()]
    # one document per input, in order: the failed one is an error record
    assert [d["media"]["path"] for d in docs] == [str(speech_clip), str(missing), str(far_out_clip)]
    bad = docs.pop(1)
    assert bad["schema"] == "avsync.error/1" and bad["status"] == "error" and bad["exit_code"] == 3
    assert str(missing) in bad["error"] and bad["verdict"] is None
    assert all(d["tolerance"]["name"] == "frame" for d in docs)
    assert docs[0]["tolerance"]["lead_ms"] == pytest.approx(40.0)
    one_line_error(err, missing)
    assert [json.loads(ln) for ln in jsonl.read_text().splitlines()] == docs[:1] + [bad] + docs[1:]


def test_detect_on_a_folder_points_to_batch(capsys, tmp_path):
    rc, out, err = run(capsys, "detect", "--json", tmp_path)
    assert rc == 3
    assert f"avsync batch {tmp_path} --out" in err and len(err.strip().splitlines()) == 1
    assert json.loads(out)["status"] == "error"


def test_check_exit_1_when_out_of_sync(capsys, far_out_clip):
    rc, out, err = run(capsys, "detect", "--check", far_out_clip)
    assert rc == 1
    assert "OUT OF SYNC" in out and "audio lags" in out
    assert "Traceback" not in err
    # without --check the same run is a success
    rc, _, _ = run(capsys, "detect", "--window-s", "100", far_out_clip)
    assert rc == 0


def test_plot_writes_png(capsys, speech_clip, tmp_path):
    png = tmp_path / "timeline.png"
    rc, out, err = run(capsys, "detect", "--plot", png, "--json", speech_clip)
    assert rc == 0
    json.loads(out)  # the plot did not disturb stdout
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 10_000


def test_sample_writes_a_clip_with_the_asked_offset(capsys, tmp_path):
    pytest.importorskip("avsync.media.synth", reason="synthetic media module not available")
    clip = tmp_path / "sample.mp4"
    rc, out, err = run(capsys, "sample", clip, "--offset-ms", "120", "--duration", "4")
    assert rc == 0, err
    assert clip.is_file() and str(clip) in out
    rc, out, err = run(capsys, "detect", "--json", clip)
    assert rc == 0, err
    d = json.loads(out)
    if d["offset_ms"] is not None:
        assert d["offset_ms"] == pytest.approx(120.0, abs=40.0)


def test_sample_bad_duration_is_usage_error(capsys, tmp_path):
    rc, out, _ = run(capsys, "sample", tmp_path / "s.mp4", "--duration", "-1")
    assert rc == 2 and out == ""


def test_detect_csv_has_the_batch_row_columns(capsys, speech_clip, tmp_path):
    import csv

    from avsync.report import ROW_FIELDS

    table, missing = tmp_path / "rows.csv", tmp_path / "gone.mp4"
    rc, out, err = run(capsys, "detect", "--json", "--csv", table, speech_clip, missing)
    assert rc == 3
    doc, failed = (json.loads(ln) for ln in out.splitlines())
    assert failed["status"] == "error"
    with open(table, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames) == ROW_FIELDS
    ok, bad = rows
    assert ok["file"] == ok["input"] == str(speech_clip) and ok["status"] == "ok" and ok["error"] == ""
    for k in ("method", "verdict"):
        assert ok[k] == doc[k]
    for k in ("offset_ms", "offset_frames", "confidence"):
        assert float(ok[k]) == doc[k]
    assert float(ok["duration_s"]) == doc["media"]["duration_s"] and ok["key"] == ""
    assert bad["status"] == "error" and bad["error"].startswith(f"{missing}: ") and bad["file"] == str(missing)
