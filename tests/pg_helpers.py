"""A throwaway PostgreSQL server for the job-store tests (127.0.0.1, trust auth, in a temporary
folder), or the server named by $AVSYNC_TEST_POSTGRES (what .ci/run starts)."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """``start()`` raises RuntimeError with the reason when no server can be started here."""

    def __init__(self):
        self.dir: str | None = None
        self.url: str | None = None
        self._demote = None

    def start(self) -> "PgServer":
        env_url = os.environ.get("AVSYNC_TEST_POSTGRES")
        if env_url:
            self.url = env_url
            return self
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(f"psycopg is not installed ({exc})") from None
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("PostgreSQL's initdb/pg_ctl not found (Debian: apt-get install postgresql)")
        self.dir = tempfile.mkdtemp(prefix="avsync-pg-")
        if os.geteuid() == 0:  # initdb refuses root: run the server as the 'postgres' user
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server") from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

            def demote():
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
            self._demote = demote
        data = os.path.join(self.dir, "data")
        port = _free_port()
        r = subprocess.run([initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                           capture_output=True, text=True, preexec_fn=self._demote, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip()[-300:]}")
        opts = f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        r = subprocess.run([pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "-t", "60",
                            "start"], capture_output=True, text=True, preexec_fn=self._demote, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {(r.stderr or r.stdout).strip()[-300:]}")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self

    def new_database(self) -> str:
        """The URL of a fresh, empty database on this server."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as c:
            c.execute(f"CREATE DATABASE {name}")
        base, _, _ = self.url.rpartition("/")
        rest = self.url.rpartition("/")[2]
        query = rest.split("?", 1)[1] if "?" in rest else ""
        return f"{base}/{name}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        if self.dir is None:
            return
        pg_ctl = _bin("pg_ctl")
        if pg_ctl:
            subprocess.run([pg_ctl, "-D", os.path.join(self.dir, "data"), "-m", "immediate", "-w", "stop"],
                           capture_output=True, preexec_fn=self._demote, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
