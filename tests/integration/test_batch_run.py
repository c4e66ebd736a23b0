"""avsync batch on real clips: local processes and a Dask LocalCluster, resume, error rows."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from avsync.apps.batch import BatchOptions, dask_thread_budget, run_batch, thread_budget

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def inputs(tmp_path, media_dir):
    d = tmp_path / "in"
    d.mkdir()
    for rel in ("speech/vretalk_face2.mp4", "speech/lrs2_demo_00001.mp4"):
        shutil.copy(media_dir / rel, d / Path(rel).name)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 5000)
    return d


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_cli_batch_resumes_and_keeps_going(inputs, tmp_path):
    out = tmp_path / "res.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "avsync", "batch", str(inputs), "--out", str(out), "--workers", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 3, r.stderr  # one input failed
    assert "ETA" in r.stderr and "Traceback" not in r.stderr
    rows = _rows(out)
    assert len(rows) == 3
    bad = [x for x in rows if x["status"] == "error"]
    assert len(bad) == 1 and bad[0]["input"].endswith("broken.mp4") and "broken.mp4" in bad[0]["error"]
    ok = [x for x in rows if x["status"] == "ok"]
    assert all(x["verdict"] in ("in_sync", "out_of_sync", "not_assessable") and x["report"] for x in ok)
    # second run: everything skipped, nothing appended
    r2 = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r2.returncode == 0 and "3 skipped" in r2.stderr
    assert _rows(out) == rows
    # a new input: only it is measured
    shutil.copy(REPO.parent / "shared" / "media" / "speech" / "vretalk_face3.mp4", inputs / "new.mp4")
    r3 = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert "1 measured" in r3.stderr and "3 skipped" in r3.stderr
    assert len(_rows(out)) == 4


def test_csv_out(inputs, tmp_path):
    out = tmp_path / "res.csv"
    res = run_batch([str(inputs / "*.mp4")], str(out), BatchOptions(workers=1, csv=True))
    assert res.total == 3 and res.errors == 1
    rows = list(csv.DictReader(out.open()))
    assert {r["status"] for r in rows} == {"ok", "error"} and len(rows) == 3
    assert run_batch([str(inputs / "*.mp4")], str(out), BatchOptions(workers=1, csv=True)).skipped == 3


def test_dask_local_cluster_two_workers(inputs, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    import logging

    local = tmp_path / "local.jsonl"
    run_batch([str(inputs)], str(local), BatchOptions(workers=1))
    out = tmp_path / "dask.jsonl"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cl:
        with distributed.Client(cl) as client:  # two one-thread workers share this machine's CPUs
            assert dask_thread_budget(client) == thread_budget(2)
        res = run_batch([str(inputs)], str(out), BatchOptions(scheduler=cl.scheduler_address))
        assert res.done == 3 and res.errors == 1
        again = run_batch([str(inputs)], str(out), BatchOptions(scheduler=cl.scheduler_address))
        assert again.skipped == 3 and again.done == 0
    by_key = {r["key"]: r for r in _rows(local)}
    for r in _rows(out):  # the same rows as the local run (whose decoder threads FFmpeg chose)
        want = by_key[r["key"]]
        for k in ("status", "offset_ms", "confidence", "verdict", "error"):
            assert r.get(k) == want.get(k), k


def test_unreachable_scheduler_is_a_usage_error(inputs, tmp_path):
    pytest.importorskip("dask.distributed")
    from avsync.errors import UsageError

    with pytest.raises(UsageError, match="Dask scheduler"):
        run_batch([str(inputs)], str(tmp_path / "x.jsonl"),
                  BatchOptions(scheduler="tcp://127.0.0.1:9", scheduler_timeout_s=2))


def test_bench_batch_prints_every_round_and_the_rerun(media_dir, capsys):
    pytest.importorskip("dask.distributed")
    import argparse

    from avsync.bench.batch import main

    args = argparse.Namespace(dirs=[str(media_dir / "speech")], inputs=4, workers="1,2", max_seconds=4.0,
                              keep=False, repeat=2, threads=None, engines="local,dask")
    assert main(args) == 0
    out = capsys.readouterr().out
    for engine in ("local", "dask"):  # both engines, both worker counts, both rounds
        for rnd in (1, 2):
            assert out.count(f"round {rnd}: {engine}, workers") == 2
        assert f"{engine}: parallel efficiency 2 vs 1 workers" in out
    assert "thread budget" in out and out.count("4 rows over") == 8 and out.count("1 error row(s)") == 8
    assert "rerun into the last output: 4 of 4 skipped" in out
    # the answers of every setting against the first: all the same
    assert out.count("results local x1 vs ") == 3 and out.count(": identical for all 4 inputs") == 3
