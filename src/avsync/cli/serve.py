"""``avsync serve``: the REST API (OpenAPI at /docs) and the web page at /."""
from __future__ import annotations

import os

from .argtypes import count as _positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="REST API and web page (needs the 'serve' extra)",
                              description="Serve the REST API (OpenAPI at /docs) and the upload page at /.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; beyond it an API key is "
                        "required)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default 8000)")
    p.add_argument("--data-dir", default="avsync-data", metavar="DIR",
                   help="uploads, plots and the job database (default ./avsync-data)")
    p.add_argument("--db", metavar="PATH|URL", help="job database: a file path or sqlite:///PATH (sqlite:////ABS "
                                                    "for an absolute path; default DATA_DIR/jobs.sqlite3), or "
                                                    "postgresql://USER:PASSWORD@HOST:PORT/DB (shared by several "
                                                    "servers; needs psycopg)")
    p.add_argument("--max-upload-mb", type=float, default=512.0, metavar="MB", help="upload size limit (default 512)")
    p.add_argument("--workers", type=_positive_int, default=2, metavar="N", help="worker processes (default 2)")
    p.add_argument("--queue", type=int, default=8, metavar="N",
                   help="jobs that may wait for a worker before new work gets 503 (default 8)")
    p.add_argument("--hls-allow", action="append", default=[], metavar="PREFIX",
                   help="allow POST /api/monitor for HLS URLs starting with PREFIX (repeatable; default none)")
    p.add_argument("--job-deadline-s", type=float, default=1800.0, metavar="S",
                   help="every job and /api/detect request ends within S seconds (default 1800)")
    p.add_argument("--drain-s", type=float, default=3.0, metavar="S",
                   help="on SIGTERM, running work gets S seconds to finish; unfinished jobs resume on the next "
                        "start (default 3)")
    p.add_argument("--upload-grace-s", type=float, default=10.0, metavar="S",
                   help="a request body may start slowly for S seconds (default 10) ...")
    p.add_argument("--upload-min-rate", type=float, default=32 * 1024, metavar="BYTES_PER_S",
                   help="... then must arrive at this average rate or get 408 (default 32768)")
    p.add_argument("--upload-max-s", type=float, default=900.0, metavar="S",
                   help="a request body must be complete within S seconds (default 900)")
    p.add_argument("--uploads-per-client", type=_positive_int, default=8, metavar="N",
                   help="uploads one client address may send at once; more get 429 (default 8)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name clients use to reach this server (repeatable; localhost names and IP "
                        "addresses are always served; '*' serves any: no DNS-rebinding protection)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="require this API key on every endpoint but /api/health (repeatable; also "
                        "--api-key-file and $AVSYNC_API_KEYS, comma-separated); jobs are visible only to their key")
    p.add_argument("--api-key-file", metavar="PATH", help="API keys, one per line ('#' comments)")
    p.add_argument("--no-auth", action="store_true",
                   help="listen beyond localhost without API keys (anyone who reaches the port can use it)")
    p.add_argument("--hls-allow-private", action="store_true",
                   help="allow --hls-allow host names that resolve to loopback/private/link-local addresses "
                        "(IP literals and localhost in a prefix are always allowed)")
    p.set_defaults(func=run)


def api_keys(given: list[str], path: str | None, env: str | None) -> list[str]:
    """The API keys of --api-key, --api-key-file (one per line, '#' comments) and $AVSYNC_API_KEYS
    (comma- or space-separated), in that order, without repeats."""
    from ..errors import UsageError

    keys = [k.strip() for k in given]
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                keys += [ln.split("#", 1)[0].strip() for ln in fh]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--api-key-file {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") \
                from None
    if env:
        keys += env.replace(",", " ").split()
    out: list[str] = []
    for k in keys:
        if k and k not in out:
            if len(k) < 16 or any(ord(c) < 33 or ord(c) > 126 for c in k):
                raise UsageError("an API key must be at least 16 printable characters without spaces")
            out.append(k)
    return out


def _loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "") or host.endswith(".localhost"):
        return host != ""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    from ..errors import UsageError
    from ..apps.service.store import UnsupportedDatabase, parse_db_url

    if args.db is not None:
        try:  # before anything is created or imported; a server database must answer
            if parse_db_url(args.db)[0] != "sqlite":
                from ..apps.service.store import open_job_store

                open_job_store(args.db)
        except UnsupportedDatabase as exc:
            raise UsageError(f"--db: {exc}") from None
    try:
        import uvicorn

        from ..apps.service.app import ServiceConfig, create_app
    except ImportError as exc:
        raise UsageError(f"serve needs the 'serve' extra: pip install 'avsync[serve]' ({exc})") from None
    if args.max_upload_mb <= 0 or args.queue < 0:
        raise UsageError("--max-upload-mb must be > 0 and --queue >= 0")
    if not all(0 <= v < 1e9 for v in (args.upload_grace_s, args.upload_min_rate)) or not 0 < args.upload_max_s < 1e9:
        raise UsageError("--upload-grace-s and --upload-min-rate must be >= 0, --upload-max-s > 0")
    if not (0 < args.job_deadline_s < 1e9) or not (0 <= args.drain_s < 1e6):
        raise UsageError("--job-deadline-s must be > 0 and --drain-s >= 0")
    for prefix in args.hls_allow:
        if not prefix.startswith(("http://", "https://")):
            raise UsageError(f"--hls-allow {prefix!r}: only http(s) URL prefixes")
        from ..errors import AvsyncError
        from ..media.hls import normalise_url

        try:
            normalise_url(prefix)
        except AvsyncError as exc:
            raise UsageError(f"--hls-allow {prefix!r}: {exc}") from None
    keys = api_keys(args.api_key, args.api_key_file, os.environ.get("AVSYNC_API_KEYS"))
    if not keys and not args.no_auth and not _loopback(args.host):
        raise UsageError(f"--host {args.host}: listening beyond this machine needs an API key (--api-key, "
                         "--api-key-file or $AVSYNC_API_KEYS), or --no-auth")
    cfg = ServiceConfig(data_dir=args.data_dir, db=args.db, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                        workers=args.workers, queue=args.queue, hls_allow=tuple(args.hls_allow),
                        hls_allow_private=args.hls_allow_private, job_deadline_s=args.job_deadline_s,
                        drain_s=args.drain_s, upload_grace_s=args.upload_grace_s,
                        upload_min_rate=args.upload_min_rate, upload_max_s=args.upload_max_s,
                        uploads_per_client=args.uploads_per_client,
                        allowed_hosts=tuple(args.allowed_host) + ((args.host,) if args.host else ()),
                        api_keys=tuple(keys))
    try:
        app = create_app(cfg)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot start the service ({exc})") from None
    import sys

    sys.stderr.write(f"avsync serve: http://{args.host}:{args.port}/ (API docs at /docs; data in {args.data_dir})\n")
    sys.stderr.flush()
    # SIGTERM: stop listening, give open requests and running work drain_s, then stop the workers
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=max(1, int(round(args.drain_s))))
    return 0
