"""``avsync bench robustness``: hostile and broken inputs, with a summary table.

A corpus is made from real clips (or a synthetic one when none is given): truncated copies,
bit-flipped and zero-filled copies, a copy whose second half jumps 3 hours ahead (MPEG-TS, joined
by concatenation), and odd layouts (an empty file, text, a playlist named ``.mp4``, a named pipe,
a folder named ``.mp4``).  Each input goes through ``avsync detect`` in a child process with a
deadline; then the whole folder through ``avsync batch``; then, unless ``--no-service``, through a
live ``avsync serve`` on 127.0.0.1: every input uploaded while three slow clients trickle bytes,
and uploaded playlists that point at a loopback canary server (which must see no request).

Counted: inputs tried, tracebacks, hangs (past the deadline), wrong exit codes (the contract: 0
when the analysis ran, 3 for unusable media, nothing else), peak memory of each detect (over 1 GB,
or an allocation refused under its 6 GB address-space cap, is a failure), rows lost
by batch, service 5xx answers, slow-client starvation and canary requests.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..apps.batch import MEDIA_EXTENSIONS

#: a detect child reports its own peak memory on its last stderr line
_DETECT = r"""
import resource, sys
cap = int(sys.argv[3]) << 20  # address space: a run-away allocation fails (and is counted) instead of swapping
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from avsync.cli.main import main
try:
    rc = main(["detect", sys.argv[1], "--json", "--method", sys.argv[2]])
except SystemExit as exc:
    rc = exc.code if isinstance(exc.code, int) else 1
try:  # this image's own peak: ru_maxrss keeps the forking parent's peak across exec
    with open("/proc/self/status") as fh:
        peak_kb = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM"))
except (OSError, StopIteration):
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.stderr.write("\n@@maxrss_kb %d\n" % peak_kb)
sys.stderr.flush()
sys.exit(rc)
"""


#: the address-space cap of each detect child
ADDRESS_SPACE_MB = 6144
#: a detect may not pass this peak (resident) memory
MEMORY_LIMIT_MB = 1024


@dataclass
class Outcome:
    name: str
    kind: str  # 'fuzz' (may still be measurable: exit 0 or 3) or 'not_media' (exit 3 only)
    rc: int | None = None
    seconds: float = 0.0
    peak_mb: float | None = None
    traceback: bool = False
    hang: bool = False
    message: str = ""
    #: it ran out of its address space (or said it could not allocate): memory not bounded
    over_memory: bool = False

    @property
    def wrong_exit(self) -> bool:
        if self.hang or self.rc is None:
            return False
        return self.rc not in ((0, 3) if self.kind == "fuzz" else (3,))


#: what the columns of :meth:`Summary.table` count
LEGEND = """\
run: the command the corpus went through. inputs tried: broken, truncated, hostile or odd inputs (and
uploads for serve). tracebacks: runs whose output held a Python traceback. hangs: runs past the deadline.
wrong exit codes / 5xx: detect exits other than 0 or 3 (3 only for non-media), batch exits other than 0 or
3, serve answers 5xx. rows lost: batch inputs without a row in the output. peak memory: the largest
resident memory of one detect process."""


@dataclass
class Summary:
    detect: list[Outcome] = field(default_factory=list)
    batch: dict = field(default_factory=dict)
    service: dict = field(default_factory=dict)

    def table(self) -> str:
        d = self.detect
        peak = max((o.peak_mb or 0.0 for o in d), default=0.0)
        over = sum(o.over_memory for o in d)
        rows = [("detect", len(d), sum(o.traceback for o in d), sum(o.hang for o in d),
                 sum(o.wrong_exit for o in d), "-", f"{peak:.0f} MB" + (f" ({over} over {MEMORY_LIMIT_MB} MB)"
                                                                      if over else ""))]
        if self.batch:
            b = self.batch
            rows.append(("batch", b["inputs"], b["tracebacks"], int(b["hang"]), int(b["rc"] not in (0, 3)),
                         b["rows_lost"], "-"))
        if self.service:
            s = self.service
            rows.append(("serve", s["uploads"], s["tracebacks"], s["hangs"], s["server_errors"], "-", "-"))
        head = ("run", "inputs tried", "tracebacks", "hangs", "wrong exit codes / 5xx", "rows lost", "peak memory")
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
        out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
        out.append(LEGEND)
        if self.service:
            s = self.service
            out.append(f"serve: {s['served_during_slow']}/{s['tried_during_slow']} uploads answered while 3 slow "
                       f"clients held connections, then {s.get('concurrent_answered', 0)}/{s.get('concurrent', 0)} "
                       f"concurrent ones beside 3 more (slow ones answered {s['slow_status']}); canary server saw "
                       f"{s['canary_connections']} connection(s) from {s['playlists']} uploaded playlists")
        bad = [o for o in d if o.traceback or o.hang or o.wrong_exit or o.over_memory]
        for o in bad[:20]:
            out.append(f"  {o.name}: rc={o.rc} hang={o.hang} traceback={o.traceback} over_memory={o.over_memory} "
                       f"{o.message[:160]}")
        return "\n".join(out)

    def failures(self) -> int:
        d = self.detect
        n = sum(o.traceback or o.hang or o.wrong_exit or o.over_memory for o in d)
        if self.batch:
            b = self.batch
            n += b["tracebacks"] + int(b["hang"]) + int(b["rc"] not in (0, 3)) + b["rows_lost"]
        if self.service:
            s = self.service
            n += s["tracebacks"] + s["hangs"] + s["server_errors"] + s["canary_connections"]
            n += int(s["served_during_slow"] < s["tried_during_slow"])
            n += s.get("concurrent", 0) - s.get("concurrent_answered", 0)
        return n

    def to_dict(self) -> dict:
        return {"detect": [o.__dict__ | {"wrong_exit": o.wrong_exit} for o in self.detect], "batch": self.batch,
                "service": self.service, "failures": self.failures()}


# -- the corpus -------------------------------------------------------------------------------------
def _sources(paths: list[str], limit: int) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        q = Path(p)
        if q.is_dir():
            out += sorted(x for x in q.rglob("*") if x.is_file() and x.suffix.lower() in MEDIA_EXTENSIONS)
        elif q.is_file():
            out.append(q)
    return out[:limit]


def _ts_jump(src: Path, dst: Path, jump_s: int = 3 * 3600) -> bool:
    """``src`` remuxed to MPEG-TS twice, the second copy ``jump_s`` later, joined (no re-encode)."""
    import av

    parts = []
    for i, offset in enumerate((0, jump_s)):
        part = dst.with_suffix(f".part{i}.ts")
        try:
            with av.open(str(src)) as inp, av.open(str(part), "w", format="mpegts",
                                                   container_options={"output_ts_offset": str(offset)}) as out:
                streams = {}
                for s in inp.streams:
                    if s.type in ("audio", "video") and (s.type not in [t.type for t in streams.values()]):
                        streams[s.index] = out.add_stream_from_template(s)
                for pkt in inp.demux(list(inp.streams[k] for k in streams)):
                    if pkt.dts is None or pkt.stream.index not in streams:
                        continue
                    pkt.stream = streams[pkt.stream.index]
                    out.mux(pkt)
        except Exception:
            return False
        parts.append(part)
    with open(dst, "wb") as fh:
        for part in parts:
            fh.write(part.read_bytes())
            part.unlink()
    return True


def make_corpus(sources: list[Path], out: Path, seed: int = 0) -> list[tuple[Path, str]]:
    """The inputs (path, kind) written to ``out``."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    items: list[tuple[Path, str]] = []
    for n, src in enumerate(sources):
        data = src.read_bytes()
        stem, ext = f"s{n}", src.suffix.lower() or ".mp4"
        for frac in (0.05, 0.5, 0.95):
            p = out / f"{stem}_trunc{int(frac * 100)}{ext}"
            p.write_bytes(data[: max(1, int(len(data) * frac))])
            items.append((p, "fuzz"))
        for k, flips in enumerate((8, 64, 1024)):
            b = bytearray(data)
            for _ in range(flips):
                i = rng.randrange(len(b) // 10, len(b))  # keep most of the header: the decoder meets them
                b[i] ^= 1 << rng.randrange(8)
            p = out / f"{stem}_flip{flips}{ext}"
            p.write_bytes(bytes(b))
            items.append((p, "fuzz"))
        b = bytearray(data)
        a = len(b) // 3
        b[a:a + min(65536, len(b) // 4)] = bytes(min(65536, len(b) // 4))
        p = out / f"{stem}_zeros{ext}"
        p.write_bytes(bytes(b))
        items.append((p, "fuzz"))
        p = out / f"{stem}_jump3h.ts"
        if _ts_jump(src, p):
            items.append((p, "fuzz"))
    odd = out / "odd"
    odd.mkdir(exist_ok=True)
    (odd / "empty.mp4").write_bytes(b"")
    (odd / "text.mp4").write_text("this is not a video\n" * 100)
    (odd / "playlist.mp4").write_text("#EXTM3U\n#EXTINF:2,\nhttp://127.0.0.1:9/a.ts\n#EXTINF:2,\n/etc/hostname\n")
    (odd / "concat.mkv").write_text("ffconcat version 1.0\nfile '/etc/hostname'\n")
    (odd / "folder.mp4").mkdir(exist_ok=True)
    items += [(odd / n, "not_media") for n in ("empty.mp4", "text.mp4", "playlist.mp4", "concat.mkv", "folder.mp4")]
    try:
        os.mkfifo(odd / "pipe.mp4")
        items.append((odd / "pipe.mp4", "not_media"))
    except (OSError, AttributeError):
        pass
    return items


# -- detect -------------------------------------------------------------------------------------------
def _env() -> dict:
    src = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_detect(path: Path, kind: str, method: str, timeout_s: float) -> Outcome:
    o = Outcome(path.name, kind)
    t = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-c", _DETECT, str(path), method, str(ADDRESS_SPACE_MB)],
                           capture_output=True, text=True,
                           timeout=timeout_s, env=_env())
    except subprocess.TimeoutExpired:
        o.hang, o.seconds = True, time.monotonic() - t
        return o
    o.seconds = time.monotonic() - t
    o.rc = r.returncode
    err = r.stderr
    o.traceback = "Traceback (most recent call last)" in err
    for line in err.splitlines():
        if line.startswith("@@maxrss_kb "):
            o.peak_mb = int(line.split()[1]) / 1024
    o.message = " ".join(ln for ln in err.splitlines() if ln.startswith("avsync:"))[:300]
    low = err.lower()
    o.over_memory = ("memoryerror" in low or "unable to allocate" in low or "cannot allocate memory" in low
                     or (o.peak_mb or 0) >= MEMORY_LIMIT_MB)
    return o


# -- batch --------------------------------------------------------------------------------------------
def run_batch_check(folder: Path, expected: int, timeout_s: float, workers: int = 2) -> dict:
    out = folder.parent / "batch-rows.jsonl"
    if out.exists():
        out.unlink()
    res = {"inputs": expected, "hang": False, "rc": None, "tracebacks": 0, "rows": 0, "rows_lost": expected}
    try:
        r = subprocess.run([sys.executable, "-m", "avsync", "batch", str(folder), "--out", str(out), "--workers",
                            str(workers), "--no-progress", "--method", "motion"], capture_output=True, text=True,
                           timeout=timeout_s, env=_env())
        res["rc"] = r.returncode
        res["tracebacks"] = int("Traceback (most recent call last)" in r.stderr)
    except subprocess.TimeoutExpired:
        res["hang"] = True
    if out.exists():
        inputs = {json.loads(x).get("input") for x in out.read_text().splitlines() if x.strip()}
        res["rows"] = len(inputs)
        res["rows_lost"] = max(0, expected - len(inputs))
    return res


# -- the service ------------------------------------------------------------------------------------
class _Canary(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(404)
                self.end_headers()

            def log_message(self, *a):
                pass

        super().__init__(("127.0.0.1", 0), H)
        self.connections = 0

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _upload(port: int, path: Path, name: str, timeout: float) -> tuple[int | None, str]:
    import urllib.error
    import urllib.request
    import uuid

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nmotion\r\n--{boundary}--\r\n" \
        .encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/detect", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (OSError, TimeoutError) as exc:
        return None, str(exc)


def _slow_client(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /api/detect HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: multipart/form-data; boundary=XX"
              b"\r\nContent-Length: 1000000\r\n\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; "
              b"filename=\"slow.mp4\"\r\n\r\n" % port)
    return s


def run_service_check(items: list[tuple[Path, str]], work: Path, timeout_s: float) -> dict:
    res = {"uploads": 0, "tracebacks": 0, "hangs": 0, "server_errors": 0, "served_during_slow": 0, "concurrent": 0,
           "concurrent_answered": 0,
           "tried_during_slow": 0, "slow_status": [], "canary_connections": 0, "playlists": 0}
    port = _free_port()
    data = work / "serve-data"
    log = open(work / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "avsync", "serve", "--port", str(port), "--data-dir", str(data),
                             "--workers", "2", "--queue", "4", "--upload-grace-s", "3", "--upload-min-rate", "4096",
                             "--uploads-per-client", "64",  # every client of this run is on 127.0.0.1
                             "--job-deadline-s", str(timeout_s)], stdout=log, stderr=subprocess.STDOUT, env=_env(),
                            start_new_session=True)
    canary = _Canary()
    threading.Thread(target=canary.serve_forever, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        # three slow clients, then every input uploaded (retrying 503s) while they trickle
        slow = [_slow_client(port) for _ in range(3)]
        files = [(p, k) for p, k in items if p.is_file()]
        t_end = time.monotonic() + timeout_s * 4
        for p, _ in files:
            res["uploads"] += 1
            for s in slow:
                try:
                    s.send(b"\0")
                except OSError:
                    pass
            while True:
                t = time.monotonic()
                status, text = _upload(port, p, p.name, timeout_s)
                if status is None and time.monotonic() - t >= timeout_s - 1:
                    res["hangs"] += 1
                    break
                if status == 503 and time.monotonic() < t_end:
                    time.sleep(0.5)
                    continue
                break
            res["tried_during_slow"] += 1
            if status is not None and status < 500:
                res["served_during_slow"] += 1
            if status is not None and status >= 500:
                res["server_errors"] += 1
            res["tracebacks"] += int("Traceback" in text)
        # then 30 concurrent uploads (503s retried) beside three new slow clients: all must be answered
        slow2 = [_slow_client(port) for _ in range(3)]
        good = next((p for p, k in items if k == "fuzz" and p.is_file() and "flip8" in p.name),
                    next(p for p, k in items if p.is_file()))

        def one(_):
            end = time.monotonic() + timeout_s * 4
            while True:
                st, tx = _upload(port, good, good.name, timeout_s)
                if st == 503 and time.monotonic() < end:
                    time.sleep(0.3)
                    continue
                return st, tx

        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(30) as ex:
            got = list(ex.map(one, range(30)))
        res["concurrent"] = len(got)
        res["concurrent_answered"] = sum(st is not None and st < 500 for st, _ in got)
        res["server_errors"] += sum(st is not None and st >= 500 for st, _ in got)
        res["hangs"] += sum(st is None for st, _ in got)
        res["tracebacks"] += sum("Traceback" in tx for _, tx in got)
        slow += slow2
        for s in slow:
            try:
                s.settimeout(10)
                first = s.recv(200).split(b"\r\n", 1)[0].decode("latin-1")
                res["slow_status"].append(first.split(" ")[1] if " " in first else first)
            except OSError as exc:
                res["slow_status"].append(type(exc).__name__)
            s.close()
        # uploaded playlists pointing at the canary and at local files
        secret = next((p for p, k in items if k == "fuzz" and p.is_file()), None)
        for name in ("evil.m3u8", "evil.m3u", "evil.mp4", "evil.ts"):
            pl = work / name
            pl.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nhttp://127.0.0.1:{canary.server_address[1]}"
                          f"/seg.ts\n#EXTINF:2,\n{secret}\n#EXT-X-ENDLIST\n")
            status, text = _upload(port, pl, name, timeout_s)
            res["playlists"] += 1
            res["server_errors"] += int(status is None or status >= 500)
        time.sleep(0.5)
        res["canary_connections"] = canary.connections
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        canary.shutdown()
        canary.server_close()
        log.close()
    res["tracebacks"] += int("Traceback" in (work / "serve.log").read_text(errors="replace"))
    return res


# -- the command --------------------------------------------------------------------------------------
def run(sources: list[str], work: Path, method: str = "motion", timeout_s: float = 60.0, max_sources: int = 2,
        service: bool = True, log=print) -> Summary:
    srcs = _sources(sources, max_sources)
    if not srcs:
        from ..media.synth import make_sample

        synth = work / "synth.mp4"
        make_sample(synth, duration_s=8.0, width=320, height=240)
        srcs = [synth]
        log(f"robustness: no clips given: a synthetic one ({synth.name})")
    corpus = work / "corpus"
    items = make_corpus(srcs, corpus)
    log(f"robustness: {len(items)} inputs from {len(srcs)} clip(s)")
    summary = Summary()
    for p, kind in items:
        o = run_detect(p, kind, method, timeout_s)
        summary.detect.append(o)
        log(f"  detect {p.name}: rc={o.rc} {'HANG ' if o.hang else ''}{'TRACEBACK ' if o.traceback else ''}"
            f"{o.seconds:.1f} s, peak {o.peak_mb or 0:.0f} MB")
    expected = sum(1 for p, _ in items if not p.is_dir() and p.suffix.lower() in MEDIA_EXTENSIONS)
    summary.batch = run_batch_check(corpus, expected, timeout_s * max(4, len(items) // 2))
    log(f"  batch: rc={summary.batch['rc']} rows {summary.batch['rows']}/{expected}")
    if service:
        summary.service = run_service_check(items, work, timeout_s)
    return summary


def main(args: argparse.Namespace) -> int:
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="avsync-robustness-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        summary = run(args.clips, work, args.method, args.timeout_s, args.max_clips, not args.no_service,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
        print(summary.table())
        if args.out:
            Path(args.out).write_text(json.dumps(summary.to_dict(), indent=1, default=str))
        return 0 if summary.failures() == 0 else 1
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
