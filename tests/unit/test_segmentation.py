"""Offset steps: the segmentation of a timeline (pieces of constant offset, change points, or a
drift), the conform names, the per-segment fix commands and the audio re-timing arithmetic."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avsync.estimators.base import Estimate
from avsync.media.retime import Piece, pieces_from_segments, render
from avsync.report import Segment, Window, segments_fix_command
from avsync.segmentation import match_conform, segment_windows
from avsync.timeline import build_report, tolerance


def timeline(offset_at, duration=50.0, window=5.0, hop=1.0, noise=4.0, seed=0, conf=0.95, outliers=()):
    """Windows as a lips timeline gives them: a window reports the offset that holds over most
    of it (plus noise); ``outliers``: window indices with a wrong, confident peak."""
    rng = np.random.default_rng(seed)
    out = []
    for i, t0 in enumerate(np.arange(0.0, duration - window + 1e-9, hop)):
        ts = np.linspace(t0, t0 + window, 51)
        vals = np.array([offset_at(t) for t in ts])
        y = float(np.median(vals)) + rng.normal(0, noise)
        if i in outliers:
            y += 230.0
        out.append(Window(float(t0), float(t0 + window), y, conf))
    return out


def step(t, at=25.0, a=120.0, b=-270.0):
    return a if t < at else b


def test_one_step_is_found_with_its_time_and_offsets():
    seg = segment_windows(timeline(step), fps=25.0)
    assert seg.model == "steps"
    assert len(seg.segments) == 2 and len(seg.changes) == 1
    assert seg.changes[0].time_s == pytest.approx(25.0, abs=1.0)
    assert seg.segments[0].offset_ms == pytest.approx(120.0, abs=10.0)
    assert seg.segments[1].offset_ms == pytest.approx(-270.0, abs=10.0)
    assert seg.segments[0].end_s == seg.segments[1].start_s == seg.changes[0].time_s
    assert seg.changes[0].confidence > 0.8


def test_two_steps_and_an_isolated_wrong_peak():
    f = lambda t: 100.0 if t < 17 else (-200.0 if t < 34 else 300.0)  # noqa: E731
    seg = segment_windows(timeline(f, outliers=(8, 40)), fps=25.0)
    assert seg.model == "steps"
    assert [round(c.time_s) for c in seg.changes] == pytest.approx([17, 34], abs=1.0)
    assert [g.offset_ms for g in seg.segments] == pytest.approx([100, -200, 300], abs=10)


def test_constant_timeline_is_one_segment():
    seg = segment_windows(timeline(lambda t: 40.0, outliers=(20,)), fps=25.0)
    assert seg.model == "constant" and len(seg.segments) == 1 and seg.changes == []


def test_a_step_below_half_a_frame_is_not_a_change():
    seg = segment_windows(timeline(lambda t: step(t, a=0.0, b=12.0), noise=2.0), fps=25.0)
    assert len(seg.segments) == 1


def test_a_drift_is_a_line_not_a_staircase():
    seg = segment_windows(timeline(lambda t: 100.0 - t, duration=60.0), fps=25.0)  # -60 ms/min
    assert seg.model == "drift" and len(seg.segments) == 1


def test_too_few_confident_windows_give_nothing():
    assert segment_windows(timeline(step, duration=9.0), fps=25.0) is None
    assert segment_windows(timeline(step, conf=0.2), fps=25.0) is None


def test_refinement_moves_the_boundary_to_where_the_profiles_flip():
    wins = timeline(step)
    true_t = 25.0

    def probe(t0, t1):  # a lag profile that peaks at the offset holding over most of the span
        lag = np.arange(-1000.0, 1001.0, 10.0)
        pre = max(0.0, min(t1, true_t) - t0) / (t1 - t0)
        return lag, pre * np.exp(-((lag - 120) / 40) ** 2) + (1 - pre) * np.exp(-((lag + 270) / 40) ** 2), "correlation"

    seg = segment_windows(wins, fps=25.0, probe=probe)
    assert seg.changes[0].time_s == pytest.approx(true_t, abs=0.3)


@pytest.mark.parametrize("ms_per_min,name", [(-59.9, "1000/1001"), (-66.0, "1000/1001"), (59.9, "1001/1000"),
                                             (-2400.0, "24->25 fps"), (2500.0, "25->24 fps")])
def test_conform_names(ms_per_min, name):
    c = match_conform(ms_per_min, 0.95)
    assert c is not None and c["name"] == name
    # the fix plays the audio at the inverse of the conform's speed
    assert (1.0 / c["speed"] - 1.0) * 60000.0 == pytest.approx(c["expected_ms_per_min"], rel=1e-4)


@pytest.mark.parametrize("ms_per_min,r2", [(-30.0, 0.95), (-120.0, 0.95), (-60.0, 0.2), (3.0, 0.99)])
def test_no_conform_for_other_drifts(ms_per_min, r2):
    assert match_conform(ms_per_min, r2) is None


def _report(windows):
    whole = Estimate(offset_ms=-270.0, confidence=0.97, cue="lips")
    media = {"path": "in.mkv", "duration_s": 50.0, "video_fps": 25.0, "audio_rate": 16000, "width": 1, "height": 1}
    return build_report(media, "lips", whole, windows, tolerance("ebu-r37"))


def test_report_says_several_offsets_in_json_and_text():
    rep = _report(timeline(step))
    d = json.loads(rep.to_json())
    assert d["several_offsets"] is True and d["offset_model"] == "steps"
    assert len(d["segments"]) == 2 and set(d["segments"][0]) == {"start_s", "end_s", "offset_ms", "confidence"}
    assert set(d["changes"][0]) == {"time_s", "from_ms", "to_ms", "confidence"}
    assert d["verdict"] == "out_of_sync" and "2 offsets" in d["reason"]
    assert d["fix"]["per_segment"] is True and "atrim" in d["fix"]["ffmpeg"]
    text = rep.to_text()
    assert "SEVERAL" in text and text.count("  segment ") == 2 and "change    at" in text


def test_several_offsets_all_inside_the_tolerance_are_in_sync():
    rep = _report(timeline(lambda t: step(t, a=-30.0, b=25.0), noise=2.0))
    assert rep.several_offsets and rep.verdict == "in_sync"


def test_one_offset_reports_one_segment_and_the_usual_fix():
    rep = _report(timeline(lambda t: -270.0))
    d = rep.to_dict()
    assert d["several_offsets"] is False and len(d["segments"]) == 1 and d["changes"] == []
    assert "-itsoffset" in d["fix"]["ffmpeg"]


def test_conform_drift_is_named_with_its_fix():
    rep = _report(timeline(lambda t: 100.0 - 0.999 * t, duration=60.0))
    d = rep.to_dict()
    assert d["offset_model"] == "drift" and d["drift"]["conform"]["name"] == "1000/1001"
    assert "asetrate" in d["fix"]["ffmpeg"] and d["fix"]["conform"] == "1000/1001"
    assert "conform" in rep.to_text()


def test_segments_fix_command_trims_each_segment_from_the_shifted_place():
    cmd = segments_fix_command("in.mkv", [Segment(0.0, 25.0, 120.0, 1.0), Segment(25.0, 50.0, -270.0, 1.0)], "o.mkv")
    assert "atrim=start=0.000:end=24.880,asetpts=PTS-STARTPTS,adelay=120:all=1" in cmd
    assert "atrim=start=25.270,asetpts=PTS-STARTPTS[a1]" in cmd and "concat=n=2" in cmd and "-c:v copy" in cmd


# -- the re-timing arithmetic (media.retime.render) --------------------------------------
def test_render_moves_each_piece_by_its_own_offset():
    rate = 1000
    x = np.arange(1, 4001, dtype=np.float32)[None, :]  # sample i holds i + 1
    out = render(x, rate, 0.0, [Piece(0.0, 100.0), Piece(2.0, -250.0)], crossfade_s=0.0)
    # the first piece is delayed by 100 ms: silence, then the input from its start
    assert np.all(out[0, :100] == 0) and out[0, 100] == 1 and out[0, 1999] == 1900
    # the second piece is advanced by 250 ms: at 2.0 s we hear the input's 2.25 s
    assert out[0, 2000] == 2251 and out[0, 3749] == 4000 and np.all(out[0, 3750:] == 0)


def test_render_follows_a_drift_line():
    rate = 1000
    x = np.arange(0, 60000, dtype=np.float32)[None, :]
    out = render(x, rate, 0.0, [Piece(0.0, 0.0, slope=-1.0)], crossfade_s=0.0)  # -1 ms per s
    assert out[0, 30000] == pytest.approx(30030.0, abs=1e-3)  # 30 s: the audio 30 ms later


def test_pieces_from_segments_start_the_first_at_zero():
    p = pieces_from_segments([Segment(0.4, 25.0, 120.0, 1.0), Segment(25.0, 50.0, -270.0, 1.0)])
    assert p == [Piece(0.0, 120.0), Piece(25.0, -270.0)]
