"""The one options schema (avsync.options): every entry point's options are checked here, with
one-line UsageErrors (never a bare ValueError / TypeError)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from avsync import DetectOptions
from avsync.apps.batch import BatchOptions, options_key
from avsync.apps.monitor import MonitorOptions
from avsync.errors import AvsyncError, UsageError
from avsync.media.hls import FollowOptions
from avsync.timeline import DEFAULT_TOLERANCE, TOLERANCE_NAMES


def _usage(fn, *words) -> str:
    with pytest.raises(UsageError) as exc:
        fn()
    msg = str(exc.value)
    assert "\n" not in msg and not isinstance(exc.value, (ValueError, TypeError))
    for w in words:
        assert w in msg, msg
    return msg


def test_defaults():
    o = DetectOptions()
    assert (o.method, o.tolerance, o.max_lag_ms, o.window_s, o.hop_s) == ("auto", DEFAULT_TOLERANCE, 1000.0, 5.0, 1.0)
    assert DEFAULT_TOLERANCE in TOLERANCE_NAMES
    assert (o.timeline, o.weights, o.crop, o.precision, o.debug_dir, o.fusion, o.threads) == \
        (True, None, "auto", "exact", None, True, None)
    assert o.syncnet_frames == "jpeg"  # the public SyncNet code's pictures (issue 17)
    assert MonitorOptions().tolerance == DEFAULT_TOLERANCE
    from avsync.api import DetectOptions as re_exported

    assert re_exported is DetectOptions


def test_unknown_method_and_tolerance():
    _usage(lambda: DetectOptions(method="telepathy"), "unknown method 'telepathy'", "lips", "motion")
    _usage(lambda: DetectOptions(tolerance="strict"), "unknown tolerance 'strict'", "ebu-r37", "frame")
    _usage(lambda: DetectOptions(method=None), "unknown method")


@pytest.mark.parametrize("name", ["max_lag_ms", "window_s", "hop_s"])
@pytest.mark.parametrize("value", [0, -5.0, math.nan, math.inf, -math.inf, "5", None, True])
def test_numbers_must_be_finite_and_positive(name, value):
    _usage(lambda: DetectOptions(**{name: value}), name)


def test_good_numbers_are_kept_as_given():
    o = DetectOptions(max_lag_ms=500, window_s=2.5, hop_s=0.5, threads=1)
    assert o.max_lag_ms == 500 and isinstance(o.max_lag_ms, int) and o.window_s == 2.5 and o.threads == 1


@pytest.mark.parametrize("field, value", [
    ("threads", 0), ("threads", 1.5), ("threads", "2"), ("crop", "face"), ("precision", "int4"),
    ("precision", None), ("syncnet_frames", "exact"), ("syncnet_frames", None), ("timeline", "yes"), ("fusion", 1), ("weights", 5), ("weights", ""), ("debug_dir", 3.0),
])
def test_bad_fields(field, value):
    _usage(lambda: DetectOptions(**{field: value}), field)


def test_json_round_trip():
    o = DetectOptions(method="motion", tolerance="atsc", max_lag_ms=400.0, weights=Path("/m/w.pt"), threads=2)
    d = o.to_dict()
    assert d["weights"] == "/m/w.pt"
    again = DetectOptions.from_dict(json.loads(json.dumps(d)))
    assert again == DetectOptions(method="motion", tolerance="atsc", max_lag_ms=400.0, weights="/m/w.pt", threads=2)
    assert DetectOptions.from_dict({}) == DetectOptions()
    _usage(lambda: DetectOptions.from_dict({"metod": "lips"}), "unknown option 'metod'")
    _usage(lambda: DetectOptions.from_dict(["lips"]), "JSON object")
    _usage(lambda: DetectOptions.from_dict({"max_lag_ms": "1000"}), "max_lag_ms")


def test_batch_key_is_unchanged():
    """Resumed batches keep finding their rows: the options part of the key is what it was."""
    want = json.dumps({"hop_s": 1.0, "max_lag_ms": 1000.0, "method": "auto", "tolerance": "ebu-r37",
                       "weights": None, "window_s": 5.0}, sort_keys=True)
    assert options_key(DetectOptions()) == want


def test_batch_options():
    assert BatchOptions().detect == DetectOptions()
    _usage(lambda: BatchOptions(workers=0), "workers")
    _usage(lambda: BatchOptions(threads=-1), "threads")
    _usage(lambda: BatchOptions(scheduler_timeout_s=0), "scheduler_timeout_s")
    _usage(lambda: BatchOptions(detect={"method": "lips"}), "DetectOptions")


def test_monitor_options():
    o = MonitorOptions(method="motion", tolerance="frame", max_lag_ms=300.0, window_s=4.0)
    assert o.detect_options == DetectOptions(method="motion", tolerance="frame", max_lag_ms=300.0, timeline=False)
    _usage(lambda: MonitorOptions(method="telepathy"), "unknown method")
    _usage(lambda: MonitorOptions(tolerance="loose"), "unknown tolerance")
    _usage(lambda: MonitorOptions(window_s=0), "window_s")
    _usage(lambda: MonitorOptions(alert_after=0), "alert_after")
    _usage(lambda: MonitorOptions(max_windows=2.5), "max_windows")
    _usage(lambda: MonitorOptions(max_duration_s=-1.0), "max_duration_s")
    _usage(lambda: MonitorOptions(follow=FollowOptions(timeout_s=0)), "timeout_s")
    _usage(lambda: MonitorOptions(follow=FollowOptions(poll_s=math.nan)), "poll_s")


def test_usage_error_is_an_avsync_error_with_exit_code_2():
    with pytest.raises(AvsyncError) as exc:
        DetectOptions(hop_s=-1)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("argv, words", [
    (["detect", "--tolerance", "strict", "x.mp4"], ["unknown tolerance 'strict'"]),
    (["detect", "--crop", "face", "x.mp4"], ["unknown crop 'face'"]),
    (["fix", "--precision", "int4", "a.mp4", "b.mkv"], ["unknown precision 'int4'"]),
    (["batch", "x.mp4", "--out", "o.jsonl", "--method", "telepathy"], ["unknown method 'telepathy'"]),
    (["batch", "x.mp4", "--out", "o.jsonl", "--workers", "0"], ["workers"]),
    (["monitor", "http://127.0.0.1:9/x.m3u8", "--alert-after", "0"], ["alert_after"]),
    (["monitor", "http://127.0.0.1:9/x.m3u8", "--tolerance", "loose"], ["unknown tolerance 'loose'"]),
])
def test_cli_commands_share_the_schema(capsys, tmp_path, argv, words):
    from avsync.cli.main import main

    argv = [str(tmp_path / a) if a.endswith((".mp4", ".mkv", ".jsonl")) else a for a in argv]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("avsync: ")
    for w in words:
        assert w in err, err
