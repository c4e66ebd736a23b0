"""avsync.fix (the API behind ``avsync fix``), FixResult, and the estimator built once by detect."""
from __future__ import annotations

import json
import math
import os

import pytest

import avsync
import avsync.api as api
from avsync import DetectOptions, FixResult, fix
from avsync.cli.main import main
from avsync.errors import CannotMeasure, MediaError, UsageError
from avsync.report import Report
from avsync.timeline import tolerance

pytest.importorskip("avsync.media.synth", reason="synthetic media module not available")
from avsync.media.synth import make_sample  # noqa: E402

MOTION = DetectOptions(method="motion")


@pytest.fixture(scope="module")
def leading(tmp_path_factory):
    """A synthetic clip (flashes and beeps) whose audio leads by 200 ms."""
    p = tmp_path_factory.mktemp("fix") / "lead200.mp4"
    make_sample(p, offset_ms=200.0, duration_s=6.0)
    return p


def _report(offset_ms, confidence=0.9, verdict="out_of_sync", reason=None) -> Report:
    return Report(media={"path": "in.mp4", "duration_s": 6.0, "video_fps": 25.0}, method="motion",
                  offset_ms=offset_ms, confidence=confidence, verdict=verdict, tolerance=tolerance("ebu-r37"),
                  reason=reason)


def test_fix_result_json_and_text():
    r = FixResult("in.mp4", "out.mkv", 200.0, before=_report(200.0), after=_report(3.0, verdict="in_sync"))
    d = json.loads(r.to_json())
    assert list(d) == ["schema", "input", "output", "applied_offset_ms", "delayed", "before", "after", "mode", "segments"]
    assert d["schema"] == "avsync.fix/1" and d["delayed"] == "audio" and d["applied_offset_ms"] == 200.0
    assert d["before"]["offset_ms"] == 200.0 and d["after"]["verdict"] == "in_sync"
    assert r.to_text().splitlines() == [
        "in.mp4 -> out.mkv",
        "  before    +200.0 ms (+5.00 frames), confidence 0.90, out of sync",
        "  applied   delayed the audio by 200.0 ms (no re-encoding)",
        "  after     +3.0 ms (+0.07 frames), confidence 0.90, in sync",
    ]
    given = FixResult("in.mp4", "out.mkv", -120.0)
    assert given.delayed == "video" and given.to_dict()["before"] is None and given.to_dict()["after"] is None
    assert given.to_text().splitlines()[1:] == ["  before    -120.0 ms (given)",
                                                "  applied   delayed the video by 120.0 ms (no re-encoding)"]
    assert "nothing to shift" in FixResult("a", "b", 0.0).to_text() and FixResult("a", "b", 0.0).delayed == "none"


def _without_elapsed(d):
    if isinstance(d, dict):
        return {k: _without_elapsed(v) for k, v in d.items() if k != "elapsed_s"}
    return d


def test_fix_measures_applies_and_verifies(leading, tmp_path, capsys):
    out = tmp_path / "fixed.mkv"
    stages = []
    res = fix(leading, out, options=MOTION, progress=lambda stage, done, total: stages.append(stage))
    assert isinstance(res, FixResult) and out.is_file()
    assert res.input == str(leading) and res.output == str(out)
    assert res.applied_offset_ms == pytest.approx(200.0, abs=40.0) and res.delayed == "audio"
    assert res.before.offset_ms == res.applied_offset_ms
    assert abs(res.after.offset_ms) <= 40.0
    assert "decode" in stages
    # the CLI prints exactly the API's result
    rc = main(["fix", str(leading), str(tmp_path / "fixed2.mkv"), "--method", "motion", "--json", "--no-progress"])
    cli = json.loads(capsys.readouterr().out)
    assert rc == 0
    want = _without_elapsed(res.to_dict())
    want["output"] = str(tmp_path / "fixed2.mkv")
    want["after"]["media"]["path"] = want["output"]
    assert _without_elapsed(cli) == want


def test_fix_with_a_given_offset_and_no_verify(leading, tmp_path):
    out = tmp_path / "given.mp4"
    res = fix(str(leading), str(out), offset_ms=200, options=MOTION, verify=False)
    assert res.before is None and res.after is None and res.applied_offset_ms == 200.0 and out.is_file()
    assert avsync.detect(out, MOTION).offset_ms == pytest.approx(0.0, abs=40.0)


def test_fix_refuses_bad_arguments(leading, tmp_path):
    with pytest.raises(UsageError, match="differ"):
        fix(leading, leading, 100.0)
    for bad in (math.nan, math.inf, "100", True):
        with pytest.raises(UsageError, match="offset_ms"):
            fix(leading, tmp_path / "o.mkv", bad)
    with pytest.raises(UsageError, match="DetectOptions"):
        fix(leading, tmp_path / "o.mkv", 100.0, options={"method": "motion"})
    with pytest.raises(UsageError, match="path"):
        fix(leading, 42, 100.0)
    assert os.listdir(tmp_path) == []


def test_fix_not_assessable_raises_with_the_report(leading, tmp_path, monkeypatch):
    na = _report(None, confidence=0.0, verdict="not_assessable", reason="no motion")
    monkeypatch.setattr(api, "_detect", lambda *a, **k: (na, None))
    with pytest.raises(CannotMeasure) as exc:
        fix(leading, tmp_path / "o.mkv")
    assert isinstance(exc.value, MediaError) and exc.value.report is na and exc.value.path == str(leading)
    assert str(exc.value) == f"{leading}: cannot measure the offset reliably (no motion)"
    low = _report(150.0, confidence=0.3, verdict="not_assessable", reason="low confidence")
    monkeypatch.setattr(api, "_detect", lambda *a, **k: (low, None))
    with pytest.raises(CannotMeasure, match=r"\(low confidence, confidence 0.30\)"):
        fix(leading, tmp_path / "o.mkv")
    assert os.listdir(tmp_path) == []


def test_fix_unreadable_input_names_it(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not media")
    with pytest.raises(MediaError) as exc:
        fix(bad, tmp_path / "o.mkv", 100.0)
    assert exc.value.path == str(bad)
    assert sorted(os.listdir(tmp_path)) == ["bad.mp4"]


def test_detect_builds_its_estimator_once(leading, monkeypatch):
    calls = []
    real = api.get_estimator

    def counting(name, options):
        calls.append(name)
        return real(name, options)

    monkeypatch.setattr(api, "get_estimator", counting)
    avsync.detect(leading, MOTION)
    assert calls == ["motion"]
    calls.clear()
    avsync.detect(leading)  # auto: chosen after decoding, built then
    assert len(calls) == 1
