"""Streaming multipart uploads: straight to disk, size-limited, under a sanitised name.

The request body is parsed as it arrives (python-multipart's streaming parser), so a
large upload never sits in memory or in a spooled temp file first; the file part is
written to ``<upload_dir>/<random>/<safe name>`` and the size limit is enforced while
writing (and up front from Content-Length).  Whatever the client calls the file, the
stored name is one path component of letters and digits (any script) and ``._-`` that cannot
start with a dot,
and the final path is checked to be inside the upload folder.
"""
from __future__ import annotations

import os
import re
import shutil
import unicodedata
import uuid
from dataclasses import dataclass, field

MAX_NAME = 100
MAX_FIELD_BYTES = 4096


class UploadError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Upload:
    path: str  # where the file now is (inside the upload folder)
    name: str  # the sanitised name shown back to the client
    size: int
    fields: dict[str, str] = field(default_factory=dict)


def safe_name(raw: str | None, default: str = "upload") -> str:
    """A harmless single path component derived from a client-supplied file name."""
    s = unicodedata.normalize("NFKC", str(raw or ""))
    s = s.replace("\\", "/").split("/")[-1]  # the last component only: no folders, no '..'
    # letters and digits of any script stay (a French or Japanese name is kept); everything else,
    # separators, controls and direction marks included, becomes '_'
    s = "".join(c if (c.isalnum() or c in "._-") else "_" for c in s)
    s = re.sub(r"_+", "_", s).lstrip(".-_")
    if len(s) > MAX_NAME:
        root, ext = os.path.splitext(s)
        s = root[: MAX_NAME - len(ext[:12])] + ext[:12]
    return s or default


def inside(base: str, path: str) -> bool:
    base = os.path.realpath(base)
    p = os.path.realpath(path)
    return os.path.commonpath([base, p]) == base and p != base


@dataclass(frozen=True)
class BodyLimits:
    """How slowly a request body may arrive: after ``grace_s`` it must keep an average of at least
    ``min_rate`` bytes/s, and it must be complete within ``max_s`` (a client that sends a byte
    every few seconds holds a slot for ``grace_s`` or so, not for minutes)."""

    grace_s: float = 10.0
    min_rate: float = 32 * 1024
    max_s: float = 900.0


async def read_body(request, limits: BodyLimits, max_bytes: int):
    """The chunks of ``request``'s body as they arrive, within ``limits`` and ``max_bytes`` (every
    byte counted, whatever part it belongs to); :class:`UploadError` 408 / 413 otherwise."""
    import asyncio

    loop = asyncio.get_running_loop()
    start = loop.time()
    got = 0
    it = request.stream().__aiter__()
    pending = None  # the next chunk, awaited across checks (cancelling it would end the stream)
    try:
        while True:
            elapsed = loop.time() - start
            if elapsed > limits.max_s:
                raise UploadError(f"the request body took longer than {limits.max_s:g} s", 408)
            if elapsed > limits.grace_s and got < (elapsed - limits.grace_s) * limits.min_rate:
                raise UploadError(f"the request body arrives too slowly (under {limits.min_rate:g} bytes/s)",
                                  408)
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=0.5)
            if not done:
                continue
            task, pending = pending, None
            try:
                chunk = task.result()
            except StopAsyncIteration:
                return
            got += len(chunk)
            if got > max_bytes:
                raise UploadError(f"upload too large: more than {max_bytes} bytes", 413)
            yield chunk
    finally:
        if pending is not None:
            pending.cancel()


async def receive_upload(request, upload_dir: str, max_bytes: int, file_field: str = "file",
                         limits: BodyLimits = BodyLimits()) -> Upload:
    """Stream the multipart body of ``request`` to disk.  Raises :class:`UploadError`
    (413 too large, 415 not multipart, 422 no file part / bad field, 408 too slow).  Every part
    counts against ``max_bytes`` (plus a little for the multipart framing and form fields)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(f"expected a multipart/form-data body with a '{file_field}' file part", 415)
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > max_bytes + 64 * 1024:
                raise UploadError(f"upload too large: {int(length)} bytes, the limit is {max_bytes} bytes", 413)
        except ValueError:
            raise UploadError("bad Content-Length header", 422) from None
    os.makedirs(upload_dir, exist_ok=True)
    folder = os.path.join(upload_dir, f"{os.getpid()}-{uuid.uuid4().hex}")  # the owner's pid: see clean_stale
    os.makedirs(folder)
    tmp = os.path.join(folder, ".part")
    state = {"headers": {}, "hname": b"", "hval": b"", "kind": None, "name": None, "fname": None, "buf": b"",
             "fh": None, "size": 0, "too_big": False, "found": False, "bad": None}
    fields: dict[str, str] = {}

    def on_part_begin():
        state.update(headers={}, kind=None, name=None, fname=None, buf=b"")

    def on_header_field(data, start, end):
        state["hname"] += data[start:end]

    def on_header_value(data, start, end):
        state["hval"] += data[start:end]

    def on_header_end():
        state["headers"][state["hname"].decode("latin-1").lower()] = state["hval"]
        state["hname"], state["hval"] = b"", b""

    def on_headers_finished():
        _, p = parse_options_header(state["headers"].get("content-disposition", b""))
        name = p.get(b"name", b"").decode("utf-8", "replace")
        fname = p.get(b"filename")
        state["name"] = name
        if name == file_field and fname is not None and not state["found"]:
            state["kind"] = "file"
            state["found"] = True
            # kept apart from the per-part state: fields after the file part must not reset it
            state["file_name"] = fname.decode("utf-8", "replace")
            state["fh"] = open(tmp, "wb")
        else:
            state["kind"] = "field" if fname is None else "ignore"

    def on_part_data(data, start, end):
        chunk = data[start:end]
        if state["kind"] == "file":
            state["size"] += len(chunk)
            if state["size"] > max_bytes:
                state["too_big"] = True
                return
            state["fh"].write(chunk)
        elif state["kind"] == "field":
            state["buf"] += chunk
            if len(state["buf"]) > MAX_FIELD_BYTES:
                state["bad"] = f"form field {state['name']!r} is too long"

    def on_part_end():
        if state["kind"] == "file" and state["fh"] is not None:
            state["fh"].close()
            state["fh"] = None
        elif state["kind"] == "field" and state["name"]:
            fields[state["name"]] = state["buf"].decode("utf-8", "replace")

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished})
    try:
        async for chunk in read_body(request, limits, max_bytes + 64 * 1024):
            if chunk:
                parser.write(chunk)
            if state["too_big"]:
                raise UploadError(f"upload too large: more than {max_bytes} bytes", 413)
            if state["bad"]:
                raise UploadError(state["bad"], 422)
        parser.finalize()
        if not state["found"]:
            raise UploadError(f"no file in the upload: send it as the multipart part '{file_field}'", 422)
        if state["fh"] is not None:
            raise UploadError("the upload ended before the file part was complete", 422)
        name = safe_name(state.get("file_name"))
        final = os.path.join(folder, name)
        if not inside(upload_dir, final):  # cannot happen with safe_name; kept as a guard
            raise UploadError("bad file name", 422)
        os.replace(tmp, final)
        return Upload(final, name, state["size"], fields)
    except UploadError:
        _drop(state, folder)
        raise
    except Exception as exc:  # malformed multipart, client gone, ...
        _drop(state, folder)
        raise UploadError(f"malformed upload ({' '.join(str(exc).split())[:120] or type(exc).__name__})", 422) \
            from None


def _drop(state: dict, folder: str) -> None:
    fh = state.get("fh")
    if fh is not None:
        try:
            fh.close()
        except OSError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def remove_upload(media_path: str) -> None:
    """Delete an upload and its private folder."""
    try:
        os.unlink(media_path)
    except OSError:
        pass
    try:
        os.rmdir(os.path.dirname(media_path))
    except OSError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(upload_dir: str, keep: set[str]) -> int:
    """On start: remove upload folders a dead server left behind (a killed server's partial
    ``.part`` uploads, and the files of its /api/detect requests), except those holding a path in
    ``keep`` (the uploads of unfinished jobs).  A folder is named ``<pid>-<random>`` by the server
    process that received it; folders of a live process (another server on this data folder) stay.
    Returns the number of folders removed."""
    try:
        names = os.listdir(upload_dir)
    except OSError:
        return 0
    keep_dirs = {os.path.dirname(os.path.realpath(k)) for k in keep}
    removed = 0
    for name in names:
        folder = os.path.join(upload_dir, name)
        if not os.path.isdir(folder) or os.path.islink(folder) or os.path.realpath(folder) in keep_dirs:
            continue
        owner = name.split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and _pid_alive(int(owner)):
            continue
        if owner.isdigit() and int(owner) == os.getpid():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed
