"""`avsync bench shift` end to end on a tiny folder of synthetic clips with known offsets.

The real-clip figures live in BENCHMARKS.md; this checks the machinery: content and
container shifts are written and measured, truths include the clip's own offset via
the shift, the table prints, and the JSON Lines rows are complete."""
import json

import pytest

from avsync.bench.shift import Row, score
from avsync.cli.main import main
from avsync.media.synth import make_sample



def test_bench_shift_on_synthetic_clips(tmp_path, capsys):
    d = tmp_path / "synthetic"
    d.mkdir()
    make_sample(d / "a.mp4", offset_ms=0.0, duration_s=6.0, seed=1)
    make_sample(d / "b.mp4", offset_ms=0.0, duration_s=6.0, seed=2)
    # the clips' own base offsets (rendered in sync), as a TRUTH.csv beside them
    (d / "TRUTH.csv").write_text("file,base_offset_ms,status,evidence\na.mp4,0,published,rendered\n"
                                 "b.mp4,0,published,rendered\n")
    out = tmp_path / "rows.jsonl"
    rc = main(["bench", "shift", str(d), "--method", "motion", "--shifts", "200", "--workers", "1",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "synthetic content" in text and "synthetic container" in text
    assert "2 of 2 clips known" in text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # 2 clips x shifts {0, 200} x {content, container, null}
    assert len(rows) == 12
    real = [r for r in rows if r["kind"] in ("content", "container")]
    for r in real:
        assert r["error"] is None
        assert r["truth_ms"] == r["shift_ms"]
        # flashes and beeps: the motion cue finds the shift within one frame
        assert abs(r["estimate_ms"] - r["truth_ms"]) <= 40.0, r
    figures = score([Row(**r) for r in rows])
    assert figures["abs_1f"] == 1.0 and figures["consistency"] == 1.0


def test_bench_shift_rejects_bad_shift_list(tmp_path, capsys):
    rc = main(["bench", "shift", str(tmp_path), "--shifts", "10,abc"])
    assert rc == 2
    assert "--shifts" in capsys.readouterr().err
