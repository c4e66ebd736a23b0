"""`avsync dataset | features | evaluate | classify` (the AVE-style pipeline; its classifiers are
trained by `avsync train`, :mod:`avsync.cli.train`).

Registered by :mod:`avsync.cli.main` through its EXTENSIONS list.  torch, h5py and
the dataset code are imported only inside the commands that need them.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import AvsyncError, UsageError
from .main import _err, _want_progress

EXIT_OK, EXIT_MEDIA = 0, 3


def _workers(n: int | None) -> int:
    if n is None:
        return max(1, min(2, os.cpu_count() or 1))
    if n < 1:
        raise UsageError(f"--workers must be >= 1, got {n}")
    return n


def _progress_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", action="store_true", help="progress on stderr even when not a TTY")
    g.add_argument("--no-progress", action="store_true", help="no progress output")


def register(subparsers) -> None:
    d = subparsers.add_parser("dataset", help="AVE annotations to CSV, trimming, synthetic misalignments")
    dsub = d.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    dsub.required = True
    a = dsub.add_parser("ave", help="AVE annotation list + official splits -> CSV; optionally trim the events",
                        description="Parse AVE_Annotations.txt (Category&VideoID&Quality&StartTime&EndTime) and the "
                                    "AVE_{train,val,test}_order.h5 split files into a CSV with a split column.")
    a.add_argument("annotations", metavar="AVE_Annotations.txt")
    a.add_argument("--out", required=True, metavar="CSV", help="the events CSV to write")
    a.add_argument("--splits-dir", metavar="DIR",
                   help="folder with AVE_*_order.h5 (default: the annotation file's folder)")
    a.add_argument("--videos", action="append", default=[], metavar="DIR",
                   help="folder of AVE videos named VideoID.mp4 or ave_VideoID.mp4 (repeatable): trim every event")
    a.add_argument("--trim-to", metavar="DIR", help="where the trimmed events go (with --videos)")
    a.add_argument("--trimmed-csv", metavar="CSV",
                   help="CSV of the trimmed events (input of 'dataset synth --events'; default DIR/events.csv)")
    _progress_args(a)
    a.set_defaults(func=cmd_dataset_ave)

    s = dsub.add_parser("synth", help="positive and misaligned samples from clips or trimmed events",
                        description="Cut every segment into 1-3 sub-segments (>= 1 s) and make balanced positive and "
                                    "negative (time_shift / noise / mute / distort) samples, deterministically.")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", metavar="CSV", help="trimmed events CSV written by 'dataset ave --trim-to'")
    src.add_argument("--clips", nargs="+", metavar="DIR", help="folders of clips (each whole clip is a segment)")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the sample files")
    s.add_argument("--metadata", metavar="CSV", help="metadata CSV (default DIR/metadata.csv)")
    s.add_argument("--seed", type=int, default=0, help="seed of every random draw (cuts, faults, shifts; default 0)")
    s.add_argument("--variants", type=int, default=1, help="samples drawn per sub-segment (default 1)")
    s.add_argument("--workers", type=int, default=None, help="parallel processes (default: up to 2)")
    s.add_argument("--resume", action="store_true", help="keep sample files that already exist")
    s.add_argument("--include", action="append", default=None, metavar="PATTERN",
                   help="--clips: only files whose name matches this shell pattern (repeatable)")
    s.add_argument("--small-shifts", type=float, default=0.0, metavar="SHARE",
                   help="share of the time shifts drawn in 100-200 ms (the hard case; default 0: all "
                        "drawn in 100 ms .. 80 %% of the sub-segment)")
    s.add_argument("--composite", action="store_true",
                   help="composite samples: clean stretches of 4-15 s with 0-2 faulty sections of 1-4 s, "
                        "labelled per second (column segment_labels); sources shorter than 4 s are skipped")
    s.add_argument("--composite-kinds", metavar="K,K,...",
                   help="fault deck of --composite (default time_shift,noise,mute,distort; repeat a kind to "
                        "draw it more often)")
    s.add_argument("--only-category", action="append", default=None, metavar="NAME",
                   help="keep only the samples of sources in this category (folder name), after the split draw")
    s.add_argument("--split-seed", type=int, default=None, help="seed of the per-source split (default --seed)")
    s.add_argument("--assign-split", choices=("train", "val", "test"),
                   help="put every source in this split (an extra training pool)")
    s.add_argument("--only-split", action="append", choices=("train", "val", "test"), default=None,
                   help="render only the samples of this split (repeatable)")
    s.add_argument("--split-by", choices=("official", "seed"), default="official",
                   help="--events: keep the official AVE split (default) or draw train/val/test per source from --seed")
    _progress_args(s)
    s.set_defaults(func=cmd_dataset_synth)

    f = subparsers.add_parser("features", help="per-sample motion / RMS / MFCC / frames / lag-profile features",
                              description="Extract the classifier features of every sample of a metadata CSV "
                                          "(or of MEDIA files) into compressed NPZ files; existing ones are kept.")
    f.add_argument("inputs", nargs="*", metavar="MEDIA", help="media files (instead of --metadata)")
    f.add_argument("--metadata", metavar="CSV", help="synth metadata CSV")
    f.add_argument("--out", required=True, metavar="DIR", help="folder for the feature files")
    f.add_argument("--npy", action="store_true", help="a folder of .npy files per sample instead of one .npz")
    f.add_argument("--workers", type=int, default=None, help="parallel processes (default: up to 2)")
    f.add_argument("--force", action="store_true", help="recompute existing feature files")
    _progress_args(f)
    f.set_defaults(func=cmd_features)

    e = subparsers.add_parser("evaluate", help="metrics, ROC and confusion matrix of trained classifiers")
    e.add_argument("models", nargs="+", metavar="MODEL")
    e.add_argument("--metadata", required=True, metavar="CSV", help="synth metadata CSV of the samples")
    e.add_argument("--features", required=True, metavar="DIR", help="features folder of those samples (from `avsync features`)")
    e.add_argument("--split", default="test", help="split to evaluate (default test)")
    e.add_argument("--plot", metavar="PNG", help="ROC curves + confusion matrix")
    e.add_argument("--json", metavar="FILE", help="write all metrics as JSON")
    e.add_argument("--offset-rule", action="store_true",
                   help="also evaluate every model with classify's offset rule on top (rows MODEL+offset-rule)")
    e.set_defaults(func=cmd_evaluate)

    c = subparsers.add_parser("classify", help="label every 1-s segment: in sync or not, and the fault",
                              description="Label every 1-second segment of MEDIA (schema avsync.segments/1).")
    c.add_argument("media", nargs="+", metavar="MEDIA")
    c.add_argument("--model", metavar="PATH", help="model file (default: the one shipped with avsync)")
    c.add_argument("--json", action="store_true", help="one JSON document per input on stdout")
    c.add_argument("--offset-rule", choices=("on", "off"), default="on",
                   help="also flag seconds whose core-estimator offset (3-s and 1.5-s windows) differs from "
                        "the file's own offset, or a whole file that is out (default on)")
    c.add_argument("--offset-tolerance", type=float, default=None, metavar="MS",
                   help="tolerance of the offset rule in ms (default 60)")
    c.set_defaults(func=cmd_classify)


# -- dataset ---------------------------------------------------------------------------
def cmd_dataset_ave(args) -> int:
    from ..datasets import ave
    from ..datasets.util import count_progress

    events = ave.parse_annotations(args.annotations)
    sdir = args.splits_dir or os.path.dirname(os.path.abspath(args.annotations))
    split_files = ave.find_split_files(sdir)
    if not split_files:
        raise UsageError(f"{sdir}: no AVE_{{train,val,test}}_order.h5 split files")
    events = ave.assign_splits(events, split_files)
    ave.write_csv(events, args.out)
    counts = {k: sum(e.split == k for e in events) for k in ("train", "val", "test", "")}
    print(f"wrote {args.out}: {len(events)} events (train {counts['train']}, val {counts['val']}, "
          f"test {counts['test']}, in no split {counts['']})")
    if not args.videos:
        return EXIT_OK
    if not args.trim_to:
        raise UsageError("--videos needs --trim-to DIR")
    for d in args.videos:
        if not os.path.isdir(d):
            raise UsageError(f"{d}: not a folder")
    res = ave.trim_events(events, args.videos, args.trim_to, count_progress("trim", _want_progress(args)))
    csv_path = args.trimmed_csv or os.path.join(args.trim_to, "events.csv")
    ave.write_trim_csv(res, csv_path)
    print(f"trimmed {len(res.written)} events into {args.trim_to} (list: {csv_path}); "
          f"{len(res.missing)} events have no video in {', '.join(args.videos)}; {len(res.failed)} failed")
    for e, why in res.failed:
        _err(why)
    if res.missing and len(res.missing) <= 20:
        for e in res.missing:
            print(f"  missing: {e.video_id} ({e.category}, {e.start_s:g}-{e.end_s:g} s)")
    elif res.missing:
        miss = os.path.join(args.trim_to, "missing.txt")
        from ..datasets.util import atomic_write_bytes

        atomic_write_bytes(miss, "".join(f"{e.video_id}\n" for e in res.missing).encode())
        print(f"  the missing video ids are listed in {miss}")
    return EXIT_MEDIA if res.failed and not res.written else EXIT_OK


def _kinds(text: str) -> tuple[str, ...]:
    from ..datasets.synth import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise UsageError(f"--composite-kinds: unknown fault {bad[0] if bad else text!r}; choose from {', '.join(KINDS)}")
    return kinds


def cmd_dataset_synth(args) -> int:
    from ..datasets import synth
    from ..datasets.util import count_progress

    if args.variants < 1:
        raise UsageError("--variants must be >= 1")
    opt = synth.SynthOptions(seed=args.seed, variants=args.variants, workers=_workers(args.workers),
                             split_seed=args.split_seed, assign_split=args.assign_split,
                             only_splits=tuple(args.only_split) if args.only_split else None,
                             small_shift_share=args.small_shifts, composite=args.composite,
                             only_categories=tuple(args.only_category) if args.only_category else None,
                             **({"composite_kinds": _kinds(args.composite_kinds)} if args.composite_kinds else {}))
    if not 0.0 <= args.small_shifts <= 1.0:
        raise UsageError("--small-shifts must be a share between 0 and 1")
    sources = synth.sources_from_csv(args.events, args.split_by == "official") if args.events else synth.sources_from_dirs(args.clips, args.include)
    meta = args.metadata or os.path.join(args.out, "metadata.csv")
    res = synth.synthesize(sources, args.out, meta, opt, count_progress("synth", _want_progress(args)), args.resume)
    for sid, why in res.failed:
        _err(f"{sid}: {why}")
    kinds: dict[str, int] = {}
    for s in res.samples:
        kind = "in sync" if s.kind in (None, "None", "none") else s.kind  # the positive samples
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"wrote {len(res.samples)} samples from {len(sources)} sources to {args.out}; metadata {meta}; "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + (f"; {len(res.failed)} failed" if res.failed else ""))
    return EXIT_MEDIA if res.failed else EXIT_OK


# -- features --------------------------------------------------------------------------
def cmd_features(args) -> int:
    from ..classify.features import extract_many
    from ..datasets.util import count_progress

    if bool(args.metadata) == bool(args.inputs):
        raise UsageError("give either --metadata CSV or MEDIA files")
    if args.metadata:
        from ..datasets.synth import read_metadata

        items = [(r["sample_id"], r["FilePath"]) for r in read_metadata(args.metadata)]
    else:
        items = []
        for p in args.inputs:
            stem = os.path.splitext(os.path.basename(p))[0] or "media"
            items.append(("".join(c if c.isalnum() or c in "-_." else "_" for c in stem), p))
    res = extract_many(items, args.out, args.npy, _workers(args.workers),
                       count_progress("features", _want_progress(args)), args.force)
    for path, why in res.failed:
        _err(why)
    print(f"features: {res.written} written, {res.skipped} already there, {len(res.failed)} failed -> {args.out}")
    return EXIT_MEDIA if res.failed else EXIT_OK


# -- evaluate --------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    import json

    from ..classify.evaluate import evaluate, load_samples, plot, table
    from ..classify.vectors import RICH_NAMES
    from ..nn.classifiers import load_model

    models = [load_model(p, RICH_NAMES) for p in args.models]
    samples, missing = load_samples(args.metadata, args.features, (args.split,), missing_ok=False)
    if missing:
        _err(f"{len(missing)} {args.split} samples have no feature file (skipped)")
    evals = []
    for path, m in zip(args.models, models):
        ev = evaluate(m, samples)
        ev.model = os.path.splitext(os.path.basename(path))[0]
        evals.append(ev)
        if args.offset_rule and m.inputs == "rich":
            from ..classify.decision import RulePredictor
            from ..classify.segments import DEFAULT_OFFSET_RULE

            ev = evaluate(RulePredictor(m, DEFAULT_OFFSET_RULE), samples)
            ev.model = os.path.splitext(os.path.basename(path))[0] + "+offset-rule"
            evals.append(ev)
    print(f"split {args.split}: {len(samples)} samples from {len({s.source for s in samples})} source clips, "
          f"{sum(len(s.times) for s in samples)} 1-s segments; desync = positive class")
    print(table(evals))
    if args.json:
        from ..datasets.util import atomic_write_bytes

        doc = {"split": args.split, "samples": len(samples),
               "models": {e.model: e.metrics.to_dict() for e in evals}}
        atomic_write_bytes(args.json, json.dumps(doc, indent=1).encode())
    if args.plot:
        plot(evals, args.plot)
        print(f"plot: {args.plot}")
    return EXIT_OK


# -- classify --------------------------------------------------------------------------
def cmd_classify(args) -> int:
    import dataclasses

    from ..classify.segments import DEFAULT_OFFSET_RULE, classify

    rule = None
    if args.offset_rule == "on":
        rule = DEFAULT_OFFSET_RULE
        if args.offset_tolerance is not None:
            if not args.offset_tolerance > 0:
                raise UsageError("--offset-tolerance must be a positive number of ms")
            rule = dataclasses.replace(rule, tolerance_ms=float(args.offset_tolerance))
    elif args.offset_tolerance is not None:
        raise UsageError("--offset-tolerance needs --offset-rule on")
    failed = 0
    for i, path in enumerate(args.media):
        try:
            rep = classify(path, args.model, offset_rule=rule)
        except UsageError:
            raise
        except AvsyncError as exc:
            _err(str(exc) if exc.path else f"{path}: {exc}")
            failed += 1
            continue
        if args.json:
            sys.stdout.write(rep.to_json() + "\n")
        else:
            if i:
                sys.stdout.write("\n")
            sys.stdout.write(rep.to_text() + "\n")
        sys.stdout.flush()
    return EXIT_MEDIA if failed else EXIT_OK
