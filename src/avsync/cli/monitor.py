"""``avsync monitor URL``: follow an HLS stream, one line per window, alerts on faults."""
from __future__ import annotations

import json
import signal
import sys

from .argtypes import ANALYSIS_OPTIONS, add_analysis_arguments, given_options, number, whole

#: options of MonitorOptions / FollowOptions taken from the command line (None: not given)
_MONITOR = {"alert_after": "alert_after", "recover_after": "recover_after", "max_windows": "max_windows",
            "duration": "max_duration_s", "live_edge": "live_edge_segments"}
_FOLLOW = ("timeout_s", "reconnect_s", "poll_s")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "monitor", help="follow a live or VOD HLS stream, one result per window, alerts on faults",
        description="Follow an HLS playlist (http(s) URL or local .m3u8), judge the sync of every window of "
                    "stream time and raise an alert when it stays out of tolerance. Ctrl-C stops with a summary.")
    p.add_argument("url", metavar="URL")
    p.add_argument("--json", action="store_true", help="JSON Lines: one object per window/alert/gap and a summary")
    add_analysis_arguments(p, timeline=False)
    p.add_argument("--window-s", type=number, metavar="S", help="window of stream time (default 5)")
    p.add_argument("--alert-after", type=whole, metavar="N",
                   help="alert after N consecutive out-of-sync windows (default 2)")
    p.add_argument("--recover-after", type=whole, metavar="N",
                   help="clear the alert after N consecutive in-sync windows (default 1)")
    p.add_argument("--max-windows", type=whole, metavar="N", help="stop after N windows")
    p.add_argument("--duration", type=number, metavar="S", help="stop after S seconds of stream time")
    p.add_argument("--poll-s", type=number, metavar="S",
                   help="live playlist reload interval (default: half the target duration)")
    p.add_argument("--timeout-s", type=number, metavar="S",
                   help="deadline of one segment, every try included, and of one playlist load (default 10)")
    p.add_argument("--reconnect-s", type=number, metavar="S",
                   help="give up when the playlist stays unreachable this long (default 30)")
    p.add_argument("--live-edge", type=whole, metavar="N",
                   help="live streams: start N segments before the live edge (default 3)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..apps.monitor import Monitor, MonitorOptions
    from ..media.hls import FollowOptions, check_location

    given = given_options(args, ANALYSIS_OPTIONS)
    given.update({field: getattr(args, arg) for arg, field in _MONITOR.items() if getattr(args, arg) is not None})
    if args.window_s is not None:  # a window cut short is judged when it holds half (at least 1 s) of this
        given["min_window_s"] = min(args.window_s, max(1.0, args.window_s / 2))
    opts = MonitorOptions(**given, follow=FollowOptions(**given_options(args, _FOLLOW)))
    check_location(args.url)

    def out(text: str, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def on_event(ev) -> None:
        if args.json:
            out(json.dumps(ev.to_dict(), allow_nan=False))
        else:
            out(ev.to_text(), err=ev.kind in ("gap", "reconnect", "reconnected"))

    mon = Monitor(args.url, opts, on_event)
    # SIGTERM behaves like Ctrl-C: finish with a summary
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    except (ValueError, OSError):  # not the main thread
        pass
    summary = mon.run()
    never_read = summary.stopped == "error" and summary.windows == 0 and summary.segments == 0
    if args.json:
        out(json.dumps(summary.to_dict(), allow_nan=False))  # the summary carries the error
    elif not never_read:  # nothing was read: the error line alone, no empty summary
        out(summary.to_text())
    if summary.stopped == "error" and summary.windows == 0:
        if not (summary.error or "").startswith(args.url):
            summary.error = f"{args.url}: {summary.error}"
        out(f"avsync: {summary.error}", err=True)
        return 3
    return 0
