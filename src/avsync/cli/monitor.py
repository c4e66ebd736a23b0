"""``avsync monitor URL``: follow an HLS stream, one line per window, alerts on faults."""
from __future__ import annotations

import json
import signal
import sys

from ..timeline import TOLERANCE_NAMES
from .argtypes import count as _count, positive as _positive


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "monitor", help="follow a live or VOD HLS stream, one result per window, alerts on faults",
        description="Follow an HLS playlist (http(s) URL or local .m3u8), judge the sync of every window of "
                    "stream time and raise an alert when it stays out of tolerance. Ctrl-C stops with a summary.")
    p.add_argument("url", metavar="URL")
    p.add_argument("--json", action="store_true", help="JSON Lines: one object per window/alert/gap and a summary")
    p.add_argument("--method", default="auto", metavar="M", help="estimator (default auto)")
    p.add_argument("--tolerance", default="ebu-r37", choices=TOLERANCE_NAMES, metavar="PRESET",
                   help=f"verdict tolerance preset: {', '.join(TOLERANCE_NAMES)} (default ebu-r37)")
    p.add_argument("--max-lag-ms", type=_positive, default=1000.0, metavar="MS")
    p.add_argument("--window-s", type=_positive, default=5.0, metavar="S", help="window of stream time (default 5)")
    p.add_argument("--alert-after", type=_count, default=2, metavar="N",
                   help="alert after N consecutive out-of-sync windows (default 2)")
    p.add_argument("--recover-after", type=_count, default=1, metavar="N",
                   help="clear the alert after N consecutive in-sync windows (default 1)")
    p.add_argument("--max-windows", type=_count, metavar="N", help="stop after N windows")
    p.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds of stream time")
    p.add_argument("--poll-s", type=_positive, metavar="S",
                   help="live playlist reload interval (default: half the target duration)")
    p.add_argument("--timeout-s", type=_positive, default=10.0, metavar="S", help="per-request timeout (default 10)")
    p.add_argument("--reconnect-s", type=_positive, default=30.0, metavar="S",
                   help="give up when the playlist stays unreachable this long (default 30)")
    p.add_argument("--live-edge", type=_count, default=3, metavar="N",
                   help="live streams: start N segments before the live edge (default 3)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..estimators.registry import available_methods
    from ..errors import UsageError
    from ..apps.monitor import Monitor, MonitorOptions
    from ..media.hls import FollowOptions, check_location

    if args.method not in available_methods():
        raise UsageError(f"unknown method {args.method!r}; choose from {', '.join(available_methods())}")
    check_location(args.url)
    opts = MonitorOptions(
        method=args.method, tolerance=args.tolerance, max_lag_ms=args.max_lag_ms, window_s=args.window_s,
        min_window_s=min(args.window_s, max(1.0, args.window_s / 2)), alert_after=args.alert_after,
        recover_after=args.recover_after, max_windows=args.max_windows, max_duration_s=args.duration,
        live_edge_segments=args.live_edge,
        follow=FollowOptions(timeout_s=args.timeout_s, reconnect_s=args.reconnect_s, poll_s=args.poll_s))

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
    if args.json:
        out(json.dumps(summary.to_dict(), allow_nan=False))
    else:
        out(summary.to_text())
    if summary.stopped == "error" and summary.windows == 0:
        out(f"avsync: {summary.error}", err=True)
        return 3
    return 0
