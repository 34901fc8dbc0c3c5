"""A real PostgreSQL server for tests: ``initdb`` into a temporary directory, ``postgres`` on a free port of
127.0.0.1 (no Unix socket outside that directory), stopped (fast shutdown) and removed at the end.

PostgreSQL refuses to run as root; under root (CI, the sandbox) the server runs as the ``postgres`` user
that Debian's package creates (or ``nobody``), in a directory it owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.peers.common import LOOPBACK, free_port, wait_for_port


def _program(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; scripts/setup.sh should have installed postgresql")
        pytest.skip(f"{name} is not installed (Debian package postgresql)")
    return path


def _run_as() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
    pytest.skip("running as root and no unprivileged user to run PostgreSQL as")


class PostgresServer:
    __test__ = False

    def __init__(self, port: int, user: str) -> None:
        self.port = port
        self.user = user
        self._n = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        self._n += 1
        name = f"t{os.getpid()}_{self._n}"
        with psycopg.connect(host=LOOPBACK, port=self.port, user=self.user, dbname="postgres",
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    initdb, postgres = _program("initdb"), _program("postgres")
    ids = _run_as()
    root = Path(tempfile.mkdtemp(prefix="dcsaudit-pg-"))
    data, sock = root / "data", root / "sock"
    data.mkdir()
    sock.mkdir()
    for d in (root, data, sock):
        os.chmod(d, 0o700)
        if ids:
            os.chown(d, *ids)
    user = "dcsaudit"
    kw: dict[str, object] = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run([initdb, "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120, env=env, cwd=root, **kw)  # type: ignore[call-overload]
    port = free_port()
    cmd = [postgres, "-D", str(data), "-p", str(port), "-h", LOOPBACK, "-k", str(sock),
           "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
           "-c", "max_connections=40", "-c", "shared_buffers=16MB"]
    log = root / "postgres.log"  # a file, not a pipe nobody reads (see common.running)
    with open(log, "wb") as out_file:
        proc = subprocess.Popen(cmd, stdout=out_file, stderr=subprocess.STDOUT, env=env, cwd=root, **kw)  # type: ignore[call-overload]
    try:
        try:
            wait_for_port(port, timeout=30)
        except TimeoutError:
            proc.kill()
            out = log.read_text(errors="replace")
            raise RuntimeError(f"postgres did not start: {out[-2000:]}") from None
        _wait_ready(port, user)
        yield PostgresServer(port, user)
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(port: int, user: str, timeout: float = 30.0) -> None:
    """The port listens before the server accepts logins ("the database system is starting up")."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host=LOOPBACK, port=port, user=user, dbname="postgres", connect_timeout=5):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
