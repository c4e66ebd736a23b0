"""Timeline (windows, drift, tolerances, verdicts) and report serialisation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from avsync.errors import UsageError
from avsync.estimators.base import LagProfile
from avsync.report import SCHEMA, Report, Window, fix_command
from avsync.timeline import (MIN_CONFIDENCE, PRESETS, TOLERANCE_NAMES, Tolerance, fit_drift, tolerance,
                             verdict, window_spans)

CONTRACT_FIELDS = ["schema", "media", "method", "offset_ms", "offset_frames", "confidence", "verdict",
                   "tolerance", "windows", "drift", "profile", "fix"]


# -- window_spans ----------------------------------------------------------------------
def test_short_media_gets_one_window():
    assert window_spans(0.0, 7.0, 5.0, 1.0) == [(0.0, 7.0)]
    assert window_spans(1.0, 8.5, 5.0, 1.0) == [(1.0, 8.5)]  # exactly 1.5 windows


def test_sliding_windows_cover_the_media():
    spans = window_spans(0.0, 12.0, 5.0, 1.0)
    assert len(spans) == 8
    assert spans[0] == (0.0, 5.0)
    assert spans[-1] == (7.0, 12.0)
    assert all(math.isclose(b - a, 5.0) for a, b in spans)
    assert all(math.isclose(spans[i + 1][0] - spans[i][0], 1.0) for i in range(len(spans) - 1))


def test_tail_window_added_when_hop_leaves_a_gap():
    spans = window_spans(0.0, 10.7, 5.0, 1.0)
    assert spans[-1] == pytest.approx((5.7, 10.7))
    assert spans[-2] == (5.0, 10.0)
    # a small remainder (<= half a hop) gets no extra window
    assert window_spans(0.0, 10.4, 5.0, 1.0)[-1] == (5.0, 10.0)


def test_windows_start_at_the_given_start():
    spans = window_spans(2.5, 20.0, 4.0, 2.0)
    assert spans[0][0] == 2.5
    assert spans[-1][1] <= 20.0 + 1e-9


# -- fit_drift -------------------------------------------------------------------------
def test_fit_drift_recovers_a_known_slope():
    t = np.arange(2.5, 120.0, 1.0)
    y = 40.0 + 0.5 * t  # 0.5 ms per second = 30 ms per minute
    d = fit_drift(t, y)
    assert d is not None
    assert d.ms_per_min == pytest.approx(30.0, abs=1e-6)
    assert d.intercept_ms == pytest.approx(40.0, abs=1e-6)
    assert d.r2 == pytest.approx(1.0, abs=1e-9)
    assert set(d.to_dict()) == {"ms_per_min", "r2"}


def test_fit_drift_with_noise_and_weights():
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 300.0, 2.0)
    y = -20.0 - 0.1 * t + rng.normal(0, 5, t.size)  # -6 ms/min
    w = np.ones_like(t)
    y_bad = y.copy()
    y_bad[::10] += 400.0  # outliers with (almost) no weight
    w[::10] = 1e-9
    d = fit_drift(t, y_bad, w)
    assert d.ms_per_min == pytest.approx(-6.0, abs=0.6)
    assert 0.0 <= d.r2 <= 1.0


def test_flat_timeline_has_zero_drift():
    d = fit_drift([5, 15, 25, 35], [100.0] * 4)
    assert d.ms_per_min == pytest.approx(0.0, abs=1e-9)


def test_fit_drift_none_when_too_short():
    assert fit_drift([1.0, 2.0], [0.0, 1.0]) is None  # too few points
    assert fit_drift([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0]) is None  # spans < 10 s
    assert fit_drift([1.0, 30.0, float("nan")], [0.0, 1.0, 2.0]) is None  # NaN dropped -> 2 points


# -- tolerances and verdicts ---------------------------------------------------------------
@pytest.mark.parametrize("name,lead,lag", [("ebu-r37", 40, 60), ("bt1359-detect", 45, 125),
                                          ("bt1359-accept", 90, 185), ("atsc", 15, 45)])
def test_contract_presets(name, lead, lag):
    t = tolerance(name)
    assert (t.name, t.lead_ms, t.lag_ms) == (name, lead, lag)
    assert t.to_dict() == {"name": name, "lead_ms": lead, "lag_ms": lag}


def test_preset_names():
    assert set(TOLERANCE_NAMES) == {*PRESETS, "frame"}
    assert "frame" in TOLERANCE_NAMES and "ebu-r37" in TOLERANCE_NAMES


def test_frame_tolerance_follows_the_frame_rate():
    assert tolerance("frame", 25.0).lead_ms == pytest.approx(40.0)
    assert tolerance("frame", 25.0).lag_ms == pytest.approx(40.0)
    assert tolerance("frame", 50.0).lead_ms == pytest.approx(20.0)
    assert tolerance("frame", 30000 / 1001).lag_ms == pytest.approx(33.367, abs=1e-3)
    assert tolerance("frame").lead_ms == pytest.approx(40.0)  # unknown rate: 25 fps


def test_unknown_tolerance_is_a_usage_error():
    with pytest.raises(UsageError) as exc:
        tolerance("strict")
    assert exc.value.exit_code == 2
    assert "ebu-r37" in str(exc.value)


def test_verdict_edges_ebu():
    t = tolerance("ebu-r37")
    assert verdict(0.0, 0.9, t) == "in_sync"
    assert verdict(40.0, 0.9, t) == "in_sync"
    assert verdict(40.5, 0.9, t) == "out_of_sync"  # audio leads too much
    assert verdict(-60.0, 0.9, t) == "in_sync"
    assert verdict(-60.5, 0.9, t) == "out_of_sync"  # audio lags too much
    # the band is asymmetric: a 50 ms lag is fine, a 50 ms lead is not
    assert verdict(-50.0, 0.9, t) == "in_sync"
    assert verdict(50.0, 0.9, t) == "out_of_sync"


def test_verdict_not_assessable():
    t = tolerance("ebu-r37")
    assert verdict(None, 0.9, t) == "not_assessable"
    assert verdict(500.0, MIN_CONFIDENCE - 0.01, t) == "not_assessable"
    assert verdict(500.0, MIN_CONFIDENCE, t) == "out_of_sync"


def test_verdict_frame_preset():
    t = tolerance("frame", 25.0)
    assert verdict(39.0, 0.9, t) == "in_sync"
    assert verdict(-41.0, 0.9, t) == "out_of_sync"


# -- fix command sign ------------------------------------------------------------------------
def _parse_fix(cmd: str):
    parts = cmd.split()
    inputs = [i for i, p in enumerate(parts) if p == "-i"]
    assert len(inputs) == 2
    # -itsoffset applies to the input that follows it: input #1
    its = parts.index("-itsoffset")
    assert inputs[0] < its < inputs[1]
    maps = [parts[i + 1] for i, p in enumerate(parts) if p == "-map"]
    return float(parts[its + 1]), maps


def test_fix_command_audio_leading_delays_audio():
    delay, maps = _parse_fix(fix_command("in.mp4", 120.0, "out.mp4"))
    assert delay == pytest.approx(0.12)
    assert "1:a:0" in maps and "0:v:0" in maps  # audio from the delayed input


def test_fix_command_audio_lagging_delays_video():
    delay, maps = _parse_fix(fix_command("in.mp4", -250.0, "out.mp4"))
    assert delay == pytest.approx(0.25)
    assert "1:v:0" in maps and "0:a:0" in maps  # video from the delayed input


def test_fix_command_copies_streams_and_quotes_paths():
    cmd = fix_command("my clip.mp4", 80.0)
    assert "-c copy" in cmd
    assert "'my clip.mp4'" in cmd
    assert "my clip.fixed.mp4" in cmd


# -- report ------------------------------------------------------------------------------------
def _report(offset=100.0, conf=0.9, tol="ebu-r37", windows=3):
    t = tolerance(tol, 25.0)
    wins = [Window(i * 1.0, i * 1.0 + 5.0, offset + i, 0.8) for i in range(windows)]
    prof = LagProfile(np.array([-40.0, 0.0, 40.0, 80.0]), np.array([0.1, np.nan, 0.3, 0.9]))
    return Report(media={"path": "clip.mp4", "duration_s": 10.0, "video_fps": 25.0, "audio_rate": 48000,
                         "width": 640, "height": 360, "rotation": 0},
                  method="motion", offset_ms=offset, confidence=conf, verdict=verdict(offset, conf, t),
                  tolerance=t, windows=wins, drift=None, profile=prof, cue="motion")


def test_report_json_has_every_contract_field():
    r = _report()
    d = json.loads(r.to_json())
    for k in CONTRACT_FIELDS:
        assert k in d, k
    assert d["schema"] == SCHEMA == "avsync.report/1"
    assert set(d["media"]) >= {"path", "duration_s", "video_fps", "audio_rate", "width", "height"}
    assert d["offset_frames"] == pytest.approx(2.5)
    assert d["verdict"] == "out_of_sync"
    assert d["fix"]["ffmpeg"].startswith("ffmpeg ")
    assert set(d["windows"][0]) == {"start_s", "end_s", "offset_ms", "confidence"}
    assert d["profile"]["kind"] in ("correlation", "distance")
    assert d["profile"]["value"][1] is None  # NaN -> null, never invalid JSON
    assert d["drift"] is None


def test_report_in_sync_has_no_fix():
    r = _report(offset=-20.0)
    assert r.verdict == "in_sync"
    assert r.fix is None
    assert json.loads(r.to_json())["fix"] is None


def test_report_not_assessable():
    t = tolerance("ebu-r37")
    r = Report(media={"path": "x.mp4", "duration_s": 1.0, "video_fps": 25.0}, method="motion", offset_ms=None,
               confidence=0.0, verdict="not_assessable", tolerance=t, reason="no motion")
    d = json.loads(r.to_json())
    assert d["offset_ms"] is None and d["offset_frames"] is None and d["fix"] is None
    assert d["verdict"] == "not_assessable"
    assert "NOT ASSESSABLE" in r.to_text()


def test_report_text_names_the_side():
    assert "audio leads" in _report(100.0).to_text()
    assert "audio lags" in _report(-100.0).to_text()


def test_tolerance_dataclass_accepts():
    t = Tolerance("x", 10.0, 20.0)
    assert t.accepts(10.0) and t.accepts(-20.0) and not t.accepts(10.01) and not t.accepts(-20.01)
