"""The AVE dataset's annotation list and official splits, and trimming of its events.

``AVE_Annotations.txt``: one event per line, ``Category&VideoID&Quality&StartTime&EndTime``
(no header).  ``AVE_{train,val,test}_order.h5``: a dataset ``order`` of 0-based row
indices into that list.  The labels mark WHERE an audio-visual event happens in the
10-s video, not whether it is in sync: sync labels come from :mod:`avsync.datasets.synth`.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from ..errors import AvsyncError, UsageError
from ..media.clips import trim
from ..progress import Progress
from .util import atomic_csv

CSV_COLUMNS = ["Row", "Category", "VideoID", "Quality", "StartTime", "EndTime", "split"]
SPLITS = ("train", "val", "test")
#: how video files may be named in a folder of AVE videos
VIDEO_PATTERNS = ("{vid}.mp4", "ave_{vid}.mp4", "{vid}.mkv", "{vid}.webm", "ave_{vid}.mkv")


class AnnotationError(UsageError):
    """A malformed annotation file (the message names the line)."""


@dataclass(frozen=True)
class AveEvent:
    row: int  # 0-based line index (what the split files refer to)
    category: str
    video_id: str
    quality: str
    start_s: float
    end_s: float
    split: str = ""


def parse_annotations(path: str) -> list[AveEvent]:
    """Every event of the annotation list; a malformed line raises with its 1-based number."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such annotation file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    events = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\r").split("&")
        if len(parts) != 5:
            raise AnnotationError(f"{path}: line {i}: expected 5 fields "
                                  f"Category&VideoID&Quality&StartTime&EndTime, got {len(parts)}")
        cat, vid, quality, s, e = (p.strip() for p in parts)
        if not cat or not vid:
            raise AnnotationError(f"{path}: line {i}: empty category or video id")
        try:
            start, end = float(s), float(e)
        except ValueError:
            raise AnnotationError(f"{path}: line {i}: start/end are not numbers ({s!r}, {e!r})") from None
        # start == end occurs in the official list (an empty event): kept, never trimmed
        if not (0 <= start <= end) or end > 1e5:
            raise AnnotationError(f"{path}: line {i}: bad event interval {s}-{e}")
        if any(c in vid for c in "/\\\0") or vid in (".", ".."):
            raise AnnotationError(f"{path}: line {i}: video id {vid!r} is not a plain name")
        events.append(AveEvent(len(events), cat, vid, quality, start, end))
    if not events:
        raise AnnotationError(f"{path}: no annotations")
    return events


def read_split(path: str, n_rows: int) -> list[int]:
    """Row indices of one official split file (``order`` dataset of an ``.h5``)."""
    try:
        import h5py
    except ImportError:  # pragma: no cover - declared in the classify extra
        raise UsageError("reading the AVE split files needs h5py (pip install 'avsync[classify]')") from None
    try:
        with h5py.File(path, "r") as fh:
            key = "order" if "order" in fh else next(iter(fh.keys()))
            rows = [int(x) for x in fh[key][()].reshape(-1)]
    except (OSError, StopIteration, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable AVE split file ({' '.join(str(exc).split())[:120]})") from None
    bad = [r for r in rows if not 0 <= r < n_rows]
    if bad:
        raise UsageError(f"{path}: row index {bad[0]} outside the annotation list (0..{n_rows - 1})")
    return rows


def assign_splits(events: list[AveEvent], split_files: dict[str, str]) -> list[AveEvent]:
    """Events with their ``split`` set from the official split files ('' when in none)."""
    where: dict[int, str] = {}
    for name, path in split_files.items():
        for r in read_split(path, len(events)):
            if r in where and where[r] != name:
                raise UsageError(f"{path}: row {r} is already in the {where[r]} split")
            where[r] = name
    return [AveEvent(e.row, e.category, e.video_id, e.quality, e.start_s, e.end_s, where.get(e.row, ""))
            for e in events]


def find_split_files(folder: str) -> dict[str, str]:
    out = {}
    for name in SPLITS:
        p = os.path.join(folder, f"AVE_{name}_order.h5")
        if os.path.isfile(p):
            out[name] = p
    return out


def write_csv(events: list[AveEvent], dst: str) -> None:
    rows = [[e.row, e.category, e.video_id, e.quality, f"{e.start_s:g}", f"{e.end_s:g}", e.split] for e in events]
    atomic_csv(dst, CSV_COLUMNS, rows)


def read_csv(path: str) -> list[AveEvent]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("Category", "VideoID", "StartTime", "EndTime") if c not in (reader.fieldnames or [])]
            if missing:
                raise UsageError(f"{path}: not an AVE CSV (missing columns {', '.join(missing)})")
            out = []
            for i, r in enumerate(reader, start=2):
                try:
                    out.append(AveEvent(int(r.get("Row") or i - 2), r["Category"], r["VideoID"], r.get("Quality", ""),
                                        float(r["StartTime"]), float(r["EndTime"]), r.get("split", "")))
                except (TypeError, ValueError):
                    raise UsageError(f"{path}: line {i}: bad row") from None
            return out
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None


def find_video(folder: str, video_id: str) -> str | None:
    for pat in VIDEO_PATTERNS:
        p = os.path.join(folder, pat.format(vid=video_id))
        if os.path.isfile(p):
            return p
    return None


def event_name(e: AveEvent) -> str:
    return f"{e.video_id}_{e.start_s:g}_{e.end_s:g}.mp4"


@dataclass
class TrimResult:
    written: list[tuple[AveEvent, str]]
    missing: list[AveEvent]
    failed: list[tuple[AveEvent, str]]


def trim_events(events: list[AveEvent], video_dirs: list[str], out_dir: str,
                progress: Progress | None = None) -> TrimResult:
    """Cut every event whose video is found in one of ``video_dirs``; missing videos are listed."""
    res = TrimResult([], [], [])
    todo = []
    for e in events:
        if e.end_s <= e.start_s:
            continue  # an empty event: nothing to cut
        src = next((p for p in (find_video(d, e.video_id) for d in video_dirs) if p), None)
        if src is None:
            res.missing.append(e)
        else:
            todo.append((e, src))
    os.makedirs(out_dir, exist_ok=True)
    for k, (e, src) in enumerate(todo):
        dst = os.path.join(out_dir, event_name(e))
        if not os.path.exists(dst):
            try:
                trim(src, dst, e.start_s, e.end_s)
            except AvsyncError as exc:
                res.failed.append((e, str(exc)))
                continue
        res.written.append((e, dst))
        if progress is not None:
            progress("trim", k + 1, len(todo))
    return res


def write_trim_csv(res: TrimResult, dst: str) -> None:
    """The trimmed events as an AVE CSV plus a FilePath column (input to ``dataset synth``)."""
    rows = [[e.row, e.category, e.video_id, e.quality, f"{e.start_s:g}", f"{e.end_s:g}", e.split,
             os.path.abspath(p)] for e, p in res.written]
    atomic_csv(dst, CSV_COLUMNS + ["FilePath"], rows)
