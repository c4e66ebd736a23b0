"""``avsync serve``: the REST API (OpenAPI at /docs) and the web page at /."""
from __future__ import annotations

from .argtypes import count as _positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="REST API and web page (needs the 'serve' extra)",
                              description="Serve the REST API (OpenAPI at /docs) and the upload page at /.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", default="avsync-data", metavar="DIR",
                   help="uploads, plots and the job database (default ./avsync-data)")
    p.add_argument("--db", metavar="PATH|URL", help="job database: a file path or sqlite:///PATH (sqlite:////ABS "
                                                    "for an absolute path; default DATA_DIR/jobs.sqlite3); "
                                                    "server databases are not supported yet")
    p.add_argument("--max-upload-mb", type=float, default=512.0, metavar="MB", help="upload size limit (default 512)")
    p.add_argument("--workers", type=_positive_int, default=2, metavar="N", help="worker processes (default 2)")
    p.add_argument("--queue", type=int, default=8, metavar="N",
                   help="jobs that may wait for a worker before new work gets 503 (default 8)")
    p.add_argument("--hls-allow", action="append", default=[], metavar="PREFIX",
                   help="allow POST /api/monitor for HLS URLs starting with PREFIX (repeatable; default none)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import UsageError
    from ..apps.service.store import UnsupportedDatabase, parse_db_url

    if args.db is not None:
        try:  # before anything is created or imported
            parse_db_url(args.db)
        except UnsupportedDatabase as exc:
            raise UsageError(f"--db: {exc}") from None
    try:
        import uvicorn

        from ..apps.service.app import ServiceConfig, create_app
    except ImportError as exc:
        raise UsageError(f"serve needs the 'serve' extra: pip install 'avsync[serve]' ({exc})") from None
    if args.max_upload_mb <= 0 or args.queue < 0:
        raise UsageError("--max-upload-mb must be > 0 and --queue >= 0")
    for prefix in args.hls_allow:
        if not prefix.startswith(("http://", "https://")):
            raise UsageError(f"--hls-allow {prefix!r}: only http(s) URL prefixes")
    cfg = ServiceConfig(data_dir=args.data_dir, db=args.db, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                        workers=args.workers, queue=args.queue, hls_allow=tuple(args.hls_allow))
    try:
        app = create_app(cfg)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot start the service ({exc})") from None
    import sys

    sys.stderr.write(f"avsync serve: http://{args.host}:{args.port}/ (API docs at /docs; data in {args.data_dir})\n")
    sys.stderr.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
