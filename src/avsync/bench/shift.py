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

Each clip's own base offset comes from a ``TRUTH.csv`` beside the clips (in their folder
or a parent folder: ``file,base_offset_ms,status,evidence`` with ``file`` relative to the
CSV; status ``published``, ``audited``, ``corpus`` or ``unknown``).  The ABSOLUTE score
covers only clips with a known base; consistency and confident errors cover all clips
(on a clip of unknown base an answer is a confident error when it is more than two frames
from the clip's own consensus, the median of its shift-corrected estimates).
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

from .truth import fold_path, read_folds, read_truth, truth_for  # noqa: F401  (read_truth: re-exported)

SHIFTS_MS = [0, 20, -20, 40, -40, 120, -120, 240, -240, 333, -333, 400, -400, 600, -600]
VIDEO_EXT = {".mp4", ".avi", ".mkv", ".mov", ".mpg", ".mpeg", ".flv", ".webm", ".m4v", ".ts"}

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
    #: where the clip's base offset comes from (TRUTH.csv status), "none" without a TRUTH.csv row
    base: str = "none"

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

    clip, family, kind, shift, truth, path, method, tmpdir, audio_from, status, *calib = job
    if calib and calib[0]:
        from ..estimators.correlation import use_calibration

        with open(calib[0], encoding="utf-8") as fh:
            use_calibration(json.load(fh))
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
        learned = any(n != "auto" and estimator_class(n).trajectories for n, _ in specs)
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
                                time.perf_counter() - t1, label, str(exc), status))
                continue
            r.media = feats.info.to_dict()
            rows.append(Row(clip, family, kind, shift, truth, r.offset_ms, r.confidence, r.verdict,
                            float(r.media.get("video_fps") or 25.0), float(r.media.get("duration_s") or 0.0),
                            t_feat + time.perf_counter() - t1, label, None, status))
        return rows
    except AvsyncError as exc:
        return [Row(clip, family, kind, shift, truth, None, 0.0, "error", 25.0, 0.0,
                    time.perf_counter() - t, n if w is None else f"{n}@{os.path.basename(w)}", str(exc), status)
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


def plan_jobs(clips, method: str, shifts=SHIFTS_MS, tmpdir: str = "/tmp",
              truth: dict[str, tuple[float | None, str]] | None = None) -> list[tuple]:
    truth = truth if truth is not None else truth_for(clips)
    jobs = []
    by_family = defaultdict(list)
    for fam, p in clips:
        if "mismatched" not in os.path.basename(p):
            by_family[fam].append(p)
    for fam, p in clips:
        name = os.path.basename(p)
        if "mismatched" in name:
            jobs.append((name, fam, "mismatch", 0.0, None, p, method, tmpdir, None, "none"))
            continue
        base, status = truth.get(p, (None, "none"))
        peers = by_family[fam]
        other = peers[(peers.index(p) + 1) % len(peers)] if len(peers) > 1 else None
        for d in shifts:
            real = None if base is None else base + d
            jobs.append((name, fam, "content", float(d), real, p, method, tmpdir, None, status))
            jobs.append((name, fam, "container", float(d), real, p, method, tmpdir, None, status))
            if other is not None:
                jobs.append((name, fam, "null", float(d), None, p, method, tmpdir, other, status))
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
        fr = np.array([r.frame_ms for r in real])
        conf = np.array([r.confidence for r in real])
        known = np.array([r.truth_ms is not None for r in real])
        est = np.array([np.nan if r.estimate_ms is None else r.estimate_ms for r in real])
        out["n_known"] = int(known.sum())
        out["clips"] = len({r.clip for r in real})
        out["clips_known"] = len({r.clip for r in real if r.truth_ms is not None})
        # error against the truth (known base) or against the clip's own consensus (unknown base)
        consensus = _consensus(real)
        ref = np.array([r.truth_ms if r.truth_ms is not None else
                        (np.nan if consensus.get((r.clip, r.kind)) is None else consensus[(r.clip, r.kind)] + r.shift_ms)
                        for r in real])
        with np.errstate(invalid="ignore"):
            err = np.where(np.isfinite(est), np.abs(est - ref), np.inf)
        err = np.where(np.isnan(err), np.inf, err)
        ok1 = err <= fr + 1e-6
        ok2 = err <= 2 * fr + 1e-6
        out["abstain"] = float(np.mean(~np.isfinite(est)))
        out["confident_wrong"] = float(np.mean((conf >= CONFIDENT) & np.isfinite(est) & ~ok2))
        c = conf >= CONFIDENT
        out["coverage"] = float(c.mean())
        if known.any():
            k1, k2, ek = ok1[known], ok2[known], err[known]
            out["abs_1f"] = k1.mean()
            out["abs_2f"] = k2.mean()
            fin = np.isfinite(ek)
            out["mae_ms"] = float(np.mean(ek[fin])) if fin.any() else np.nan
            ck = c[known]
            out["acc_confident"] = float(k1[ck].mean()) if ck.any() else np.nan
            out["coverage_known"] = float(ck.mean())
            order = np.argsort(-conf[known], kind="stable")[: max(1, int(round(0.8 * known.sum())))]
            out["acc_top80"] = float(k1[order].mean())
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


def _consensus(rows: list[Row]) -> dict[tuple[str, str], float]:
    """Per (clip, kind): the median shift-corrected estimate ``e(d) - d`` (the clip's own base
    as the method sees it), over the answers given with confidence >= CONFIDENT, or over all
    answers when none is confident."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r.estimate_ms is not None:
            groups[(r.clip, r.kind)].append((r.estimate_ms - r.shift_ms, r.confidence))
    out = {}
    for key, vals in groups.items():
        conf = [v for v, c in vals if c >= CONFIDENT]
        out[key] = float(np.median(conf if conf else [v for v, _ in vals]))
    return out


COLUMNS = [("n", "n", "{:4d}"), ("n_known", "known", "{:5d}"), ("abs_1f", "abs<=1f%", None), ("abs_2f", "abs<=2f%", None),
           ("mae_ms", "MAE ms", "{:7.1f}"), ("consistency", "consist%", None),
           ("null_consistency", "nullcons%", None), ("null_false_conf", "nullFC%", None),
           ("confident_wrong", "confWrong%", None), ("coverage", "cover%", None),
           ("acc_confident", "acc@conf%", None), ("acc_top80", "acc@top80%", None), ("abstain", "abstain%", None)]

LEGEND = """\
n: measurements (clip x shift); known: of them on clips whose base offset TRUTH.csv gives (published,
audited or corpus). abs<=1f% / abs<=2f%: estimate within one / two frames of base + shift, on known clips
only; MAE: their mean absolute error. consist%: e(d) - e(0) within one frame of d (all clips).
nullcons% / nullFC%: the same on null pairs (another clip's audio; no true offset) and the share of them
answered in_sync or with confidence >= 0.5. confWrong%: answers off by more than two frames with
confidence >= 0.5, over all clips (unknown base: judged against the clip's consensus, the median of its
confident shift-corrected estimates). cover%: answers with confidence >= 0.5. acc@conf%: within one frame
among them (known clips). acc@top80%: within one frame among the 80 % most confident (known clips).
abstain%: no offset at all."""


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


def _ms(x) -> str:
    return "-" if x is None else f"{x:+.0f} ms"


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
    out.append(LEGEND)
    clips = sorted({r.clip for r in real if r.kind != "null"})
    known = sorted({r.clip for r in real if r.kind != "null" and r.truth_ms is not None})
    statuses = defaultdict(int)
    for c in clips:
        statuses[next(r.base for r in real if r.clip == c)] += 1
    out.append(f"\nBase offsets: {len(known)} of {len(clips)} clips known ("
               + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) + ")")
    unknown = [c for c in clips if c not in known]
    if unknown:
        cons = _consensus([r for r in real if r.kind == "content"])
        e0 = {r.clip: r for r in real if r.kind == "content" and r.shift_ms == 0}
        out.append("Clips of unknown base (absolute not scored), unshifted estimate / consensus: " + "; ".join(
            f"{c} {_ms(e0[c].estimate_ms) if c in e0 else '-'} ({e0[c].confidence:.2f}) / {_ms(cons.get((c, 'content')))}"
            if c in e0 else c for c in unknown))
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


def calibration_for(clip: str, calibration: str, folds: str | None) -> str:
    """The calibration table a clip is measured with: with ``folds``, the table of the clip's
    fold (``CAL_foldK.json``, fitted without that fold's clips and speakers); else ``calibration``."""
    if not folds:
        return calibration
    for k, (clips, _) in read_folds(folds).items():
        if clip in clips:
            return fold_path(calibration, k)
    return calibration if os.path.isfile(calibration) else ""  # "": the shipped table


def run(dirs: list[str], method: str = "auto", shifts=SHIFTS_MS, workers: int | None = None,
        progress=None, truth_csv: str | None = None, calibration: str | None = None,
        folds: str | None = None) -> tuple[list[Row], float]:
    clips = find_clips(dirs)
    if not clips:
        from ..errors import UsageError

        raise UsageError(f"no video clips found in {', '.join(dirs)}")
    workers = workers or max(1, os.cpu_count() or 1)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="avsync-bench-") as tmp:
        jobs = plan_jobs(clips, method, shifts, tmp, truth_for(clips, truth_csv))
        if calibration:
            jobs = [(*j, calibration_for(j[0], calibration, folds)) for j in jobs]
        rows = []
        with ProcessPoolExecutor(workers) as ex:
            for i, batch in enumerate(ex.map(_measure, jobs, chunksize=4)):
                rows.extend(batch)
                if progress:
                    progress(i + 1, len(jobs))
    # one frame is the ORIGINAL clip's frame period: a shifted copy re-muxed into another
    # container may report another (nominal) rate for the same pictures
    fps = {os.path.basename(p): _clip_fps(p) for _, p in clips}
    for r in rows:
        if fps.get(r.clip):
            r.fps = fps[r.clip]
    return rows, time.perf_counter() - t


def _clip_fps(path: str) -> float | None:
    from ..errors import AvsyncError
    from ..media import open_media

    try:
        with open_media(path) as src:
            return src.info.video_fps
    except AvsyncError:
        return None


def load_rows(path: str, dirs: list[str], truth_csv: str | None = None) -> list[Row]:
    """Rows saved by ``--out``, with each clip's truth taken afresh from TRUTH.csv."""
    from ..errors import UsageError

    clips = find_clips(dirs)
    truth = {os.path.basename(p): t for p, t in truth_for(clips, truth_csv).items()}
    fields = set(Row.__dataclass_fields__)
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    d = {k: v for k, v in json.loads(line).items() if k in fields}
                    rows.append(Row(**d))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a file of bench rows ({exc})") from None
    for r in rows:
        base, status = truth.get(r.clip, (None, "none"))
        r.base = status
        if r.kind in ("content", "container"):
            r.truth_ms = None if base is None else base + r.shift_ms
    return rows


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
    if getattr(args, "rows", None):
        rows, wall = load_rows(args.rows, args.dirs, getattr(args, "truth", None)), 0.0
    else:
        folds, calibration = getattr(args, "folds", None), getattr(args, "calibration", None)
        if folds and not calibration:
            from ..errors import UsageError

            raise UsageError("--folds needs --calibration CAL.json (the tables CAL_foldK.json beside it; clips in "
                             "no fold use CAL.json, or the shipped table when there is none)")
        rows, wall = run(args.dirs, args.method, shifts=shifts, workers=workers, progress=progress,
                         truth_csv=getattr(args, "truth", None), calibration=calibration, folds=folds)
        if folds:
            print(f"leave-speaker-out: each clip measured with the calibration of its fold in {folds} "
                  f"(fitted without that fold's clips and its speakers' training clips)")
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
