"""Shared helpers for tests that start real peers on loopback (never any other address)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def require_program(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        # CI installs every peer (scripts/setup.sh); a missing one there is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; scripts/setup.sh should have installed it")
        pytest.skip(f"{name} is not installed")
    return path


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs (the test failed or timed out before it ended), and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)


@contextmanager
def running(cmd: list[str], port: int | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None, wait: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    """Start a peer program, wait until its port listens, and always stop it.

    Its output goes to a temporary file, never to a pipe nobody reads: once 64 KiB of log lines filled
    such a pipe, Orthanc blocked in write() holding its log lock, and every DICOM thread with it (the
    fourth scan of one Orthanc hung until its timeout)."""
    log = tempfile.TemporaryFile()  # closed in finally, after the peer has stopped
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        if port is not None and wait:
            try:
                wait_for_port(port)
            except TimeoutError:
                proc.kill()
                proc.wait(timeout=5)
                log.seek(0)
                out = log.read().decode(errors="replace")
                raise RuntimeError(f"{cmd[0]} did not start: {out[-2000:]}") from None
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


class TestPKI:
    """A throwaway CA with server and client certificates for 127.0.0.1/localhost, written to files."""

    __test__ = False  # not a test class, despite its name

    key_type = trustme.KeyType.ECDSA

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = trustme.CA(key_type=self.key_type)
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server = self.ca.issue_cert("127.0.0.1", "localhost", "::1", key_type=self.key_type)
        self.server_cert = directory / "server.pem"
        self.server_key = directory / "server.key"
        self.server_chain = directory / "server-chain.pem"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        with open(self.server_chain, "wb") as f:
            for blob in server.cert_chain_pems:
                f.write(blob.bytes())
        client = self.ca.issue_cert("dcsaudit-client", key_type=self.key_type)
        self.client_cert = directory / "client.pem"
        self.client_key = directory / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))


@contextmanager
def tcp_server(handle: Callable[[socket.socket], None], *, threaded: bool = False, backlog: int = 64) -> Iterator[int]:
    """A hand-written loopback TCP peer: accepts connections and gives each to ``handle``.

    For behaviours no packaged server offers on demand (silence, garbage, resets, absurd lengths).
    ``handle`` runs in the accept loop, or in a thread per connection with ``threaded``; every
    accepted socket is closed when the context ends, whatever ``handle`` did with it.
    """
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((LOOPBACK, 0))
    srv.listen(backlog)
    srv.settimeout(0.2)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def guarded(conn: socket.socket) -> None:
        try:
            handle(conn)
        except OSError:
            conn.close()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            accepted.append(conn)
            if threaded:
                threading.Thread(target=guarded, args=(conn,), daemon=True).start()
            else:
                guarded(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            with contextlib.suppress(OSError):
                conn.close()
        srv.close()
