"""bench shift: base offsets from TRUTH.csv (no hard-coded bases), absolute scores on known clips only,
confident errors on all clips."""
from __future__ import annotations

from avsync.bench.shift import Row, load_rows, read_truth, score, truth_for


def _truth(tmp_path):
    (tmp_path / "speech").mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / "speech" / name).write_bytes(b"")
    (tmp_path / "TRUTH.csv").write_text(
        "file,base_offset_ms,status,evidence\n"
        "speech/a.mp4,120,published,ref\n"
        "speech/b.mp4,,unknown,audit not decisive\n"
        "speech/c.mp4,0,corpus,studio\n")
    return tmp_path


def test_truth_found_above_the_clips(tmp_path):
    root = _truth(tmp_path)
    t = read_truth(str(root / "TRUTH.csv"))
    assert t[str(root / "speech" / "a.mp4")] == (120.0, "published")
    assert t[str(root / "speech" / "b.mp4")] == (None, "unknown")
    clips = [("speech", str(root / "speech" / n)) for n in ("a.mp4", "b.mp4", "c.mp4")]
    found = truth_for(clips)
    assert [found[p] for _, p in clips] == [(120.0, "published"), (None, "unknown"), (0.0, "corpus")]
    # a clip in no table: unknown, never 0
    (tmp_path / "other").mkdir()
    lone = str(tmp_path / "other" / "x.mp4")
    assert truth_for([("other", lone)])[lone] == (None, "none")


def _row(clip, shift, truth, est, conf, kind="content"):
    return Row(clip, "speech", kind, shift, truth, est, conf, "in_sync", 25.0, 6.0, 1.0, "auto")


def test_absolute_only_on_known_clips_and_confident_errors_on_all():
    rows = [
        _row("a", 0, 120, 125, 0.9), _row("a", 200, 320, 310, 0.9),  # known, right
        _row("c", 0, 0, 300, 0.9),  # known, confidently wrong
        # unknown base: consistent answers, one confidently off its own consensus
        _row("b", 0, None, 50, 0.9), _row("b", 100, None, 148, 0.9), _row("b", -100, None, -52, 0.9),
        _row("b", 200, None, 700, 0.8),
    ]
    s = score(rows)
    assert s["n"] == 7 and s["n_known"] == 3 and s["clips_known"] == 2
    assert s["abs_1f"] == 2 / 3  # b's rows are not in the absolute score
    assert abs(s["confident_wrong"] - 2 / 7) < 1e-9  # c's wrong answer and b's off-consensus one


def test_saved_rows_take_the_truth_afresh(tmp_path):
    import json

    root = _truth(tmp_path)
    saved = tmp_path / "rows.jsonl"
    saved.write_text("\n".join(json.dumps(r) for r in [
        {"clip": "a.mp4", "family": "speech", "kind": "content", "shift_ms": 40.0, "truth_ms": 40.0,
         "estimate_ms": 161.0, "confidence": 0.9, "verdict": "out_of_sync", "fps": 25.0, "duration_s": 6.0,
         "seconds": 1.0, "method": "auto", "error": None}]) + "\n")
    rows = load_rows(str(saved), [str(root / "speech")])
    assert rows[0].truth_ms == 160.0 and rows[0].base == "published"


def test_leave_speaker_out_tables_per_fold(tmp_path):
    from avsync.bench.truth import fold_path, read_folds
    from avsync.bench.shift import calibration_for

    folds = tmp_path / "folds.csv"
    folds.write_text("clip,fold,exclude\na.mp4,1,grid_ lrs2_\nb.mp4,1,grid_\nc.mp4,2,\n")
    got = read_folds(str(folds))
    assert got[1] == ({"a.mp4", "b.mp4"}, ("grid_", "lrs2_")) and got[2] == ({"c.mp4"}, ())
    cal = str(tmp_path / "cal.json")
    assert fold_path(cal, 2) == str(tmp_path / "cal_fold2.json")
    assert calibration_for("a.mp4", cal, str(folds)) == str(tmp_path / "cal_fold1.json")
    # a clip in no fold: the table itself when it exists, else "" (the shipped one)
    assert calibration_for("z.mp4", cal, str(folds)) == ""
    (tmp_path / "cal.json").write_text("{}")
    assert calibration_for("z.mp4", cal, str(folds)) == cal
