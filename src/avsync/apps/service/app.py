"""The REST API and the web page (FastAPI).  ``create_app(ServiceConfig(...))``.

Work runs in a bounded pool of worker processes; when every worker is busy and the
queue is full, new work is refused with 503 and ``Retry-After``.  Bad media is a 422
with the one-line reason, never a 5xx.  Nothing here fetches a URL a client gives,
except HLS monitoring of URLs under the operator's allow-list (``hls_allow``).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...errors import AvsyncError, UsageError
from ...estimators.registry import available_methods
from ...options import DetectOptions
from ...timeline import TOLERANCE_NAMES
from .pool import Busy, Cancelled, DeadlinePassed, WorkerDied, WorkerPool
from .store import open_job_store
from .uploads import BodyLimits, UploadError, clean_stale, read_body, receive_upload, remove_upload
from .worker import monitor_options, run_job, run_sync


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: str = "avsync-data"
    #: job database: a path or sqlite:///PATH (default: DATA_DIR/jobs.sqlite3), or postgresql://...;
    #: other schemes are refused with :class:`avsync.apps.service.store.UnsupportedDatabase`
    db: str | None = None
    max_upload_bytes: int = 512 * 1024 * 1024
    workers: int = 2
    #: jobs allowed to wait for a worker before new ones get 503
    queue: int = 8
    retry_after_s: int = 5
    #: URL prefixes that POST /api/monitor may follow (empty: monitoring disabled)
    hls_allow: tuple[str, ...] = field(default_factory=tuple)
    #: allow-listed host names may resolve to loopback/private/link-local addresses (IP literals and
    #: ``localhost`` in a prefix are always allowed: they are explicit)
    hls_allow_private: bool = False
    max_monitor_windows: int = 60
    #: every job (detect, monitor) and every /api/detect request ends within this many seconds
    job_deadline_s: float = 1800.0
    #: on SIGTERM: how long running work may take to finish before its worker is stopped (the
    #: jobs then resume on the next start)
    drain_s: float = 3.0
    #: request bodies: after upload_grace_s, at least upload_min_rate bytes/s on average, and complete
    #: within upload_max_s
    upload_grace_s: float = 10.0
    upload_min_rate: float = 32 * 1024
    upload_max_s: float = 900.0
    #: uploads one client (address) may send at once
    uploads_per_client: int = 8
    #: Host header names served (besides localhost names and IP literals, which DNS rebinding cannot
    #: use); "*" serves any
    allowed_hosts: tuple[str, ...] = ()
    #: the largest JSON body (POST /api/monitor)
    max_json_bytes: int = 64 * 1024
    #: API keys: when given, every /api/ endpoint but /api/health needs one (``Authorization: Bearer
    #: KEY`` or ``X-API-Key: KEY``) and a job is visible only with the key that created it
    api_keys: tuple[str, ...] = ()

    @property
    def db_path(self) -> str:
        return self.db or os.path.join(self.data_dir, "jobs.sqlite3")

    @property
    def upload_dir(self) -> str:
        return os.path.join(self.data_dir, "uploads")

    @property
    def plot_dir(self) -> str:
        return os.path.join(self.data_dir, "plots")


def worker_init() -> None:
    """In each worker process: uploads are media files, so this process never opens a playlist
    that points elsewhere (nor a URL)."""
    from ...media import refuse_playlists

    refuse_playlists()


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


_UPLOAD_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "the media file"},
            "method": {"type": "string", "enum": available_methods(), "default": DetectOptions.method},
            "tolerance": {"type": "string", "enum": TOLERANCE_NAMES, "default": DetectOptions.tolerance},
        },
    }}},
}
_ERR = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}}}}
_OBJ = {"content": {"application/json": {"schema": {"type": "object"}}}}


def create_app(config: ServiceConfig = ServiceConfig()) -> FastAPI:
    store = open_job_store(config.db_path)
    os.makedirs(config.upload_dir, exist_ok=True)
    os.makedirs(config.plot_dir, exist_ok=True)
    state: dict = {}
    # partial uploads and request files of a server that was killed: nothing else will remove them
    clean_stale(config.upload_dir, {j.media_path for j in store.unfinished() if j.media_path})

    def new_pool() -> WorkerPool:
        return WorkerPool(config.workers, config.workers + config.queue, initializer=worker_init)

    async def lifespan(app):
        pool = state.setdefault("pool", new_pool())
        for job in store.recover():  # resume what a previous run left unfinished
            pool.reserve(force=True)
            start_job(job.id)
        yield
        await asyncio.get_running_loop().run_in_executor(None, pool.shutdown, config.drain_s)

    def start_job(job_id: str) -> None:
        pool().submit(run_job, store.url, job_id, task_id=job_id, deadline_s=config.job_deadline_s,
                      on_crash=crashed(job_id))

    def crashed(job_id: str):
        def mark(exc: BaseException) -> None:
            if isinstance(exc, Cancelled):  # deleted, or the server is stopping: it resumes on the next start
                return
            job = store.get(job_id)
            if job is not None and job.status in ("queued", "running"):
                if isinstance(exc, DeadlinePassed):
                    why = str(exc)
                elif isinstance(exc, WorkerDied):
                    why = "the analysis crashed (worker process died)"
                else:
                    why = f"the analysis crashed ({' '.join(str(exc).split())[:200]})"
                store.update(job_id, status="failed", stage=None, error=f"{job.name or 'upload'}: {why}")
                if job.media_path and job.kind != "monitor":
                    remove_upload(job.media_path)
        return mark

    app = FastAPI(title="avsync", version="1", lifespan=lifespan,
                  description="Measure audio-video sync of uploaded media. offset_ms > 0: the audio leads.")
    app.state.config = config
    app.state.store = store

    allowed_hosts = {h.lower().rstrip(".") for h in config.allowed_hosts} | {"localhost"}

    def host_ok(host: str) -> bool:
        if "*" in allowed_hosts:
            return True
        name = host.strip().lower()
        if name.startswith("["):  # [v6]:port
            name = name[1:].split("]", 1)[0]
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        name = name.rstrip(".")
        if name in allowed_hosts or name.endswith(".localhost"):
            return True
        try:  # an IP literal cannot be rebound to another address
            import ipaddress

            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    @app.middleware("http")
    async def _host_check(request: Request, call_next):
        """DNS rebinding: a page on another site that resolves its own name to this server must not
        reach the API, so the Host header must name this server."""
        if not host_ok(request.headers.get("host", "")):
            return _error(421, "unknown Host header: this server answers to localhost, IP addresses and the "
                               "names given with --allowed-host")
        return await call_next(request)

    keys = [k for k in config.api_keys if k]

    def key_of(request: Request) -> str | None:
        """The request's valid API key (None: none or a wrong one)."""
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("x-api-key", "").strip()
        if not given:
            return None
        match = None
        for k in keys:  # compare with every key, in constant time
            if hmac.compare_digest(given.encode(), k.encode()):
                match = k
        return match

    def owner_of(request: Request) -> str | None:
        key = getattr(request.state, "api_key", None)
        return None if key is None else hashlib.sha256(key.encode()).hexdigest()[:24]

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        path = request.url.path
        if keys and path.startswith("/api/") and path != "/api/health":
            key = key_of(request)
            if key is None:
                return _error(401, "an API key is needed (Authorization: Bearer KEY, or X-API-Key: KEY)",
                              {"WWW-Authenticate": "Bearer"})
            request.state.api_key = key
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        errs = exc.errors()
        msg = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in errs[:3])
        return _error(422, msg or "invalid request")

    @app.exception_handler(Exception)
    async def _internal(request, exc):  # pragma: no cover - a bug, but still JSON
        return _error(500, f"internal error ({type(exc).__name__})")

    def pool() -> WorkerPool:
        if "pool" not in state:  # served without the lifespan (some test clients)
            state["pool"] = new_pool()
        return state["pool"]

    def busy() -> JSONResponse:
        return _error(503, "all workers are busy; retry later", {"Retry-After": str(config.retry_after_s)})

    def _options(fields: dict) -> dict:
        """The analysis options of an upload form, checked by the one schema (:mod:`avsync.options`)."""
        given = {k: fields[k] for k in ("method", "tolerance") if fields.get(k)}
        try:
            opts = DetectOptions.from_dict(given)
        except UsageError as exc:
            raise UploadError(str(exc), 422) from None
        return {"method": opts.method, "tolerance": opts.tolerance}

    limits = BodyLimits(config.upload_grace_s, config.upload_min_rate, config.upload_max_s)
    uploading: dict[str, int] = {}

    def _client(request: Request) -> str:
        return request.client.host if request.client else "?"

    def upload_slot(request: Request) -> str:
        """Count an upload of this client; :class:`UploadError` 429 beyond uploads_per_client."""
        who = _client(request)
        if uploading.get(who, 0) >= config.uploads_per_client:
            raise UploadError(f"too many uploads at once from this client (the limit is {config.uploads_per_client})",
                              429)
        uploading[who] = uploading.get(who, 0) + 1
        return who

    def upload_done(who: str) -> None:
        n = uploading.get(who, 0) - 1
        if n > 0:
            uploading[who] = n
        else:
            uploading.pop(who, None)

    async def _receive(request: Request):
        who = upload_slot(request)
        try:
            up = await receive_upload(request, config.upload_dir, config.max_upload_bytes, limits=limits)
        finally:
            upload_done(who)
        try:
            return up, _options(up.fields)
        except UploadError:
            remove_upload(up.path)
            raise

    def too_many(request: Request):
        if uploading.get(_client(request), 0) >= config.uploads_per_client:
            return _error(429, f"too many uploads at once from this client (the limit is "
                               f"{config.uploads_per_client})", {"Retry-After": str(config.retry_after_s)})
        return None

    async def _sync(request: Request, analyze: bool):
        if (err := too_many(request)) is not None:
            return err
        try:
            pool().reserve()
        except Busy:
            return busy()
        up = None
        try:
            try:
                up, opts = await _receive(request)
            except UploadError as exc:
                return _error(exc.status, exc.message)
            fut = pool().submit(run_sync, up.path, up.name, opts, analyze, deadline_s=config.job_deadline_s,
                                release=False)
            try:
                res = await asyncio.wrap_future(fut)
            except DeadlinePassed as exc:
                res = {"error": f"{up.name}: {exc}", "status": 422}
            except Cancelled:
                res = {"error": f"{up.name}: the server is stopping; retry later", "status": 503}
            except Exception:
                res = {"error": f"{up.name}: the analysis crashed (worker process died)", "status": 422}
        finally:
            pool().release()
            if up is not None:
                remove_upload(up.path)
        if "error" in res:
            return _error(res.get("status", 422), res["error"])
        return JSONResponse(res["report"])

    @app.post("/api/detect", summary="Detect report of an uploaded file",
              openapi_extra={"requestBody": _UPLOAD_BODY},
              responses={200: {"description": "the detect report (avsync.report/1)", **_OBJ}, 413: _ERR, 415: _ERR,
                         422: _ERR, 503: _ERR})
    async def api_detect(request: Request):
        return await _sync(request, analyze=False)

    @app.post("/api/analyze", summary="Report with timeline, plot (base64 PNG) and segment labels",
              openapi_extra={"requestBody": _UPLOAD_BODY},
              responses={200: {"description": "report + plot_png_base64 + labels (the 1-s labels of `avsync "
                                               "classify`, or {error} when the classifier cannot run; the "
                                               "report's own segments are its pieces of constant offset)",
                               **_OBJ}, 413: _ERR, 415: _ERR, 422: _ERR, 503: _ERR})
    async def api_analyze(request: Request):
        return await _sync(request, analyze=True)

    @app.post("/api/jobs", status_code=202, summary="Queue a detect job for an uploaded file",
              openapi_extra={"requestBody": _UPLOAD_BODY},
              responses={202: {"description": "the job", **_OBJ}, 413: _ERR, 415: _ERR, 422: _ERR, 503: _ERR})
    async def api_jobs_create(request: Request):
        if (err := too_many(request)) is not None:
            return err
        try:
            pool().reserve()
        except Busy:
            return busy()
        try:
            up, opts = await _receive(request)
        except UploadError as exc:
            pool().release()
            return _error(exc.status, exc.message)
        try:
            job = store.create("detect", up.name, up.path, opts, owner=owner_of(request))
            store.update(job.id, plot_path=os.path.join(config.plot_dir, f"{job.id}.png"))
            start_job(job.id)
        except Exception:
            remove_upload(up.path)
            raise
        return JSONResponse(store.get(job.id).public(), status_code=202,
                            headers={"Location": f"/api/jobs/{job.id}"})

    def _job(job_id: str, request: Request):
        job = store.get(job_id) if len(job_id) <= 64 else None
        if job is not None and keys and job.owner != owner_of(request):
            job = None  # another key's job: as if it did not exist
        if job is None:
            return None, _error(404, f"no job {job_id[:64]!r}")
        return job, None

    @app.get("/api/jobs/{job_id}", summary="Job status and progress",
             responses={200: {"description": "the job", **_OBJ}, 404: _ERR})
    async def api_job(job_id: str, request: Request):
        job, err = _job(job_id, request)
        return err or JSONResponse(job.public())

    @app.get("/api/jobs/{job_id}/report", summary="The finished job's report",
             responses={200: {"description": "the report", **_OBJ}, 404: _ERR, 409: _ERR, 422: _ERR})
    async def api_job_report(job_id: str, request: Request):
        job, err = _job(job_id, request)
        if err:
            return err
        if job.status == "failed":
            return _error(422, job.error or "failed")
        if job.status != "done":
            return _error(409, f"job is {job.status} ({job.progress * 100:.0f}%)")
        return JSONResponse(job.report)

    @app.get("/api/jobs/{job_id}/plot.png", summary="The finished job's timeline plot",
             responses={200: {"description": "PNG", "content": {"image/png": {}}}, 404: _ERR, 409: _ERR})
    async def api_job_plot(job_id: str, request: Request):
        job, err = _job(job_id, request)
        if err:
            return err
        if job.status != "done" or not job.plot_path or not os.path.isfile(job.plot_path):
            return _error(409 if job.status in ("queued", "running") else 404, f"no plot (job is {job.status})")
        return FileResponse(job.plot_path, media_type="image/png")

    def _fixed(job) -> str | None:
        if not job.plot_path:
            return None
        from .worker import fixed_path_for

        p = fixed_path_for(job.plot_path, job.name or "upload")
        return p if os.path.isfile(p) else None

    @app.get("/api/jobs/{job_id}/fixed", summary="The finished job's corrected file (out-of-sync files only)",
             responses={200: {"description": "the corrected media file", "content": {"application/octet-stream": {}}},
                        404: _ERR, 409: _ERR})
    async def api_job_fixed(job_id: str, request: Request):
        job, err = _job(job_id, request)
        if err:
            return err
        if job.status in ("queued", "running"):
            return _error(409, f"job is {job.status}")
        path = _fixed(job) if job.status == "done" else None
        if path is None:
            why = ((job.report or {}).get("fixed_file") or {}).get("reason") if job.status == "done" else None
            return _error(404, "no corrected file: " + (why or f"the job is {job.status}" if job.status != "done"
                                                         else why or "the file is not out of sync"))
        root, ext = os.path.splitext(job.name or "upload")
        return FileResponse(path, media_type="application/octet-stream", filename=f"{root}.fixed{os.path.splitext(path)[1]}")

    @app.delete("/api/jobs/{job_id}", summary="Delete a job, its upload and its plot",
                responses={200: {"description": "deleted", **_OBJ}, 404: _ERR})
    async def api_job_delete(job_id: str, request: Request):
        job, err = _job(job_id, request)
        if err:
            return err
        store.delete(job_id)
        # a running job is stopped (its worker process ends) and its slot is free when this returns
        await asyncio.get_running_loop().run_in_executor(None, pool().cancel, job_id)
        if job.media_path and job.kind != "monitor":
            remove_upload(job.media_path)
        for p in (job.plot_path, _fixed(job)):
            if p:
                try:
                    os.unlink(p)
                except OSError:
                    pass
        return JSONResponse({"deleted": job_id})

    @app.post("/api/monitor", status_code=202, summary="Monitor an HLS stream (operator allow-list only)",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "type": "object", "required": ["url"], "properties": {
                      "url": {"type": "string"}, "max_windows": {"type": "integer", "minimum": 1, "default": 6},
                      "window_s": {"type": "number", "minimum": 1, "maximum": 60, "default": 5},
                      "tolerance": {"type": "string", "enum": TOLERANCE_NAMES}}}}}}},
              responses={202: {"description": "the job", **_OBJ}, 403: _ERR, 422: _ERR, 503: _ERR})
    async def api_monitor(request: Request):
        import json

        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":  # a form or text/plain post from another site is refused
            return _error(415, "expected a JSON body (Content-Type: application/json)")
        length = request.headers.get("content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > config.max_json_bytes):
            return _error(413, f"JSON body too large (the limit is {config.max_json_bytes} bytes)")
        try:
            raw = b"".join([c async for c in read_body(request, limits, config.max_json_bytes)])
        except UploadError as exc:
            return _error(exc.status, exc.message if exc.status != 413 else
                          f"JSON body too large (the limit is {config.max_json_bytes} bytes)")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(422, "expected a JSON object with 'url'")
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return _error(422, "expected a JSON object with a string 'url'")
        url = body["url"]
        if not config.hls_allow:
            return _error(403, "HLS monitoring is disabled on this server (no --hls-allow prefixes)")
        from ...media.hls import UrlPolicy

        try:  # normalised first: '..' segments, default ports and credentials cannot step outside
            url = UrlPolicy.allow_list(config.hls_allow, config.hls_allow_private).check(url)
        except AvsyncError:
            return _error(403, "URL is not under an allowed prefix")
        import math

        n, w = body.get("max_windows", 6), body.get("window_s", 5.0)
        try:
            ok = (not isinstance(n, bool) and not isinstance(w, bool) and isinstance(n, (int, float))
                  and isinstance(w, (int, float)) and math.isfinite(float(n)) and math.isfinite(float(w))
                  and n == int(n))
        except (OverflowError, ValueError):  # an integer too large for a float
            ok = False
        if not ok:
            return _error(422, "max_windows must be a whole number and window_s a number, both in range")
        n, w = int(n), float(w)
        if not (1 <= n <= config.max_monitor_windows) or not (1.0 <= w <= 60.0):
            return _error(422, f"need 1 <= max_windows <= {config.max_monitor_windows} and 1 <= window_s <= 60")
        # every playlist, variant, segment and redirect of the job is checked against the same list
        job_options = {"url": url, "max_windows": n, "window_s": w, "allow": list(config.hls_allow),
                       "allow_private": config.hls_allow_private}
        if "tolerance" in body:
            job_options["tolerance"] = body["tolerance"]
        try:
            opts = monitor_options(job_options)  # the one options schema (avsync.options)
        except UsageError as exc:
            return _error(422, str(exc))
        job_options["tolerance"] = opts.tolerance
        try:
            pool().reserve()
        except Busy:
            return busy()
        job = store.create("monitor", url, None, job_options, owner=owner_of(request))
        start_job(job.id)
        return JSONResponse(store.get(job.id).public(), status_code=202)

    @app.get("/api/health", summary="Liveness and limits", responses={200: {"description": "ok", **_OBJ}})
    async def api_health():
        p = state.get("pool")
        return {"ok": True, "workers": config.workers, "capacity": p.capacity if p else None,
                "inflight": p.inflight if p else None, "max_upload_bytes": config.max_upload_bytes,
                "methods": available_methods(), "tolerances": TOLERANCE_NAMES,
                "hls_monitoring": bool(config.hls_allow)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(resources.files("avsync.apps.service").joinpath("static/index.html").read_text("utf-8"))

    return app
