"""Synthetic sync / out-of-sync samples from real clips (``avsync dataset synth``).

For every source segment (a trimmed AVE event, or a whole clip from a folder):

* a segment of 2 s or more is cut into 1-3 sub-segments, each at least 1 s long;
* every sub-segment gives ``variants`` samples; each sample is Positive (a plain copy)
  or Negative, drawn from a shuffled deck so the two are balanced;
* a Negative gets one of four faults, also drawn from a balanced deck:
  - ``time_shift``: the audio is taken from ``shift`` seconds earlier or later in the
    source (100 ms up to 80 % of the sub-segment, bounded by the audio available
    outside it; a sub-segment with no 100 ms of audio on either side cannot have one),
  - ``noise``: white noise added to the audio at a random SNR (recorded),
  - ``mute``: the audio track removed, or (``mute_variant=silent``) replaced by silence,
  - ``distort``: the audio's timing warped (played ``tempo`` times faster or slower, as
    ffmpeg's ``asetrate``/``setpts`` would: it drifts away from the picture).

The plan (sub-segments, labels, faults, parameters, splits) is drawn from one
generator seeded with ``seed`` before anything is rendered, so it does not depend on
the number of workers.  Splits are by SOURCE clip: every sample of a clip lands in
the same split.  Files and the metadata CSV are written to temporary names and
renamed when complete.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import AvsyncError, UsageError
from ..progress import Progress
from .util import atomic_csv

KINDS = ("time_shift", "noise", "mute", "distort")
#: the first columns of the metadata CSV, in this order (the seed's format)
BASE_COLUMNS = ["VideoID", "StartTime", "EndTime", "Label", "MisalignmentType", "Category", "FilePath"]
EXTRA_COLUMNS = ["shift_ms", "snr_db", "tempo", "mute_variant", "source", "split", "sample_id", "segment_labels"]
COLUMNS = BASE_COLUMNS + EXTRA_COLUMNS
MEDIA_EXT = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".flv", ".m4v", ".ts")


@dataclass(frozen=True)
class SynthOptions:
    seed: int = 0
    #: samples drawn from every sub-segment (each with its own label)
    variants: int = 1
    max_cuts: int = 3
    min_sub_s: float = 1.0
    min_shift_s: float = 0.1
    max_shift_frac: float = 0.8
    snr_db: tuple[float, float] = (-5.0, 10.0)
    tempo: tuple[float, float] = (0.75, 1.33)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    workers: int = 1
    #: seed of the per-source split draw (None: ``seed``); lets a second draw of samples
    #: from the same clips keep the first draw's splits
    split_seed: int | None = None
    #: every source in this split (e.g. an extra training pool); None: drawn per source
    assign_split: str | None = None
    #: keep only the samples of these splits (None: all)
    only_splits: tuple[str, ...] | None = None
    #: share of the time shifts whose size is drawn in [min_shift_s, small_shift_s] (the hard
    #: 100-200 ms case); the rest up to ``max_shift_frac`` of the sub-segment.  Which shifts are
    #: small comes from its own generator, so the rest of the plan is the same as with 0.
    small_shift_share: float = 0.0
    small_shift_s: float = 0.2
    #: composite samples instead: a clean stretch of ``composite_s`` seconds (whole seconds, at most 15)
    #: with 0-2 faulty sections of whole seconds (``section_s``), labelled per second
    composite: bool = False
    composite_s: tuple[int, int] = (4, 15)
    section_s: tuple[int, int] = (1, 4)
    #: the fault deck of composite samples (a kind listed twice is drawn twice as often)
    composite_kinds: tuple[str, ...] = KINDS
    #: keep only the samples of sources of these categories (folder names); applied after
    #: the split draw, so splits stay those of the whole set
    only_categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Source:
    video_id: str
    path: str
    duration_s: float
    category: str = ""
    split: str = ""
    #: time of the file's 0 s in the original video (AVE events: the event start)
    origin_s: float = 0.0


@dataclass
class SampleSpec:
    sample_id: str
    source: Source
    t0: float  # seconds in the source file
    t1: float
    label: str  # Positive | Negative
    kind: str  # None | time_shift | noise | mute | distort
    shift_s: float = 0.0  # audio DELAY in seconds (> 0: the audio lags)
    snr_db: float | None = None
    tempo: float | None = None
    mute_variant: str = ""
    noise_seed: int = 0
    split: str = ""
    path: str = ""
    #: composite samples: the faulty sections (whole seconds from t0) and one label digit per
    #: second (index into ("None",) + KINDS)
    sections: list = field(default_factory=list)
    segment_labels: str = ""

    def row(self) -> list:
        s = self.source
        shift_ms = "" if self.kind != "time_shift" else f"{-self.shift_s * 1000:.1f}"  # contract sign
        return [s.video_id, f"{s.origin_s + self.t0:.3f}", f"{s.origin_s + self.t1:.3f}", self.label,
                self.kind, s.category, self.path, shift_ms,
                "" if self.snr_db is None else f"{self.snr_db:.2f}",
                "" if self.tempo is None else f"{self.tempo:.4f}", self.mute_variant, s.path, self.split,
                self.sample_id, self.segment_labels]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "clip"


def sources_from_dirs(dirs: list[str], include: list[str] | None = None) -> list[Source]:
    """Every media file of the folders (category = folder name), durations probed;
    ``include``: shell patterns, a file is taken when its name matches one."""
    from fnmatch import fnmatch

    from ..media.clips import probe_duration

    out = []
    for d in dirs:
        if not os.path.isdir(d):
            raise UsageError(f"{d}: not a folder")
        cat = os.path.basename(os.path.normpath(d))
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if include and not any(fnmatch(name, pat) for pat in include):
                continue
            if os.path.isfile(p) and name.lower().endswith(MEDIA_EXT):
                out.append(Source(os.path.splitext(name)[0], os.path.abspath(p), probe_duration(p), cat))
    if not out:
        raise UsageError(f"no media files in {', '.join(dirs)}")
    return out


def sources_from_csv(path: str, official_split: bool = True) -> list[Source]:
    """Sources from a trimmed-events CSV (``dataset ave --videos ... --trimmed-csv``); with
    ``official_split`` False their split column is ignored and splits are drawn by source."""
    from ..media.clips import probe_duration

    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        reader = csv.DictReader(fh)
        need = ("VideoID", "FilePath")
        if any(c not in (reader.fieldnames or []) for c in need):
            raise UsageError(f"{path}: needs the columns {', '.join(need)} (the CSV written by 'dataset ave --trim-to')")
        out = []
        base = os.path.dirname(os.path.abspath(path))
        for r in reader:
            p = r["FilePath"] if os.path.isabs(r["FilePath"]) else os.path.join(base, r["FilePath"])
            start = float(r.get("StartTime") or 0)
            vid = f"{r['VideoID']}_{start:g}"
            out.append(Source(vid, p, probe_duration(p), r.get("Category", ""),
                              r.get("split", "") if official_split else "", start))
    if not out:
        raise UsageError(f"{path}: no rows")
    return out


def _cuts(rng: np.random.Generator, dur: float, opt: SynthOptions) -> list[tuple[float, float]]:
    """1-3 sub-segments of at least ``min_sub_s`` covering the segment."""
    if dur < opt.min_sub_s:
        return []
    if dur < 2 * opt.min_sub_s:
        return [(0.0, dur)]
    n_max = int(min(opt.max_cuts, dur // opt.min_sub_s))
    n = int(rng.integers(1, n_max + 1))
    slack = dur - n * opt.min_sub_s
    w = rng.dirichlet(np.ones(n)) * slack
    lengths = opt.min_sub_s + w
    edges = np.concatenate([[0.0], np.cumsum(lengths)])
    edges[-1] = dur
    return [(float(edges[i]), float(edges[i + 1])) for i in range(n)]


def _assign_splits(sources: list[Source], opt: SynthOptions) -> dict[str, str]:
    """Split per source: the source's own (official) split when it has one, else an
    exact-proportion shuffle of the remaining sources drawn from ``seed``."""
    if opt.assign_split:
        return {s.path: opt.assign_split for s in sources}
    out = {s.path: s.split for s in sources if s.split}
    rest = sorted({s.path for s in sources if not s.split})
    seed = opt.seed if opt.split_seed is None else opt.split_seed
    order = np.random.default_rng([seed, 7]).permutation(len(rest))
    n = len(rest)
    n_tr = int(round(opt.split_fractions[0] * n))
    n_va = int(round(opt.split_fractions[1] * n))
    if n >= 3:
        n_va = max(n_va, 1)
        n_tr = min(n_tr, n - n_va - 1)
    for k, i in enumerate(order):
        out[rest[i]] = "train" if k < n_tr else "val" if k < n_tr + n_va else "test"
    return out


def _draw_fault(rng, strata, kind: str, dur: float, before: float, after: float, opt: SynthOptions) -> dict:
    """Parameters of one fault of ``kind`` over ``dur`` seconds (``before``/``after``: source
    audio available on either side, for a time shift)."""
    if kind == "time_shift":
        hi = opt.max_shift_frac * dur
        dirs = [d for d, room in ((1, before), (-1, after)) if min(hi, room) >= opt.min_shift_s]
        d = int(rng.choice(dirs))
        top = min(hi, before if d > 0 else after)
        if opt.small_shift_share > 0 and strata.random() < opt.small_shift_share:
            top = min(top, opt.small_shift_s)
        return {"shift_s": d * float(opt.min_shift_s + (top - opt.min_shift_s) * rng.random())}
    if kind == "noise":
        return {"snr_db": float(rng.uniform(*opt.snr_db)), "noise_seed": int(rng.integers(2**31))}
    if kind == "mute":
        return {"mute_variant": "silent"}
    lo, hi_t = opt.tempo
    return {"tempo": float(rng.uniform(lo, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, hi_t))}


def plan_composite(sources: list[Source], opt: SynthOptions, out_dir: str) -> list[SampleSpec]:
    """Composite samples: per source, ``variants`` stretches of 4-15 whole seconds, each with
    0, 1 or 2 faulty sections of 1-4 whole seconds (any kind; mute as a silent section),
    at least 1 s apart, labelled per second."""
    rng = np.random.default_rng([opt.seed, 17])
    strata = np.random.default_rng([opt.seed, 13])
    splits = _assign_splits(sources, opt)
    kind_deck: list[str] = []
    n_deck: list[int] = []
    specs = []
    lo_len, hi_len = opt.composite_s
    for src in sorted(sources, key=lambda s: (s.video_id, s.path, s.origin_s)):
        top = int(np.floor(src.duration_s - 0.05))
        if top < lo_len:
            continue
        for v in range(opt.variants):
            L = int(rng.integers(lo_len, min(hi_len, top) + 1))
            t0 = float(rng.uniform(0.0, src.duration_s - 0.05 - L))
            if not n_deck:
                n_deck = list(rng.permutation([0, 1, 1, 2]))
            n_sec = int(n_deck.pop())
            labels = [0] * L
            sections = []
            for _ in range(n_sec):
                for _try in range(20):
                    ln = int(rng.integers(opt.section_s[0], opt.section_s[1] + 1))
                    if ln > L - 2:
                        continue
                    a = int(rng.integers(1, L - ln))  # a clean second before and after
                    if any(b0 - 1 < a + ln and a < b1 + 1 for b0, b1, _k, _p in sections):
                        continue
                    break
                else:
                    continue
                if not kind_deck:
                    kind_deck = list(rng.permutation(list(opt.composite_kinds)))
                kind = str(kind_deck.pop())
                a_abs, b_abs = t0 + a, t0 + a + ln
                params = _draw_fault(rng, strata, kind, float(ln), a_abs, src.duration_s - b_abs, opt) \
                    if kind != "time_shift" or max(a_abs, src.duration_s - b_abs) >= opt.min_shift_s \
                    else None
                if params is None:
                    continue
                sections.append((a, a + ln, kind, params))
                for k in range(a, a + ln):
                    labels[k] = 1 + KINDS.index(kind)
            sections.sort()
            sid = f"{_safe(src.video_id)}_c{v}"
            first = sections[0] if sections else None
            spec = SampleSpec(sid, src, t0, t0 + L, "Negative" if sections else "Positive",
                              first[2] if first else "None", split=splits[src.path],
                              path=os.path.join(out_dir, sid + ".mp4"))
            if first:
                for k_, val in first[3].items():
                    setattr(spec, k_, val)
            spec.sections = sections
            spec.segment_labels = "".join(str(x) for x in labels)
            specs.append(spec)
    return _keep(specs, opt)


def _keep(specs: list[SampleSpec], opt: SynthOptions) -> list[SampleSpec]:
    if opt.only_splits is not None:
        specs = [s for s in specs if s.split in opt.only_splits]
    if opt.only_categories is not None:
        specs = [s for s in specs if s.source.category in opt.only_categories]
    return specs


def plan(sources: list[Source], opt: SynthOptions, out_dir: str) -> list[SampleSpec]:
    """Every sample to render, drawn deterministically from ``opt.seed``."""
    if opt.composite:
        return plan_composite(sources, opt, out_dir)
    rng = np.random.default_rng(opt.seed)
    strata = np.random.default_rng([opt.seed, 13])
    splits = _assign_splits(sources, opt)
    label_deck: list[str] = []
    kind_deck: list[str] = []
    specs = []
    for src in sorted(sources, key=lambda s: (s.video_id, s.path, s.origin_s)):
        for k, (t0, t1) in enumerate(_cuts(rng, src.duration_s, opt)):
            for v in range(opt.variants):
                if not label_deck:
                    label_deck = list(rng.permutation(["Positive", "Negative"]))
                label = str(label_deck.pop())
                sid = f"{_safe(src.video_id)}_{k}_{v}"
                spec = SampleSpec(sid, src, t0, t1, label, "None", split=splits[src.path],
                                  path=os.path.join(out_dir, sid + ".mp4"))
                if label == "Negative":
                    dur = t1 - t0
                    before, after = t0, src.duration_s - t1
                    hi = opt.max_shift_frac * dur
                    can_shift = hi >= opt.min_shift_s and max(before, after) >= opt.min_shift_s
                    if not kind_deck:
                        kind_deck = list(rng.permutation(KINDS))
                    pick = next((i for i in range(len(kind_deck) - 1, -1, -1)
                                 if kind_deck[i] != "time_shift" or can_shift), None)
                    if pick is None:  # only time_shift left and it cannot be made here
                        kind = str(rng.choice([k_ for k_ in KINDS if k_ != "time_shift"]))
                    else:
                        kind = str(kind_deck.pop(pick))
                    spec.kind = kind
                    if kind == "time_shift":
                        # audio delayed (> 0) takes sound from before t0; advanced from after t1
                        dirs = [d for d, room in ((1, before), (-1, after)) if min(hi, room) >= opt.min_shift_s]
                        d = int(rng.choice(dirs))
                        room = before if d > 0 else after
                        top = min(hi, room)
                        if opt.small_shift_share > 0 and strata.random() < opt.small_shift_share:
                            top = min(top, opt.small_shift_s)
                        # == rng.uniform(min_shift_s, top), one draw either way
                        spec.shift_s = d * float(opt.min_shift_s + (top - opt.min_shift_s) * rng.random())
                    elif kind == "noise":
                        spec.snr_db = float(rng.uniform(*opt.snr_db))
                        spec.noise_seed = int(rng.integers(2**31))
                    elif kind == "mute":
                        spec.mute_variant = str(rng.choice(["removed", "silent"]))
                    elif kind == "distort":
                        lo, hi_t = opt.tempo
                        spec.tempo = float(rng.uniform(lo, 0.9) if rng.random() < 0.5 else rng.uniform(1.1, hi_t))
                specs.append(spec)
    return _keep(specs, opt)


def _tempo_audio(clip, t0: float, dur: float, tempo: float) -> np.ndarray:
    """Output audio of length ``dur`` that plays the source from ``t0`` ``tempo`` times as fast."""
    n = int(round(dur * clip.audio_rate))
    src = clip.audio_between(t0, t0 + dur * tempo + 0.01)
    pos = np.arange(n) * tempo
    idx = np.arange(src.shape[1])
    return np.stack([np.interp(pos, idx, ch, right=0.0) for ch in src]).astype(np.float32)


def _add_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    p = float(np.mean(audio.astype(np.float64) ** 2)) if audio.size else 0.0
    rng = np.random.default_rng(seed)
    if p < 1e-10:
        p = 1e-4  # silent source: noise at -40 dBFS + SNR
    sigma = np.sqrt(p / (10 ** (snr_db / 10)))
    audio = audio + rng.normal(0.0, sigma, audio.shape).astype(np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio / peak if peak > 1.0 else audio  # unclipped: signal and noise scaled together


def _composite_audio(clip, spec: SampleSpec) -> np.ndarray:
    """The source's audio over [t0, t1) with every faulty section replaced."""
    r = clip.audio_rate
    audio = clip.audio_between(spec.t0, spec.t1)
    for a, b, kind, p in spec.sections:
        i0, i1 = int(round(a * r)), min(int(round(b * r)), audio.shape[1])
        n = i1 - i0
        if n <= 0:
            continue
        a_abs, b_abs = spec.t0 + a, spec.t0 + b
        if kind == "time_shift":
            part = clip.audio_between(a_abs - p["shift_s"], b_abs - p["shift_s"])
        elif kind == "noise":
            part = _add_noise(clip.audio_between(a_abs, b_abs), p["snr_db"], p["noise_seed"])
        elif kind == "mute":
            part = np.zeros((audio.shape[0], n), np.float32)
        else:
            part = _tempo_audio(clip, a_abs, b_abs - a_abs, p["tempo"])
        m = min(n, part.shape[1])
        audio[:, i0 : i0 + m] = part[:, :m]
    return audio


def render(spec: SampleSpec) -> str:
    """Write one sample file (atomically)."""
    from ..media.clips import read_clip, segment_frames, write_clip

    src = spec.source
    clip = read_clip(src.path, spec.t0, spec.t1)
    frames, times = segment_frames(clip, spec.t0, spec.t1)
    if not frames:
        raise AvsyncError(f"no pictures between {spec.t0:.2f} and {spec.t1:.2f} s", src.path)
    dur = spec.t1 - spec.t0
    if spec.sections:
        audio = None if clip.audio is None else _composite_audio(clip, spec)
        return write_clip(spec.path, frames, times, clip.fps, audio, clip.audio_rate)
    audio = None
    if clip.audio is not None:
        if spec.kind == "time_shift":
            audio = clip.audio_between(spec.t0 - spec.shift_s, spec.t1 - spec.shift_s)
        elif spec.kind == "distort":
            audio = _tempo_audio(clip, spec.t0, dur, spec.tempo or 1.0)
        else:
            audio = clip.audio_between(spec.t0, spec.t1)
        if spec.kind == "noise":
            p = float(np.mean(audio.astype(np.float64) ** 2))
            rng = np.random.default_rng(spec.noise_seed)
            if p < 1e-10:
                p = 1e-4  # silent source: noise at -40 dBFS + SNR
            sigma = np.sqrt(p / (10 ** ((spec.snr_db or 0.0) / 10)))
            audio = audio + rng.normal(0.0, sigma, audio.shape).astype(np.float32)
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            if peak > 1.0:  # keep it unclipped: scale signal and noise together (SNR unchanged)
                audio = audio / peak
    if spec.kind == "mute":
        if spec.mute_variant == "removed":
            audio = None
        else:
            n = int(round(dur * clip.audio_rate))
            audio = np.zeros((1 if clip.audio is None else clip.audio.shape[0], n), np.float32)
    elif clip.audio is None:
        audio = None  # a source without sound stays without
    return write_clip(spec.path, frames, times, clip.fps, audio, clip.audio_rate)


def _render_job(spec: SampleSpec):
    try:
        render(spec)
        return spec.sample_id, None
    except AvsyncError as exc:
        return spec.sample_id, str(exc)
    except Exception as exc:  # one bad source must not stop the others
        return spec.sample_id, f"{spec.source.path}: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


@dataclass
class SynthResult:
    samples: list[SampleSpec]
    failed: list[tuple[str, str]] = field(default_factory=list)
    metadata: str = ""


def synthesize(sources: list[Source], out_dir: str, metadata: str, opt: SynthOptions = SynthOptions(),
               progress: Progress | None = None, resume: bool = False) -> SynthResult:
    """Plan, render (``opt.workers`` processes) and write the metadata CSV."""
    os.makedirs(out_dir, exist_ok=True)
    specs = plan(sources, opt, os.path.abspath(out_dir))
    todo = [s for s in specs if not (resume and os.path.isfile(s.path))]
    failed: dict[str, str] = {}
    done = len(specs) - len(todo)
    if progress is not None:
        progress("synth", done, len(specs))
    if opt.workers > 1 and len(todo) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(opt.workers) as pool:
            for sid, err in pool.imap_unordered(_render_job, todo):
                done += 1
                if err:
                    failed[sid] = err
                if progress is not None:
                    progress("synth", done, len(specs))
    else:
        for s in todo:
            sid, err = _render_job(s)
            done += 1
            if err:
                failed[sid] = err
            if progress is not None:
                progress("synth", done, len(specs))
    ok = [s for s in specs if s.sample_id not in failed]
    atomic_csv(metadata, COLUMNS, [s.row() for s in ok])
    return SynthResult(ok, sorted(failed.items()), metadata)


def read_metadata(path: str) -> list[dict]:
    """Rows of a metadata CSV (checked for the required columns); FilePath made absolute."""
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if cols[: len(BASE_COLUMNS)] != BASE_COLUMNS:
            raise UsageError(f"{path}: not a synth metadata CSV (first columns must be {', '.join(BASE_COLUMNS)})")
        base = os.path.dirname(os.path.abspath(path))
        rows = []
        for i, r in enumerate(reader, start=2):
            if r["Label"] not in ("Positive", "Negative") or r["MisalignmentType"] not in ("None",) + KINDS:
                raise UsageError(f"{path}: line {i}: bad Label/MisalignmentType")
            if not os.path.isabs(r["FilePath"]):
                r["FilePath"] = os.path.join(base, r["FilePath"])
            r.setdefault("sample_id", os.path.splitext(os.path.basename(r["FilePath"]))[0])
            if not r.get("sample_id"):
                r["sample_id"] = os.path.splitext(os.path.basename(r["FilePath"]))[0]
            r.setdefault("split", "")
            r.setdefault("source", r["VideoID"])
            rows.append(r)
    if not rows:
        raise UsageError(f"{path}: no samples")
    return rows


def digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for b in iter(lambda: fh.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
