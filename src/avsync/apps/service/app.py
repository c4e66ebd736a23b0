"""The REST API and the web page (FastAPI).  ``create_app(ServiceConfig(...))``.

Work runs in a bounded pool of worker processes; when every worker is busy and the
queue is full, new work is refused with 503 and ``Retry-After``.  Bad media is a 422
with the one-line reason, never a 5xx.  Nothing here fetches a URL a client gives,
except HLS monitoring of URLs under the operator's allow-list (``hls_allow``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import threading
from dataclasses import dataclass, field
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...errors import UsageError
from ...estimators.registry import available_methods
from ...options import DetectOptions
from ...timeline import TOLERANCE_NAMES
from .store import open_job_store
from .uploads import UploadError, receive_upload, remove_upload
from .worker import monitor_options, run_job, run_sync


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: str = "avsync-data"
    #: job database: a path or sqlite:///PATH (default: DATA_DIR/jobs.sqlite3); other schemes
    #: (server databases) are refused with :class:`avsync.apps.service.store.UnsupportedDatabase`
    db: str | None = None
    max_upload_bytes: int = 512 * 1024 * 1024
    workers: int = 2
    #: jobs allowed to wait for a worker before new ones get 503
    queue: int = 8
    retry_after_s: int = 5
    #: URL prefixes that POST /api/monitor may follow (empty: monitoring disabled)
    hls_allow: tuple[str, ...] = field(default_factory=tuple)
    max_monitor_windows: int = 60

    @property
    def db_path(self) -> str:
        return self.db or os.path.join(self.data_dir, "jobs.sqlite3")

    @property
    def upload_dir(self) -> str:
        return os.path.join(self.data_dir, "uploads")

    @property
    def plot_dir(self) -> str:
        return os.path.join(self.data_dir, "plots")


def watch_parent(parent: int) -> None:
    """In each worker process: exit as soon as the server process is gone (killed with
    -9 included), so no orphan keeps running; the restarted server resumes its jobs."""
    import time

    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="avsync-watch-parent", daemon=True).start()


class Busy(Exception):
    pass


class Pool:
    """A process pool with a hard bound on work in flight (running + waiting)."""

    def __init__(self, workers: int, capacity: int):
        self.workers = max(1, workers)
        self.executor = self._new_executor()
        self.capacity = max(1, capacity)
        self.inflight = 0
        self._lock = threading.Lock()

    def reserve(self, force: bool = False) -> None:
        with self._lock:
            if not force and self.inflight >= self.capacity:
                raise Busy()
            self.inflight += 1

    def release(self) -> None:
        with self._lock:
            self.inflight = max(0, self.inflight - 1)

    def _new_executor(self):
        ctx = multiprocessing.get_context("spawn")
        return concurrent.futures.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                                      initializer=watch_parent, initargs=(os.getpid(),))

    def submit_raw(self, fn, *args) -> concurrent.futures.Future:
        """Submit without touching the slot count; a pool broken by a crashed worker is replaced."""
        try:
            return self.executor.submit(fn, *args)
        except concurrent.futures.process.BrokenProcessPool:
            self.renew()
            return self.executor.submit(fn, *args)

    def renew(self) -> None:
        with self._lock:
            if getattr(self.executor, "_broken", False):
                old, self.executor = self.executor, self._new_executor()
                old.shutdown(wait=False, cancel_futures=True)

    def submit(self, fn, *args, on_crash=None) -> concurrent.futures.Future:
        """Run ``fn(*args)`` on a reserved slot (released when it finishes); ``on_crash(exc)``
        hears when the worker process died under it."""
        try:
            fut = self.submit_raw(fn, *args)
        except Exception:
            self.release()
            raise

        def done(f):
            self.release()
            exc = f.exception() if not f.cancelled() else None
            if exc is not None:
                self.renew()
                if on_crash is not None:
                    on_crash(exc)

        fut.add_done_callback(done)
        return fut

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


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
    os.makedirs(config.upload_dir, exist_ok=True)
    os.makedirs(config.plot_dir, exist_ok=True)
    store = open_job_store(config.db_path)
    state: dict = {}

    async def lifespan(app):
        pool = Pool(config.workers, config.workers + config.queue)
        state["pool"] = pool
        for job in store.recover():  # resume what a previous run left unfinished
            pool.reserve(force=True)
            pool.submit(run_job, store.url, job.id, on_crash=crashed(job.id))
        yield
        pool.shutdown()

    def crashed(job_id: str):
        def mark(exc: BaseException) -> None:
            job = store.get(job_id)
            if job is not None and job.status in ("queued", "running"):
                store.update(job_id, status="failed", stage=None,
                             error=f"{job.name or 'upload'}: the analysis crashed ({type(exc).__name__})")
                if job.media_path and job.kind != "monitor":
                    remove_upload(job.media_path)
        return mark

    app = FastAPI(title="avsync", version="1", lifespan=lifespan,
                  description="Measure audio-video sync of uploaded media. offset_ms > 0: the audio leads.")
    app.state.config = config
    app.state.store = store

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

    def pool() -> Pool:
        if "pool" not in state:  # served without the lifespan (some test clients)
            state["pool"] = Pool(config.workers, config.workers + config.queue)
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

    async def _receive(request: Request):
        up = await receive_upload(request, config.upload_dir, config.max_upload_bytes)
        try:
            return up, _options(up.fields)
        except UploadError:
            remove_upload(up.path)
            raise

    async def _sync(request: Request, analyze: bool):
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
            fut = pool().submit_raw(run_sync, up.path, up.name, opts, analyze)
            try:
                res = await asyncio.wrap_future(fut)
            except concurrent.futures.process.BrokenProcessPool:
                pool().renew()
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
            job = store.create("detect", up.name, up.path, opts)
            store.update(job.id, plot_path=os.path.join(config.plot_dir, f"{job.id}.png"))
            pool().submit(run_job, store.url, job.id, on_crash=crashed(job.id))
        except Exception:
            remove_upload(up.path)
            raise
        return JSONResponse(store.get(job.id).public(), status_code=202,
                            headers={"Location": f"/api/jobs/{job.id}"})

    def _job(job_id: str):
        job = store.get(job_id) if len(job_id) <= 64 else None
        if job is None:
            return None, _error(404, f"no job {job_id[:64]!r}")
        return job, None

    @app.get("/api/jobs/{job_id}", summary="Job status and progress",
             responses={200: {"description": "the job", **_OBJ}, 404: _ERR})
    async def api_job(job_id: str):
        job, err = _job(job_id)
        return err or JSONResponse(job.public())

    @app.get("/api/jobs/{job_id}/report", summary="The finished job's report",
             responses={200: {"description": "the report", **_OBJ}, 404: _ERR, 409: _ERR, 422: _ERR})
    async def api_job_report(job_id: str):
        job, err = _job(job_id)
        if err:
            return err
        if job.status == "failed":
            return _error(422, job.error or "failed")
        if job.status != "done":
            return _error(409, f"job is {job.status} ({job.progress * 100:.0f}%)")
        return JSONResponse(job.report)

    @app.get("/api/jobs/{job_id}/plot.png", summary="The finished job's timeline plot",
             responses={200: {"description": "PNG", "content": {"image/png": {}}}, 404: _ERR, 409: _ERR})
    async def api_job_plot(job_id: str):
        job, err = _job(job_id)
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
    async def api_job_fixed(job_id: str):
        job, err = _job(job_id)
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
    async def api_job_delete(job_id: str):
        job, err = _job(job_id)
        if err:
            return err
        store.delete(job_id)
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
        try:
            body = await request.json()
        except Exception:
            return _error(422, "expected a JSON object with 'url'")
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return _error(422, "expected a JSON object with a string 'url'")
        url = body["url"]
        if not config.hls_allow:
            return _error(403, "HLS monitoring is disabled on this server (no --hls-allow prefixes)")
        if not url.startswith(("http://", "https://")) or not any(url.startswith(p) for p in config.hls_allow):
            return _error(403, "URL is not under an allowed prefix")
        try:
            n = int(body.get("max_windows", 6))
            w = float(body.get("window_s", 5.0))
        except (TypeError, ValueError, OverflowError):
            return _error(422, "max_windows and window_s must be numbers")
        if not (1 <= n <= config.max_monitor_windows) or not (1.0 <= w <= 60.0):
            return _error(422, f"need 1 <= max_windows <= {config.max_monitor_windows} and 1 <= window_s <= 60")
        job_options = {"url": url, "max_windows": n, "window_s": w}
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
        job = store.create("monitor", url, None, job_options)
        pool().submit(run_job, store.url, job.id, on_crash=crashed(job.id))
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
