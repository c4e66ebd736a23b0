"""AVE annotation parsing, official splits and the events CSV."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from avsync.datasets import ave
from avsync.errors import UsageError

GOOD = "Church bell&RUhOCu3LNXM&good&0&10\nRace car, auto racing&22olCB3wQaA&good&5&10\nDog&abc&bad&3&3\n"


def _write(tmp_path, text, name="ann.txt"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_parse_fields_rows_and_commas_in_category(tmp_path):
    ev = ave.parse_annotations(_write(tmp_path, GOOD))
    assert [e.row for e in ev] == [0, 1, 2]
    assert ev[1].category == "Race car, auto racing" and ev[1].video_id == "22olCB3wQaA"
    assert (ev[1].start_s, ev[1].end_s) == (5.0, 10.0)
    assert ev[2].start_s == ev[2].end_s == 3.0  # an empty event (the official list has one) is kept


@pytest.mark.parametrize("bad, reason", [
    ("Dog&abc&good&3", "expected 5 fields"),
    ("Dog&abc&good&x&10", "not numbers"),
    ("Dog&abc&good&8&2", "bad event interval"),
    ("&abc&good&1&2", "empty"),
    ("Dog&../x&good&1&2", "plain name"),
])
def test_malformed_line_names_its_number(tmp_path, bad, reason):
    p = _write(tmp_path, GOOD + bad + "\n")
    with pytest.raises(UsageError) as ei:
        ave.parse_annotations(p)
    assert "line 4" in str(ei.value) and reason in str(ei.value)
    assert ei.value.exit_code == 2


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UsageError, match="no such"):
        ave.parse_annotations(str(tmp_path / "nope.txt"))
    with pytest.raises(UsageError, match="no annotations"):
        ave.parse_annotations(_write(tmp_path, "\n\n"))


def test_splits_from_h5_and_csv(tmp_path):
    h5py = pytest.importorskip("h5py")
    ev = ave.parse_annotations(_write(tmp_path, GOOD))
    files = {}
    for name, rows in (("train", [2, 0]), ("test", [1])):
        p = tmp_path / f"AVE_{name}_order.h5"
        with h5py.File(p, "w") as fh:
            fh["order"] = np.asarray(rows, np.int64)
        files[name] = str(p)
    assert ave.find_split_files(str(tmp_path)) == files
    ev = ave.assign_splits(ev, files)
    assert [e.split for e in ev] == ["train", "test", "train"]
    out = tmp_path / "ave.csv"
    ave.write_csv(ev, str(out))
    rows = list(csv.reader(out.open()))
    assert rows[0] == ave.CSV_COLUMNS
    assert rows[2] == ["1", "Race car, auto racing", "22olCB3wQaA", "good", "5", "10", "test"]
    assert [e.split for e in ave.read_csv(str(out))] == ["train", "test", "train"]
    # an index outside the list is an error, not a silent drop
    with h5py.File(tmp_path / "bad.h5", "w") as fh:
        fh["order"] = np.asarray([7], np.int64)
    with pytest.raises(UsageError, match="row index 7"):
        ave.read_split(str(tmp_path / "bad.h5"), 3)


def test_find_video_accepts_ave_prefix(tmp_path):
    (tmp_path / "ave_abc.mp4").write_bytes(b"x")
    assert ave.find_video(str(tmp_path), "abc").endswith("ave_abc.mp4")
    assert ave.find_video(str(tmp_path), "zzz") is None
