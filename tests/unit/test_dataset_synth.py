"""`dataset synth`: deterministic plan, balanced labels and faults, column order, rendering."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from avsync.datasets import synth
from avsync.media.clips import read_clip
from avsync.media.synth import make_clip


def _sources(n=12, dur=6.0):
    return [synth.Source(f"clip{i:02d}", f"/x/clip{i:02d}.mp4", dur + (i % 4), "cat") for i in range(n)]


def test_plan_is_deterministic_and_seed_dependent():
    a = synth.plan(_sources(), synth.SynthOptions(seed=3, variants=2), "/o")
    b = synth.plan(_sources(), synth.SynthOptions(seed=3, variants=2), "/o")
    c = synth.plan(_sources(), synth.SynthOptions(seed=4, variants=2), "/o")
    assert [s.row() for s in a] == [s.row() for s in b]
    assert [s.row() for s in a] != [s.row() for s in c]
    # the plan does not depend on the number of workers
    d = synth.plan(_sources(), synth.SynthOptions(seed=3, variants=2, workers=4), "/o")
    assert [s.row() for s in a] == [s.row() for s in d]


def test_plan_rules():
    specs = synth.plan(_sources(40), synth.SynthOptions(seed=1, variants=2), "/o")
    labels = [s.label for s in specs]
    assert abs(labels.count("Positive") - labels.count("Negative")) <= 1
    kinds = [s.kind for s in specs if s.label == "Negative"]
    counts = [kinds.count(k) for k in synth.KINDS]
    assert max(counts) - min(counts) <= 2, counts
    assert all(s.kind == "None" for s in specs if s.label == "Positive")
    by_src = {}
    for s in specs:
        assert s.t1 - s.t0 >= 1.0 - 1e-9
        by_src.setdefault(s.source.path, set()).add(s.split)
        if s.kind == "time_shift":
            d = abs(s.shift_s)
            assert 0.1 - 1e-9 <= d <= 0.8 * (s.t1 - s.t0) + 1e-9
            room = s.t0 if s.shift_s > 0 else s.source.duration_s - s.t1
            assert d <= room + 1e-9
        if s.kind == "noise":
            assert -5 <= s.snr_db <= 10
        if s.kind == "mute":
            assert s.mute_variant in ("removed", "silent")
    # split by source: every clip in exactly one split, all three used
    assert all(len(v) == 1 for v in by_src.values())
    assert {next(iter(v)) for v in by_src.values()} == {"train", "val", "test"}
    # 1-3 sub-segments per source, covering it
    for path in by_src:
        cuts = sorted({(s.t0, s.t1) for s in specs if s.source.path == path})
        assert 1 <= len(cuts) <= 3
        dur = next(s.source.duration_s for s in specs if s.source.path == path)
        assert cuts[0][0] == 0.0 and cuts[-1][1] == pytest.approx(dur)
        assert all(a[1] == pytest.approx(b[0]) for a, b in zip(cuts, cuts[1:]))


def test_short_segments():
    specs = synth.plan([synth.Source("a", "/a", 0.6), synth.Source("b", "/b", 1.5)], synth.SynthOptions(), "/o")
    assert [(s.source.video_id, s.t0, s.t1) for s in specs] == [("b", 0.0, 1.5)]


def test_render_and_metadata_columns(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_clip(src / "a.mp4", duration_s=4.0, width=96, height=64, audio_rate=16000)
    make_clip(src / "b.mp4", duration_s=3.0, width=96, height=64, audio_rate=16000, seed=2)
    sources = synth.sources_from_dirs([str(src)])
    out, meta = tmp_path / "out", tmp_path / "out" / "meta.csv"
    res = synth.synthesize(sources, str(out), str(meta), synth.SynthOptions(seed=5, variants=3))
    assert not res.failed
    rows = list(csv.reader(meta.open()))
    assert rows[0][:7] == ["VideoID", "StartTime", "EndTime", "Label", "MisalignmentType", "Category", "FilePath"]
    assert rows[0] == synth.COLUMNS
    assert len(rows) - 1 == len(res.samples) >= 6
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    for spec in res.samples:
        clip = read_clip(spec.path)
        assert abs(len(clip.frames) / 25.0 - (spec.t1 - spec.t0)) <= 0.05
        if spec.kind == "mute" and spec.mute_variant == "removed":
            assert clip.audio is None
        elif spec.kind == "mute":
            assert np.abs(clip.audio).max() < 1e-3
        else:
            assert clip.audio is not None and np.abs(clip.audio).max() > 1e-3
    # the same seed gives the same metadata (rendered again elsewhere)
    meta2 = tmp_path / "out2" / "meta.csv"
    synth.synthesize(sources, str(tmp_path / "out2"), str(meta2), synth.SynthOptions(seed=5, variants=3))
    strip = lambda rows: [r[:6] + r[7:12] for r in rows]  # noqa: E731 - FilePath/source differ by folder only
    assert strip(list(csv.reader(meta2.open()))) == strip(rows)


def test_time_shift_moves_the_audio(tmp_path):
    make_clip(tmp_path / "a.mp4", duration_s=6.0, width=96, height=64, audio_rate=16000)
    src = synth.sources_from_dirs([str(tmp_path)])[0]
    spec = synth.SampleSpec("s", src, 2.0, 4.0, "Negative", "time_shift", shift_s=0.3,
                            path=str(tmp_path / "o" / "s.mp4"))
    synth.render(spec)
    orig = read_clip(str(tmp_path / "a.mp4"))
    out = read_clip(spec.path)
    want = orig.audio_between(1.7, 3.7)[0]
    got = out.audio_between(0.0, 2.0)[0]
    n = min(want.size, got.size) - 2000
    lags = range(-400, 401, 20)
    best = max(lags, key=lambda L: float(np.dot(want[1000:1000 + n - 800], got[1000 + L:1000 + L + n - 800])))
    assert abs(best) <= 40  # AAC round trip: within 2.5 ms


def test_small_shift_share_keeps_the_rest_of_the_plan():
    srcs = _sources(60)
    a = synth.plan(srcs, synth.SynthOptions(seed=2, variants=2), "/o")
    b = synth.plan(srcs, synth.SynthOptions(seed=2, variants=2, small_shift_share=0.5), "/o")
    # same samples, labels, kinds and splits; only some shift sizes differ
    assert [(s.sample_id, s.label, s.kind, s.split, s.t0) for s in a] == \
        [(s.sample_id, s.label, s.kind, s.split, s.t0) for s in b]
    sa = [abs(s.shift_s) for s in a if s.kind == "time_shift"]
    sb = [abs(s.shift_s) for s in b if s.kind == "time_shift"]
    assert all(0.1 - 1e-9 <= x for x in sb)
    small_b = sum(x <= 0.2 + 1e-9 for x in sb)
    assert small_b >= len(sb) * 0.3 > sum(x <= 0.2 for x in sa)
    assert sum(x > 0.2 for x in sb) >= len(sb) * 0.3


def test_composite_plan():
    srcs = [synth.Source(f"c{i}", f"/x/c{i}.mp4", 5.0 + 2 * i, "cat") for i in range(10)] + \
        [synth.Source("short", "/x/short.mp4", 3.5, "cat")]
    opt = synth.SynthOptions(seed=1, variants=4, composite=True)
    specs = synth.plan(srcs, opt, "/o")
    assert [s.row() for s in specs] == [s.row() for s in synth.plan(srcs, opt, "/o")]
    assert all(s.source.video_id != "short" for s in specs)
    kinds = set()
    for s in specs:
        L = s.t1 - s.t0
        assert 4 <= round(L) <= 15 and abs(L - round(L)) < 1e-9 and s.t1 <= s.source.duration_s
        assert len(s.segment_labels) == round(L)
        lab = [int(c) for c in s.segment_labels]
        assert (s.label == "Negative") == any(lab) == bool(s.sections)
        for a, b, kind, p in s.sections:
            assert 1 <= a and b <= round(L) - 1 and 1 <= b - a <= 4
            assert set(lab[a:b]) == {1 + synth.KINDS.index(kind)}
            kinds.add(kind)
            if kind == "time_shift":
                assert 0.1 - 1e-9 <= abs(p["shift_s"]) <= 0.8 * (b - a) + 1e-9
        # the sections are at least a clean second apart
        for (a0, b0, *_), (a1, b1, *_) in zip(s.sections, s.sections[1:]):
            assert a1 >= b0 + 1
        assert s.kind == (s.sections[0][2] if s.sections else "None")
    assert kinds == set(synth.KINDS)
    assert any(not s.sections for s in specs) and any(len(s.sections) == 2 for s in specs)


def test_composite_render_replaces_only_the_sections(tmp_path):
    make_clip(tmp_path / "a.mp4", duration_s=8.0, width=96, height=64, audio_rate=16000)
    src = synth.sources_from_dirs([str(tmp_path)])[0]
    spec = synth.SampleSpec("s", src, 1.0, 7.0, "Negative", "mute", path=str(tmp_path / "o" / "s.mp4"),
                            sections=[(2, 4, "mute", {"mute_variant": "silent"})], segment_labels="003300")
    synth.render(spec)
    orig = read_clip(str(tmp_path / "a.mp4"))
    out = read_clip(spec.path)
    assert abs(len(out.frames) / 25.0 - 6.0) <= 0.05
    assert np.abs(out.audio_between(2.1, 3.9)).max() < 1e-3
    kept = out.audio_between(0.2, 1.8)[0]
    want = orig.audio_between(1.2, 2.8)[0]
    assert np.abs(kept).max() > 1e-3
    assert np.corrcoef(kept[: want.size], want[: kept.size])[0, 1] > 0.9


def test_synth_cli_rejects_bad_new_options(tmp_path, capsys):
    from avsync.cli.main import main

    for extra, needle in ((["--small-shifts", "1.5"], "--small-shifts"),
                          (["--composite", "--composite-kinds", "time_shift,nope"], "unknown fault")):
        rc = main(["dataset", "synth", "--clips", str(tmp_path), "--out", str(tmp_path / "o")] + extra)
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_cli_summary_names_the_positive_samples(tmp_path, capsys):
    """The summary line counts the in-sync samples as 'in sync', never 'None'."""
    from avsync.cli.main import main
    from avsync.media.synth import make_sample

    (tmp_path / "clips").mkdir()
    make_sample(tmp_path / "clips" / "a.mp4", duration_s=4.0)
    assert main(["dataset", "synth", "--clips", str(tmp_path / "clips"), "--out", str(tmp_path / "out"),
                 "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "in sync 1" in out, out
