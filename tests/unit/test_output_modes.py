"""Files avsync writes get the mode a plain ``open()`` would give them (0666 less the umask),
not mkstemp's 0600: ``fix`` outputs and ``batch --out`` results."""
from __future__ import annotations

import os
import stat

import pytest

from avsync.apps.batch import _Output
from avsync.cli.main import main
from avsync.media.base import atomic_output
from avsync.media.synth import make_sample


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_atomic_output_respects_the_umask(tmp_path, umask_022):
    dst = tmp_path / "out.bin"
    with atomic_output(str(dst)) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"x")
    assert _mode(dst) == 0o644
    os.umask(0o077)
    other = tmp_path / "private.bin"
    with atomic_output(str(other)) as tmp:
        open(tmp, "wb").close()
    assert _mode(other) == 0o600
    # replacing a file keeps that file's mode
    os.chmod(dst, 0o640)
    with atomic_output(str(dst)) as tmp:
        open(tmp, "wb").close()
    assert _mode(dst) == 0o640


@pytest.mark.parametrize("as_csv", [False, True])
def test_batch_results_respect_the_umask(tmp_path, umask_022, as_csv):
    out = tmp_path / ("rows.csv" if as_csv else "rows.jsonl")
    _Output(str(out), as_csv=as_csv).fh.close()
    assert _mode(out) == 0o644
    os.chmod(out, 0o664)  # reopened (resumed): its mode stays
    _Output(str(out), as_csv=as_csv).fh.close()
    assert _mode(out) == 0o664


def test_fix_output_respects_the_umask(tmp_path, umask_022, capsys):
    src = tmp_path / "in.mp4"
    make_sample(src, offset_ms=120.0, duration_s=3.0)
    dst = tmp_path / "fixed.mp4"
    assert main(["fix", str(src), str(dst), "--offset-ms", "120", "--no-verify", "--no-progress"]) == 0
    assert _mode(dst) == 0o644
