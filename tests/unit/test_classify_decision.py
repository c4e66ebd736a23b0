"""The explicit offset rule of ``avsync classify`` (avsync.classify.decision) on synthetic per-second cues."""
from __future__ import annotations

import numpy as np
import pytest

from avsync.classify import decision as D
from avsync.classify.vectors import RICH_NAMES

COL = {n: i for i, n in enumerate(RICH_NAMES)}


def cues(off, conf, short_off, short_conf, whole_abs=0.0, whole_conf=0.0, ok=None, audio=None):
    off = np.asarray(off, float)
    S = off.size
    ok = np.ones(S, bool) if ok is None else np.asarray(ok, bool)
    return D.RuleCues(off, np.asarray(conf, float), ok, np.asarray(short_off, float), np.asarray(short_conf, float),
                      ok.copy(), float(whole_abs), float(whole_conf),
                      np.ones(S, bool) if audio is None else np.asarray(audio, bool))


def rich_rows(off_ms, conf, short_ms, short_conf, whole_abs_ms=40.0, whole_conf=0.6, silent=()):
    """Rich vectors with only the columns the rule reads filled in (silent rows as vectors.rich makes them)."""
    S = len(off_ms)
    X = np.zeros((S, len(RICH_NAMES)), np.float32)
    X[:, COL["has_audio"]] = 1.0
    X[:, COL["level_db"]] = -30.0
    for i in range(S):
        if i in silent:
            X[i, COL["zero_frac"]] = 1.0
            X[i, COL["level_db"]] = -100.0
            continue
        X[i, COL["core_ok"]] = 1.0
        X[i, COL["core_offset"]] = off_ms[i] / 1000.0
        X[i, COL["core_conf"]] = conf[i]
        X[i, COL["short_ok"]] = 1.0
        X[i, COL["short_offset"]] = short_ms[i] / 1000.0
        X[i, COL["short_conf"]] = short_conf[i]
        X[i, COL["core_whole_abs"]] = whole_abs_ms / 1000.0
        X[i, COL["core_whole_conf"]] = whole_conf
    return X


RULE = D.OffsetRule(tolerance_ms=100.0, min_local_confidence=0.1, reference_confidence=0.5, min_reference=2,
                    min_whole_confidence=0.5, same_direction=True)


def test_shifted_section_inside_a_clean_file_is_flagged():
    # clean seconds at +40 ms (confident), seconds 4-6 read -360 ms in both windows
    off = [40, 45, 35, 40, -360, -350, -370, 40]
    sh = [42, 38, 44, 40, -340, -380, -355, 45]
    c = cues(off, [0.7] * 4 + [0.3] * 3 + [0.7], sh, [0.6] * 4 + [0.2] * 3 + [0.6])
    assert D.reference_offset(c, RULE) == pytest.approx(40.0)
    f, strength = D.flags(c, RULE)
    assert f.tolist() == [False] * 4 + [True] * 3 + [False]
    assert np.allclose(strength[4:7], 0.2)


def test_windows_must_agree_in_direction_and_both_exceed_the_tolerance():
    off = [40, 40, 40, -300, -300, 300]
    sh = [40, 40, 40, 100, -40, -300]  # 3: short window above the file offset; 4: only 80 ms away; 5: opposite
    c = cues(off, [0.8] * 6, sh, [0.8] * 6)
    f, _ = D.flags(c, RULE)
    assert not f.any()
    # without the direction check, both windows rejecting the file's offset is enough (second 5)
    f2, _ = D.flags(c, D.OffsetRule(tolerance_ms=100.0, same_direction=False))
    assert f2.tolist() == [False] * 5 + [True]


def test_low_confidence_windows_are_not_flagged():
    off = [40, 40, 40, -360]
    c = cues(off, [0.8, 0.8, 0.8, 0.05], [40, 40, 40, -360], [0.8, 0.8, 0.8, 0.9])
    assert not D.flags(c, RULE)[0].any()
    c2 = cues(off, [0.8, 0.8, 0.8, 0.3], [40, 40, 40, -360], [0.8, 0.8, 0.8, 0.9])
    assert D.flags(c2, RULE)[0].tolist() == [False, False, False, True]


def test_no_local_rule_without_a_confident_reference():
    # only one window reaches the reference confidence: no file offset to differ from
    off = [40, -360, -360, -360]
    c = cues(off, [0.8, 0.4, 0.4, 0.4], [40, -360, -360, -360], [0.8, 0.4, 0.4, 0.4])
    assert D.reference_offset(c, RULE) is None
    assert not D.flags(c, RULE)[0].any()
    # with min_reference=1 the single confident window is the reference
    r1 = D.OffsetRule(min_reference=1)
    assert D.flags(c, r1)[0].tolist() == [False, True, True, True]


def test_a_uniformly_shifted_file_is_not_flagged_locally_but_by_the_whole_file_rule():
    off = [-400.0] * 5
    c = cues(off, [0.8] * 5, off, [0.8] * 5, whole_abs=400.0, whole_conf=0.7, audio=[1, 1, 0, 1, 1])
    loc = D.OffsetRule(whole=False)
    assert not D.flags(c, loc)[0].any()  # every second agrees with the file's own offset
    f, strength = D.flags(c, RULE)
    assert f.tolist() == [True, True, False, True, True]  # a silent second is left to the model
    assert np.allclose(strength[f], 0.7)
    # not confident enough, or within tolerance: nothing
    assert not D.flags(cues(off, [0.8] * 5, off, [0.8] * 5, 400.0, 0.4), RULE)[0].any()
    assert not D.flags(cues(off, [0.8] * 5, off, [0.8] * 5, 50.0, 0.9), loc)[0].any()
    assert not D.flags(cues(off, [0.8] * 5, off, [0.8] * 5, 50.0, 0.9), D.OffsetRule(local=False))[0].any()
    assert D.flags(cues(off, [0.8] * 5, off, [0.8] * 5, 90.0, 0.9), D.OffsetRule(local=False))[0].all()


def test_whole_file_rule_defers_to_the_windows_file_offset():
    # a 3-s section at -380 ms wins the whole-file peak (confidently) while the confident
    # windows agree the file sits at +40 ms: only the section is flagged, not every second
    off = [40, 42, 38, 40, -380, -375, -385, 40, 41]
    c = cues(off, [0.8] * 9, off, [0.7] * 9, whole_abs=384.0, whole_conf=0.8)
    f, _ = D.flags(c, RULE)
    assert f.tolist() == [False] * 4 + [True] * 3 + [False] * 2
    # the windows agreeing with an out-of-tolerance file offset: every second
    off2 = [-380.0] * 6
    assert D.flags(cues(off2, [0.8] * 6, off2, [0.8] * 6, 384.0, 0.8), RULE)[0].all()
    # no trustworthy window reference: the whole-file estimate alone decides
    assert D.flags(cues(off, [0.3] * 9, off, [0.3] * 9, 384.0, 0.8), RULE)[0].all()


def test_apply_only_adds_desync_and_names_time_shift():
    X = rich_rows([40, 40, 40, -360, 40], [0.8, 0.8, 0.8, 0.4, 0.8], [40, 40, 40, -350, 40], [0.8] * 3 + [0.3, 0.8])
    p = np.array([0.2, 0.9, 0.1, 0.1, 0.3])
    faults = np.tile(np.array([[0.6, 0.1, 0.1, 0.1, 0.1]]), (5, 1))
    faults[1] = [0.0, 0.0, 0.9, 0.1, 0.0]  # the model says noise on second 1
    p2, f2 = D.apply(p, faults, X, RULE)
    assert p2[3] == pytest.approx(0.5 + 0.5 * 0.3) and p2[3] >= 0.5
    assert np.array_equal(p2[[0, 1, 2, 4]], p[[0, 1, 2, 4]])  # never lowers, never touches the rest
    assert int(np.argmax(f2[3])) == 1  # time_shift
    assert int(np.argmax(f2[1])) == 2  # the model's own fault is kept
    # rule off: unchanged objects' values
    p3, f3 = D.apply(p, faults, X, None)
    assert np.array_equal(p3, p) and np.array_equal(f3, faults)
    # the inputs are not modified in place
    assert p[3] == 0.1 and np.argmax(faults[3]) == 0


def test_from_rich_reads_the_vectors_and_ignores_silent_seconds():
    X = rich_rows([40, 40, 40, 40, -360], [0.8] * 4 + [0.5], [40, 40, 40, 40, -360], [0.8] * 5,
                  whole_abs_ms=51.0, whole_conf=0.55, silent=(3,))
    c = D.RuleCues.from_rich(X)
    assert c.offset_ms[4] == pytest.approx(-360.0, abs=0.01)
    assert c.whole_abs_ms == pytest.approx(51.0, abs=0.01) and c.whole_conf == pytest.approx(0.55)
    assert c.has_audio.tolist() == [True, True, True, False, True]
    assert not c.ok[3]
    assert D.flags(c, RULE)[0].tolist() == [False, False, False, False, True]
    empty = D.RuleCues.from_rich(np.zeros((0, len(RICH_NAMES)), np.float32))
    assert D.flags(empty, RULE)[0].size == 0


def test_rule_predictor_wraps_a_predictor():
    class Fixed:
        inputs, name = "rich", "fixed"

        def predict(self, X):
            return np.full(len(X), 0.2), None

    X = rich_rows([40, 40, 40, -360], [0.8, 0.8, 0.8, 0.4], [40, 40, 40, -360], [0.8, 0.8, 0.8, 0.4])
    rp = D.RulePredictor(Fixed(), RULE)
    assert rp.name == "fixed+offset-rule" and rp.inputs == "rich"
    p, f = rp.predict(X)
    assert f is None and (p >= 0.5).tolist() == [False, False, False, True]


def test_cli_offset_rule_options_are_checked(tmp_path, capsys):
    from avsync.cli.main import main

    clip = str(tmp_path / "x.mp4")
    assert main(["classify", clip, "--offset-rule", "off", "--offset-tolerance", "80"]) == 2
    assert "--offset-tolerance needs --offset-rule on" in capsys.readouterr().err
    assert main(["classify", clip, "--offset-tolerance", "-5"]) == 2
    assert "positive" in capsys.readouterr().err


def test_report_names_the_rule():
    from avsync.classify.segments import DEFAULT_OFFSET_RULE, Segment, SegmentReport

    rep = SegmentReport("a.mp4", "m.pt", [Segment(0.0, 1.0, "sync", 0.8, "none")], DEFAULT_OFFSET_RULE)
    d = rep.to_dict()
    assert d["schema"] == "avsync.segments/1" and d["offset_rule"]["tolerance_ms"] == 60.0
    assert "offset rule 60 ms" in rep.to_text()
    assert SegmentReport("a.mp4", "m.pt", []).to_dict()["offset_rule"] is None


def test_reference_is_the_confident_majority_not_a_median_between_clusters():
    # confident windows: three clean (+40) and three shifted ones (-350/-160): a plain median (-60)
    # would lie between the groups and flag the clean seconds too
    off = [46, 46, 37, -347, -347, -160, 40]
    conf = [0.7, 0.7, 0.66, 0.55, 0.5, 0.5, 0.3]
    c = cues(off, conf, off, [0.6] * 7)
    ref = D.reference_offset(c, RULE)
    assert ref == pytest.approx(46.0)  # 0.7+0.7+0.66 = 2.06 of 3.61
    f, _ = D.flags(c, RULE)
    assert f.tolist() == [False, False, False, True, True, True, False]
    # no majority: two equal groups -> no reference, nothing flagged locally
    c2 = cues([40, 40, -360, -360], [0.6] * 4, [40, 40, -360, -360], [0.6] * 4)
    assert D.reference_offset(c2, RULE) is None and not D.flags(c2, RULE)[0].any()
