"""The shift benchmark (../shared/spec/benchmarks.md sections 1 and 2) on folders of real clips.

For every clip and every added shift ``d`` two real files are written and measured
with the full ``detect`` pipeline:

* content shift: the decoded audio samples are moved (cut / zero-padded) and
  re-encoded as PCM next to a bit-exact copy of the video packets;
* container shift: the packets are re-muxed with a timestamp offset, content untouched.

Plus the null control (each clip's video with the audio of another clip of the same
family, same shifts) and the mismatch check (clips named ``*mismatched*``).  Scores
are printed three ways (absolute, consistency, null) per family, per clip length and
per shift kind, with timing.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

SHIFTS_MS = [0, 20, -20, 40, -40, 120, -120, 240, -240, 333, -333, 400, -400, 600, -600]
VIDEO_EXT = {".mp4", ".avi", ".mkv", ".mov", ".mpg", ".mpeg", ".flv", ".webm", ".m4v", ".ts"}

#: Base offsets of clips that are not in sync by themselves (REFERENCE.md): SyncNet's
#: +3 frames for its demo clip, and the measured extra audio lag of the re-encoded copies.
KNOWN_BASE_MS = {
    "syncnet_example.avi": 120.0,
    "syncnetfcn_test_offset_0.avi": 120.0,
    "syncnetfcn_test_offset_5.avi": 120.0 - 189.0,
    "syncnetfcn_test_offset_12.avi": 120.0 - 469.0,
}
CONFIDENT = 0.5


@dataclass
class Row:
    clip: str
    family: str
    kind: str  # content | container | null | mismatch
    shift_ms: float
    truth_ms: float | None
    estimate_ms: float | None
    confidence: float
    verdict: str
    fps: float
    duration_s: float
    seconds: float
    method: str
    error: str | None = None

    @property
    def frame_ms(self) -> float:
        return 1000.0 / (self.fps or 25.0)


# --------------------------------------------------------------------------- shifted files
def write_content_shift(video_src: str, audio_src: str, dst: str, shift_ms: float) -> None:
    """Copy the video packets of ``video_src``; take the audio of ``audio_src``, move it
    EARLIER by ``shift_ms`` (cut at the start / pad at the end, or the reverse for a
    negative shift), trim it to the original audio length and encode it as PCM."""
    import av

    from ..media.base import DecodeOptions, open_container, video_stream
    from ..media.clips import encode_audio
    from ..media.file import FileSource
    from ..media.remux import copy_packets

    with FileSource(audio_src) as ain:
        ain.require(audio=True, video=False)
        rate = ain.info.audio_rate
        channels = min(2, ain.info.audio_channels or 1)
        layout = "stereo" if channels == 2 else "mono"
        chunks = list(ain.decode(DecodeOptions(video=False, audio_rate=None, audio_format="s16", audio_layout=None,
                                               fill_gaps=False)))
    astart = float(chunks[0].start) if chunks else None
    # int16 (n, channels)
    audio = (np.concatenate([c.samples.reshape(c.samples.shape[0], -1) for c in chunks]) if chunks
             else np.zeros((0, channels), np.int16))
    n = audio.shape[0]
    k = int(round(abs(shift_ms) / 1000.0 * rate))
    pad = np.zeros((k, channels), np.int16)
    if shift_ms > 0:
        audio = np.concatenate([audio[k:], pad])[:n]
    elif shift_ms < 0:
        audio = np.concatenate([pad, audio])[:n]
    with open_container(video_src) as vin, av.open(dst, "w", format="matroska") as out:
        vs = video_stream(vin)
        ov = out.add_stream_from_template(vs)
        oa = out.add_stream("pcm_s16le", rate=rate, layout=layout)
        oa.time_base = Fraction(1, rate)
        packets = encode_audio(out, oa, audio.T, rate, format="s16", layout=layout,
                               start=int(round((astart or 0.0) * rate)),
                               convert=lambda b: np.ascontiguousarray(b.T.reshape(1, -1)), mux=False)
        for p in packets:
            out.mux(p)
        copy_packets(vin, out, {vs.index: ov})


def write_container_shift(src: str, dst: str, shift_ms: float) -> None:
    """Audio moved EARLIER by ``shift_ms`` by re-timing packets only (no re-encode)."""
    from ..media.remux import shift_streams

    shift_streams(src, dst, audio_delay_s=-shift_ms / 1000.0)


# --------------------------------------------------------------------------- measuring
def parse_methods(method: str) -> list[tuple[str, str | None]]:
    """``lips,fcn@fold1.pt`` -> [('lips', None), ('fcn', 'fold1.pt')]: several estimators measured
    on the same shifted files (the features are extracted once per file)."""
    out = []
    for spec in method.split(","):
        spec = spec.strip()
        if spec:
            name, _, weights = spec.partition("@")
            out.append((name, weights or None))
    return out or [("auto", None)]


def _measure(job: tuple) -> list[Row]:
    from ..api import DetectOptions, analyse
    from ..errors import AvsyncError
    from ..estimators.registry import estimator_class
    from ..features import extract_features
    from ..media import open_media

    clip, family, kind, shift, truth, path, method, tmpdir, audio_from = job
    specs = parse_methods(method)
    t = time.perf_counter()
    created = None
    try:
        if kind in ("content", "null"):
            created = os.path.join(tmpdir, f"{os.getpid()}_{kind}_{shift}.mkv")
            write_content_shift(path, audio_from or path, created, shift)
            target = created
        elif kind == "container":
            ext = os.path.splitext(path)[1].lower()
            created = os.path.join(tmpdir, f"{os.getpid()}_{kind}_{shift}{ext if ext in ('.mp4', '.mkv', '.mov') else '.mkv'}")
            write_container_shift(path, created, shift)
            target = created
        else:
            target = path
        t = time.perf_counter()
        from ..estimators.fcn import auto_available

        learned = any(auto_available() if n == "auto" else estimator_class(n).trajectories for n, _ in specs)
        faces = "off" if all(n == "motion" for n, _ in specs) else "auto"
        with open_media(target) as src:
            feats = extract_features(src, faces=faces, trajectories=learned)
        t_feat = time.perf_counter() - t
        rows = []
        for name, weights in specs:
            label = name if weights is None else f"{name}@{os.path.basename(weights)}"
            t1 = time.perf_counter()
            try:
                r = analyse(feats, DetectOptions(method=name, timeline=False, weights=weights))
            except AvsyncError as exc:
                rows.append(Row(clip, family, kind, shift, truth, None, 0.0, "error", 25.0, 0.0,
                                time.perf_counter() - t1, label, str(exc)))
                continue
            r.media = feats.info.to_dict()
            rows.append(Row(clip, family, kind, shift, truth, r.offset_ms, r.confidence, r.verdict,
                            float(r.media.get("video_fps") or 25.0), float(r.media.get("duration_s") or 0.0),
                            t_feat + time.perf_counter() - t1, label))
        return rows
    except AvsyncError as exc:
        return [Row(clip, family, kind, shift, truth, None, 0.0, "error", 25.0, 0.0,
                    time.perf_counter() - t, n if w is None else f"{n}@{os.path.basename(w)}", str(exc))
                for n, w in specs]
    finally:
        if created and os.path.exists(created):
            os.remove(created)


def find_clips(dirs: list[str]) -> list[tuple[str, str]]:
    out = []
    for d in dirs:
        if os.path.isfile(d):
            out.append((os.path.basename(os.path.dirname(os.path.abspath(d))), d))
            continue
        fam = os.path.basename(os.path.normpath(d))
        for name in sorted(os.listdir(d)):
            if os.path.splitext(name)[1].lower() in VIDEO_EXT:
                out.append((fam, os.path.join(d, name)))
    return out


def plan_jobs(clips, method: str, shifts=SHIFTS_MS, tmpdir: str = "/tmp") -> list[tuple]:
    jobs = []
    by_family = defaultdict(list)
    for fam, p in clips:
        if "mismatched" not in os.path.basename(p):
            by_family[fam].append(p)
    for fam, p in clips:
        name = os.path.basename(p)
        if "mismatched" in name:
            jobs.append((name, fam, "mismatch", 0.0, None, p, method, tmpdir, None))
            continue
        base = KNOWN_BASE_MS.get(name, 0.0)
        peers = by_family[fam]
        other = peers[(peers.index(p) + 1) % len(peers)] if len(peers) > 1 else None
        for d in shifts:
            jobs.append((name, fam, "content", float(d), base + d, p, method, tmpdir, None))
            jobs.append((name, fam, "container", float(d), base + d, p, method, tmpdir, None))
            if other is not None:
                jobs.append((name, fam, "null", float(d), None, p, method, tmpdir, other))
    return jobs


# --------------------------------------------------------------------------- scoring
def _pct(x) -> str:
    return "  -  " if x is None or not np.isfinite(x) else f"{100 * x:5.1f}"


def score(rows: list[Row]) -> dict:
    """All the figures of one group of rows (one family / length / kind)."""
    real = [r for r in rows if r.kind in ("content", "container")]
    null = [r for r in rows if r.kind == "null"]
    out = {"n": len(real), "n_null": len(null)}
    if real:
        err = np.array([np.inf if r.estimate_ms is None else abs(r.estimate_ms - r.truth_ms) for r in real])
        fr = np.array([r.frame_ms for r in real])
        conf = np.array([r.confidence for r in real])
        ok1 = err <= fr + 1e-6
        ok2 = err <= 2 * fr + 1e-6
        out["abs_1f"] = ok1.mean()
        out["abs_2f"] = ok2.mean()
        fin = np.isfinite(err)
        out["mae_ms"] = float(np.mean(err[fin])) if fin.any() else np.nan
        out["abstain"] = float(np.mean(~fin))
        out["confident_wrong"] = float(np.mean((conf >= CONFIDENT) & ~ok2))
        c = conf >= CONFIDENT
        out["coverage"] = float(c.mean())
        out["acc_confident"] = float(ok1[c].mean()) if c.any() else np.nan
        order = np.argsort(-conf, kind="stable")[: max(1, int(round(0.8 * len(real))))]
        out["acc_top80"] = float(ok1[order].mean())
        # consistency against the same clip's own e(0) of the same kind
        e0 = {(r.clip, r.kind): r.estimate_ms for r in real if r.shift_ms == 0}
        cons = []
        for r in real:
            b = e0.get((r.clip, r.kind))
            cons.append(r.estimate_ms is not None and b is not None and
                        abs(r.estimate_ms - b - r.shift_ms) <= r.frame_ms + 1e-6)
        out["consistency"] = float(np.mean(cons))
    if null:
        out["null_false_conf"] = float(np.mean([(r.verdict == "in_sync") or (r.confidence >= CONFIDENT)
                                                for r in null]))
        e0 = {r.clip: r.estimate_ms for r in null if r.shift_ms == 0}
        out["null_consistency"] = float(np.mean([
            r.estimate_ms is not None and e0.get(r.clip) is not None
            and abs(r.estimate_ms - e0[r.clip] - r.shift_ms) <= r.frame_ms + 1e-6 for r in null]))
    return out


COLUMNS = [("n", "n", "{:4d}"), ("abs_1f", "abs<=1f%", None), ("abs_2f", "abs<=2f%", None),
           ("mae_ms", "MAE ms", "{:7.1f}"), ("consistency", "consist%", None),
           ("null_consistency", "nullcons%", None), ("null_false_conf", "nullFC%", None),
           ("confident_wrong", "confWrong%", None), ("coverage", "cover%", None),
           ("acc_confident", "acc@conf%", None), ("acc_top80", "acc@top80%", None), ("abstain", "abstain%", None)]


def format_table(title: str, groups: dict[str, list[Row]]) -> str:
    head = f"{'group':<28}" + "".join(f"{c[1]:>11}" for c in COLUMNS)
    lines = [title, head, "-" * len(head)]
    for g, rows in groups.items():
        s = score(rows)
        cells = []
        for key, _, fmt in COLUMNS:
            v = s.get(key)
            if v is None:
                cells.append(f"{'-':>11}")
            elif fmt:
                cells.append(f"{fmt.format(v):>11}" if np.isfinite(v) else f"{'-':>11}")
            else:
                cells.append(f"{_pct(v):>11}")
        lines.append(f"{g:<28}" + "".join(cells))
    return "\n".join(lines)


def report(rows: list[Row], wall_s: float, workers: int) -> str:
    real = [r for r in rows if r.kind != "mismatch"]
    out = []
    by = defaultdict(list)
    # a clip's length class comes from its unshifted copy (a container shift lengthens the file)
    length_of = {r.clip: r.duration_s for r in real if r.kind == "content" and r.shift_ms == 0 and not r.error}
    for r in real:
        length = "<5s" if length_of.get(r.clip, r.duration_s) < 5.0 else ">=5s"
        if r.kind == "null":
            for k in ("content", "container"):
                by[(r.family, k, length)].append(r)
                by[(r.family, k, "all")].append(r)
        else:
            by[(r.family, r.kind, length)].append(r)
            by[(r.family, r.kind, "all")].append(r)
    groups = {f"{f} {k} {ln}": by[(f, k, ln)] for (f, k, ln) in sorted(by)}
    out.append(format_table("Shift benchmark (absolute = vs base + shift; null = other clip's audio)", groups))
    mism = [r for r in rows if r.kind == "mismatch"]
    if mism:
        bad = [r for r in mism if r.verdict == "in_sync" and r.confidence >= CONFIDENT]
        out.append(f"\nMismatch check: {len(mism)} clips, {len(bad)} came back in_sync with confidence >= 0.5 "
                   f"({', '.join(r.clip for r in bad) or 'none'}); verdicts: "
                   + ", ".join(f"{r.clip}={r.verdict}({r.confidence:.2f})" for r in mism))
    errors = [r for r in rows if r.error]
    if errors:
        out.append(f"\n{len(errors)} measurements failed: " + "; ".join(f"{r.clip} {r.kind} {r.shift_ms}: {r.error}"
                                                                          for r in errors[:5]))
    secs = np.array([r.seconds for r in rows if not r.error])
    dur = np.array([r.duration_s for r in rows if not r.error])
    if secs.size:
        out.append(f"\nTiming: {len(rows)} measurements in {wall_s:.1f} s wall with {workers} workers; detect "
                   f"median {np.median(secs):.2f} s per clip, {dur.sum() / secs.sum():.1f}x real time per process.")
    return "\n".join(out)


def run(dirs: list[str], method: str = "auto", shifts=SHIFTS_MS, workers: int | None = None,
        progress=None) -> tuple[list[Row], float]:
    clips = find_clips(dirs)
    if not clips:
        from ..errors import UsageError

        raise UsageError(f"no video clips found in {', '.join(dirs)}")
    workers = workers or max(1, os.cpu_count() or 1)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="avsync-bench-") as tmp:
        jobs = plan_jobs(clips, method, shifts, tmp)
        rows = []
        with ProcessPoolExecutor(workers) as ex:
            for i, batch in enumerate(ex.map(_measure, jobs, chunksize=4)):
                rows.extend(batch)
                if progress:
                    progress(i + 1, len(jobs))
    return rows, time.perf_counter() - t


def main(args) -> int:
    import platform

    def progress(done, total):
        if sys.stderr.isatty() or done == total or done % 50 == 0:
            print(f"\rbench: {done}/{total} measurements", end="" if done < total else "\n", file=sys.stderr)

    workers = getattr(args, "workers", None) or os.cpu_count() or 1
    shifts = SHIFTS_MS
    if getattr(args, "shifts", None):
        from ..errors import UsageError

        try:
            shifts = [float(x) for x in args.shifts.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"--shifts: not a comma-separated list of ms: {args.shifts!r}") from None
        if 0.0 not in shifts:
            shifts = [0.0, *shifts]  # consistency is judged against the unshifted estimate
    rows, wall = run(args.dirs, args.method, shifts=shifts, workers=workers, progress=progress)
    print(f"avsync bench shift, method {args.method}, {time.strftime('%Y-%m-%d')}, "
          f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}")
    methods = list(dict.fromkeys(r.method for r in rows))
    for m in methods:
        if len(methods) > 1:
            print(f"\n=== method {m}")
        print(report([r for r in rows if r.method == m], wall, workers))
    if args.out:
        with open(args.out, "w") as fh:
            for r in rows:
                fh.write(json.dumps(asdict(r)) + "\n")
    return 0
