"""Every bench table is printed with a legend that explains each of its columns."""
from __future__ import annotations

import re

from avsync.bench import robustness, shift, syncnet


def test_shift_legend_names_every_column():
    for _, heading, _ in shift.COLUMNS:
        name = heading.rstrip("%").removesuffix(" ms")
        assert name in shift.LEGEND, heading


def test_syncnet_legend_names_every_column():
    for heading in syncnet.HEADER.split():
        assert re.search(rf"(^|[\s/]){re.escape(heading)}:", syncnet.LEGEND) or f"{heading} " in syncnet.LEGEND, heading


def test_robustness_table_has_its_legend():
    table = robustness.Summary(detect=[robustness.Outcome("x", "fuzz", rc=3, peak_mb=80.0)]).table()
    for heading in ("run", "inputs tried", "tracebacks", "hangs", "wrong exit codes / 5xx", "rows lost", "peak memory"):
        assert f"{heading}:" in table.split("\n", 2)[2], heading
