"""``avsync`` command line: argument parsing and printing for the detect / fix / sample commands
(the work is :mod:`avsync.api`'s; the options are checked by :mod:`avsync.options`).

Rules (docs/contract): ``--json`` puts exactly one JSON document per input on
stdout (JSON Lines for several) and nothing else; progress and logs go to
stderr.  Exit codes: 0 ran, 1 ``--check`` found an input out of sync, 2 bad
usage, 3 unreadable or unusable media (one line ``avsync: PATH: reason`` on
stderr, never a traceback).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import sys
import textwrap
import warnings

from .. import __version__
from ..errors import AvsyncError, CannotMeasure, CannotOpen, UsageError
from ..options import CROPS, PRECISIONS, SYNCNET_FRAMES, DetectOptions
from .argtypes import (ANALYSIS_OPTIONS, add_analysis_arguments, audio_stream, finite, given_options, number,
                       positive)

PROG = "avsync"
#: the schema of the error document ``detect --json`` / ``--out`` writes for an input that failed
ERROR_SCHEMA = "avsync.error/1"
EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_MEDIA = 0, 1, 2, 3

log = logging.getLogger("avsync.cli")

#: modules (relative to this package) whose ``register(subparsers)`` adds more commands;
#: each must import its heavy dependencies lazily, inside the command it runs
EXTENSIONS: tuple[str, ...] = (
    ".batch",
    ".monitor",
    ".serve",
    ".bench",
    ".pipeline",
    ".train",
    ".export_onnx",
)
#: listed first in ``avsync --help``: measuring and fixing media
USER_COMMANDS = ("detect", "fix", "sample", "batch", "monitor", "serve")
#: listed after them: benchmarks, datasets, training and model export (any other command joins these)
DEVELOPER_COMMANDS = ("bench", "dataset", "features", "train", "evaluate", "classify", "export-onnx")


# -- helpers ---------------------------------------------------------------------------
def _err(msg: str) -> None:
    """One line on stderr, prefixed with the program name."""
    text = " ".join(str(msg).split())
    try:
        sys.stderr.write(f"{PROG}: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # pragma: no cover - stderr gone
        pass


def _error_line(path: str, exc: BaseException) -> str:
    if isinstance(exc, AvsyncError):
        if exc.path:
            return str(exc)
        return f"{path}: {exc}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{path}: internal error ({type(exc).__name__}: {text[:300]})"


def error_record(path: str, line: str, exc: BaseException) -> dict:
    """The JSON document of an input that could not be measured (``detect --json`` / ``--out``)."""
    code = exc.exit_code if isinstance(exc, AvsyncError) else EXIT_MEDIA
    return {"schema": ERROR_SCHEMA, "input": path, "media": {"path": path}, "status": "error", "error": line,
            "exit_code": code, "verdict": None, "offset_ms": None}


def _stem(path: str) -> str:
    base = path.rstrip("/").split("?")[0].split("#")[0]
    name = os.path.basename(base) or "media"
    root = os.path.splitext(name)[0] or name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in root)


def plot_paths(plot: str, inputs: list[str]) -> list[str]:
    """``--plot`` name for each input: as given for one input, else with the input's stem inserted."""
    if len(inputs) == 1:
        return [plot]
    root, ext = os.path.splitext(plot)
    ext = ext or ".png"
    out, seen = [], {}
    for p in inputs:
        stem = _stem(p)
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        out.append(f"{root}_{stem}{'' if n == 0 else f'_{n}'}{ext}")
    return out


def _want_progress(args) -> bool:
    if getattr(args, "no_progress", False):
        return False
    if getattr(args, "progress", False):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _options(args) -> DetectOptions:
    """The checked options of ``detect`` / ``fix`` (:class:`avsync.options.DetectOptions`)."""
    extra = {"fusion": False} if getattr(args, "no_fusion", False) else {}
    precision = _precision(args)
    if precision is not None:
        extra["precision"] = precision
    track = getattr(args, "audio_stream", None)
    if isinstance(track, int):
        extra["audio_stream"] = track
    return DetectOptions(**given_options(args, ANALYSIS_OPTIONS + ("weights", "crop", "debug_dir",
                                                                "syncnet_frames")), **extra)


def _precision(args) -> str | None:
    p = getattr(args, "precision", None)
    if args.fast and p not in (None, "fast"):
        raise UsageError(f"--fast and --precision {p} contradict each other")
    return "fast" if args.fast else p


def _bar(path: str, args):
    from ..progress import ProgressBar

    return ProgressBar(_stem(path), _want_progress(args))


def _detect(path: str, options, args):
    """The reports of ``path``: one, or one per audio track with ``--audio-stream all``."""
    from ..api import detect, detect_tracks

    bar = _bar(path, args)
    try:
        if getattr(args, "audio_stream", None) == "all":
            return detect_tracks(path, options, bar)
        return [detect(path, options, bar)]
    finally:
        bar.close()


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- detect ----------------------------------------------------------------------------
def cmd_detect(args) -> int:
    from ..report import result_row

    options = _options(args)
    if args.weights is not None and not os.path.isfile(args.weights):
        raise UsageError(f"{args.weights}: weights file not found")
    plots = plot_paths(args.plot, args.media) if args.plot else [None] * len(args.media)
    out_fh = None
    if args.out:
        try:
            out_fh = open(args.out, "w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    csv_rows: list[dict] | None = [] if args.csv else None
    if args.csv:
        _check_writable(args.csv)
    failed = out_of_sync = 0
    first_text = True
    try:
        for path, png in zip(args.media, plots):
            try:
                if os.path.isdir(path):
                    raise CannotOpen(f"is a folder; to measure every file in it: avsync batch {path} --out "
                                     "results.jsonl", path)
                reports = _detect(path, options, args)
            except UsageError:
                raise  # the same for every input: stop, exit 2
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # AvsyncError or anything unexpected: one line, go on
                log.debug("detect failed", exc_info=True)
                line = _error_line(path, exc)
                _err(line)
                failed += 1
                if csv_rows is not None:
                    csv_rows.append(result_row(path, error=line))
                # --json / --out: one document per input, a failed one included
                record = json.dumps(error_record(path, line, exc), allow_nan=False)
                if args.json:
                    _print(record)
                if out_fh is not None:
                    out_fh.write(record + "\n")
                    out_fh.flush()
                continue
            pngs = [png] * len(reports) if len(reports) == 1 or not png else [
                f"{os.path.splitext(png)[0]}_a{r.media.get('audio_stream')}{os.path.splitext(png)[1] or '.png'}"
                for r in reports]
            for report, png_k in zip(reports, pngs):
                if csv_rows is not None:
                    csv_rows.append(result_row(path, report, elapsed_s=report.elapsed_s))
                if report.verdict == "out_of_sync":
                    out_of_sync += 1
                line = report.to_json()
                if args.json:
                    _print(line)
                else:
                    if not first_text:
                        _print("")
                    _print(report.to_text())
                    first_text = False
                if out_fh is not None:
                    out_fh.write(line + "\n")
                    out_fh.flush()
                if png_k:
                    failed += _write_plot(report, png_k)
    finally:
        if out_fh is not None:
            out_fh.close()
        if csv_rows is not None:
            _write_csv(args.csv, csv_rows)
    if failed:
        return EXIT_MEDIA
    if args.check and out_of_sync:
        return EXIT_CHECK
    return EXIT_OK


def _write_plot(report, png: str) -> int:
    """Draw ``report`` to ``png`` and say where on stderr; 1 when it could not be written."""
    try:
        from ..plot import plot_report

        plot_report(report, png)
    except Exception as exc:
        _err(f"{png}: cannot write plot ({' '.join(str(exc).split()) or type(exc).__name__})")
        return 1
    _err(f"plot written to {png}")
    return 0


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UsageError(f"{path}: cannot write (folder missing or read-only)")


def _write_csv(path: str, rows: list[dict]) -> None:
    """All rows at once (:data:`avsync.report.ROW_FIELDS`), to a temporary name renamed when complete."""
    from ..report import csv_cells, csv_writer

    tmp = f"{path}.part"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            w = csv_writer(fh)
            w.writeheader()
            for r in rows:
                w.writerow(csv_cells(r))
        os.replace(tmp, path)
    except OSError as exc:
        _err(f"{path}: cannot write CSV ({exc.strerror or exc})")
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- fix -------------------------------------------------------------------------------
def cmd_fix(args) -> int:
    from ..api import fix

    src, dst = args.media, args.output
    options = _options(args)
    bar = _bar(src, args)
    try:
        if args.audio_stream == "all":
            raise UsageError("fix corrects one audio track: give --audio-stream N")
        result = fix(src, dst, args.offset_ms, options, verify=not args.no_verify, progress=bar, mode=args.mode)
    except UsageError:
        raise
    except KeyboardInterrupt:
        raise
    except CannotMeasure as exc:
        _err(f"{exc}; give --offset-ms")
        return EXIT_MEDIA
    except Exception as exc:
        log.debug("fix failed", exc_info=True)
        path = dst if isinstance(exc, AvsyncError) and exc.path == dst else src
        _err(_error_line(path, exc))
        return EXIT_MEDIA
    finally:
        bar.close()
    _print(result.to_json() if args.json else result.to_text())
    return EXIT_OK


# -- sample ----------------------------------------------------------------------------
def cmd_sample(args) -> int:
    try:
        from ..media.synth import make_sample
    except ImportError as exc:
        _err(f"sample: synthetic media is not available ({exc})")
        return EXIT_MEDIA
    try:
        make_sample(args.output, offset_ms=args.offset_ms, duration_s=args.duration)
    except Exception as exc:
        log.debug("sample failed", exc_info=True)
        _err(_error_line(args.output, exc))
        return EXIT_MEDIA
    side = "audio leads" if args.offset_ms > 0 else "audio lags" if args.offset_ms < 0 else "in sync"
    _print(f"wrote {args.output} ({args.duration:g} s, offset {args.offset_ms:+g} ms, {side})")
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------
def _analysis_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("analysis")
    add_analysis_arguments(g)
    g.add_argument("--weights", metavar="PATH",
                   help="weights file for learned methods (syncnet: syncnet_v2.model; or $AVSYNC_SYNCNET_WEIGHTS; "
                        "fcn: MODEL.pt (torch) or MODEL.onnx (ONNX Runtime, from `avsync export-onnx`))")
    g.add_argument("--no-fusion", action="store_true",
                   help="fcn: the learned model alone, not stacked with the weight-free lips estimate")
    g.add_argument("--crop", metavar="MODE",
                   help=f"syncnet ({' or '.join(CROPS)}): auto = detect and track faces (default); none = the input "
                        "is already a face crop")
    g.add_argument("--fast", action="store_true", help="syncnet: bfloat16 inference (about 2x faster)")
    g.add_argument("--precision", metavar="P",
                   help=f"syncnet ({', '.join(PRECISIONS)}): exact (torch fp32, default), fast (= --fast, bfloat16), "
                        "onnx (ONNX Runtime fp32; needs the onnx extra)")
    g.add_argument("--syncnet-frames", metavar="F",
                   help=f"syncnet with --crop none ({' or '.join(SYNCNET_FRAMES)}): jpeg = the public reference's "
                        "pictures (ffmpeg's MJPEG round trip at its default rate control, emulated in memory; "
                        "its LSE-D/LSE-C, default); lossless = the decoded pictures themselves")
    g.add_argument("--debug-dir", metavar="DIR", help="syncnet: write a PNG of the face crops per input here")
    pg = p.add_mutually_exclusive_group()
    pg.add_argument("--progress", action="store_true", help="progress bar on stderr even when not a TTY")
    pg.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    return p


class _Commands:
    """The subparsers as the commands' ``register`` functions see them: user commands are listed
    by argparse under 'commands'; the help line of every other command is kept for the epilog."""

    def __init__(self, sub):
        self._sub = sub
        self.developer: dict[str, str] = {}

    def add_parser(self, name: str, **kw):
        if name not in USER_COMMANDS:
            self.developer[name] = kw.pop("help", "") or ""
            kw.setdefault("description", self.developer[name] or None)  # `avsync CMD --help` says it too
        return self._sub.add_parser(name, **kw)

    def __getattr__(self, attr):
        return getattr(self._sub, attr)


def _epilog(developer: dict[str, str]) -> str:
    order = [c for c in DEVELOPER_COMMANDS if c in developer] + [c for c in developer if c not in DEVELOPER_COMMANDS]
    cols = max(60, shutil.get_terminal_size().columns - 2)  # as argparse wraps its help
    width = max((len(c) for c in order), default=0) + 2
    lines = ["developer and research commands:"]
    for c in order:
        head = f"    {c:<{width}}"
        lines.append(textwrap.fill(developer[c], cols, initial_indent=head, subsequent_indent=" " * len(head)))
    text = [
        f"The commands ({', '.join(USER_COMMANDS)}) measure and fix media; the developer and research "
        f"commands ({', '.join(order)}) benchmark avsync, build datasets and train, evaluate and export the "
        "learned models.",
        "offset_ms > 0: the audio leads the video; < 0: the audio lags. "
        "Exit codes: 0 ran, 1 --check found an out-of-sync input, 2 bad usage, 3 unusable media.",
    ]
    return "\n".join(lines) + "\n\n" + "\n\n".join(textwrap.fill(t, cols) for t in text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Find and fix audio-video synchronisation faults.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.required = True
    sub = _Commands(commands)
    parent = _analysis_parent()

    d = sub.add_parser("detect", parents=[parent], help="measure offset, confidence, verdict, timeline, drift",
                       description="Measure the audio-video offset of each MEDIA file.")
    d.add_argument("media", nargs="+", metavar="MEDIA")
    d.add_argument("--json", action="store_true", help="one JSON report per input on stdout (JSON Lines); an input that fails gets an error document "
                        "(schema avsync.error/1, status error, the one-line error)")
    d.add_argument("--out", metavar="FILE", help="also write the JSON report(s) to FILE (JSON Lines)")
    d.add_argument("--plot", metavar="PNG",
                   help="draw the timeline to PNG (several inputs: the input's stem is added to the name)")
    d.add_argument("--check", action="store_true", help="exit 1 when some input is out of sync")
    d.add_argument("--audio-stream", type=audio_stream, metavar="N|all",
                   help="the audio track to measure: its number among the audio streams (0 = the first, the "
                        "default) or 'all' for one result per track")
    d.add_argument("--csv", metavar="FILE",
                   help="also write one CSV row per input (the columns of `avsync batch --csv`: input, status, "
                        "offset, confidence, verdict, ..., lse_d, lse_c)")
    d.set_defaults(func=cmd_detect)

    f = sub.add_parser("fix", parents=[parent], help="write a corrected copy without re-encoding",
                       description="Write a re-timed copy of MEDIA to OUT (no re-encoding), then re-measure it.")
    f.add_argument("media", metavar="MEDIA")
    f.add_argument("output", metavar="OUT")
    f.add_argument("--offset-ms", type=number, metavar="X",
                   help="offset to correct (contract sign: > 0 audio leads); measured when omitted")
    f.add_argument("--json", action="store_true", help="print the before/after result as one JSON document")
    f.add_argument("--no-verify", action="store_true", help="do not re-measure OUT")
    f.add_argument("--mode", choices=("auto", "shift"), default="auto",
                   help="auto (default): when the offset steps, move each segment's audio by its own offset; "
                        "when it drifts like a frame-rate conform, change the audio's speed (both re-encode the "
                        "audio only); else move the whole stream without re-encoding. shift: always move the "
                        "whole stream by the whole-file offset")
    f.add_argument("--conform", dest="mode", action="store_const", const="auto",
                   help="undo a frame-rate conform drift when one is found (what --mode auto does)")
    f.add_argument("--audio-stream", type=audio_stream, metavar="N",
                   help="the audio track to measure and correct (0 = the first audio stream; default 0); the "
                        "other tracks are copied unchanged")
    f.set_defaults(func=cmd_fix)

    s = sub.add_parser("sample", help="write a synthetic test clip with a known offset",
                       description="Write a synthetic clip (flashes and beeps) whose audio leads by --offset-ms.")
    s.add_argument("output", metavar="OUT")
    s.add_argument("--offset-ms", type=finite, default=0.0, metavar="X",
                   help="audio lead in ms (negative: lag; default 0)")
    s.add_argument("--duration", type=positive, default=8.0, metavar="S", help="seconds (default 8)")
    s.set_defaults(func=cmd_sample)

    for module in EXTENSIONS:
        try:
            importlib.import_module(module, __package__).register(sub)
        except Exception as exc:  # pragma: no cover - a broken optional part must not break the CLI
            log.debug("%s commands unavailable: %s", module, exc)
    parser.epilog = _epilog(sub.developer)
    return parser


def _setup_logging(verbose: int) -> None:
    if not verbose:
        # numeric warnings (empty slices, ...) are diagnostics, not results: shown with -v only
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return
    level = logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger("avsync")
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help/--version, 2 for bad usage
        code = exc.code
        return code if isinstance(code, int) else EXIT_USAGE
    _setup_logging(args.verbose)
    try:
        rc = args.func(args)
        return int(rc or 0)
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except AvsyncError as exc:
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): quiet exit
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        _err(f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})")
        return EXIT_MEDIA


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
