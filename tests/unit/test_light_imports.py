"""The detect path and the CLI parser stay light: no web, Dask or browser imports."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_cli_and_detect_do_not_import_service_or_batch_deps():
    code = ("import sys; import avsync.cli.main as m; m.build_parser(); import avsync.api, avsync.media; "
            "bad = [k for k in ('fastapi', 'starlette', 'uvicorn', 'dask', 'distributed', 'playwright', "
            "'schemathesis', 'torch') if k in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_new_commands_are_registered():
    from avsync.cli.main import build_parser

    p = build_parser()
    for cmd in (["monitor", "http://h/x.m3u8"], ["serve"], ["batch", "x", "--out", "o.jsonl"]):
        assert p.parse_args(cmd).command == cmd[0]
