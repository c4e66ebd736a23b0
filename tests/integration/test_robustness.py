"""The reliability suite (``avsync bench robustness``) as a marked test tier: broken and hostile
inputs through detect, batch and serve on 127.0.0.1; nothing may trace back, hang, exit with a code
outside the contract, lose a row, reach the canary server or pass 1 GB."""
from __future__ import annotations

import pytest

from avsync.bench.robustness import run


@pytest.mark.slow
def test_robustness_suite(tmp_path, shared_dir):
    clips = sorted((shared_dir / "media" / "speech").glob("*.mp4"))[:1]
    summary = run([str(c) for c in clips], tmp_path, timeout_s=90.0, max_sources=1, log=lambda m: None)
    table = summary.table()
    print(table)
    assert len(summary.detect) >= 12
    assert summary.failures() == 0, table
    assert max(o.peak_mb or 0 for o in summary.detect) < 1024, table
    assert summary.batch["rows_lost"] == 0 and summary.service["canary_connections"] == 0, table
