"""Known-vulnerability tests through sslyze's own plugins: Heartbleed, CCS injection, renegotiation, ROBOT.

These need real (partial) OpenSSL handshakes and sslyze already implements them carefully, so the probe
reuses its plugins with only these scan commands, and without sslyze's connectivity test: the TLS
audit's facts (highest version, its suites, client-certificate requirement) are handed over instead
(``sslyze_worker.py``). ROBOT sends many RSA key exchanges (seconds per endpoint) and is opt-in.

sslyze blocks, and a thread cannot be stopped: a server that drip-feeds its answers keeps every read
alive past any per-read timeout, and a thread in the default executor then keeps the whole scan from
ending (issue 12 F1). So the plugins run in a child process that is killed when the bound fires; the
result then says the tests are undetermined and why. Children are started ahead (``prewarm``) so that
importing sslyze (about 0.5 s) overlaps the enumeration instead of following it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcsaudit.context import AuditContext
from dcsaudit.models.tls import Vulnerabilities

_WORKER = Path(__file__).with_name("sslyze_worker.py")
# -P: the child's sys.path gets no current directory; runpy: the worker file runs without importing
# dcsaudit's package (its models cost more than sslyze's plugins).
_ARGV = [sys.executable, "-P", "-c", "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')",
         str(_WORKER)]
# At most this many children wait ready at a time: each import of sslyze costs CPU the enumeration needs.
PREWARM_MAX = 2
# Bound of one endpoint's tests without ROBOT: a handful of connections, about 0.2 s on loopback.
BOUND_SECONDS = 20.0


class WorkerPool:
    """Children started ahead of need for ``expected`` endpoints, at most PREWARM_MAX waiting at a time
    (each one taken is replaced while endpoints remain); lives on the AuditContext for one TLS stage."""

    def __init__(self, expected: int) -> None:
        self._idle: list[asyncio.subprocess.Process] = []
        self._remaining = expected
        self._spawning: set[asyncio.Task[None]] = set()

    def expect(self, endpoints: int) -> None:
        """How many endpoints will still take a child (the TLS stage knows once identification is done)."""
        self._remaining = endpoints

    async def prewarm(self) -> None:
        for _ in range(max(0, min(self._remaining, PREWARM_MAX) - len(self._idle) - len(self._spawning))):
            try:
                self._idle.append(await _spawn())
            except OSError:
                return

    def _refill(self) -> None:
        if len(self._idle) + len(self._spawning) < min(self._remaining, PREWARM_MAX):
            task = asyncio.ensure_future(self._spawn_idle())
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)

    async def _spawn_idle(self) -> None:
        with contextlib.suppress(OSError):
            self._idle.append(await _spawn())

    async def take(self) -> asyncio.subprocess.Process:
        self._remaining -= 1
        proc = None
        while self._idle and proc is None:
            candidate = self._idle.pop(0)
            proc = candidate if candidate.returncode is None else None
        self._refill()
        return proc if proc is not None else await _spawn()

    async def close(self) -> None:
        """End the children nobody used (they wait on stdin: EOF ends them, a kill makes sure)."""
        for task in list(self._spawning):
            task.cancel()
        await asyncio.gather(*self._spawning, return_exceptions=True)
        idle, self._idle = self._idle, []
        for proc in idle:
            await _kill(proc)


async def _spawn() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*_ARGV, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(TimeoutError, ProcessLookupError):
        await asyncio.wait_for(proc.wait(), 2.0)


def openssl_ciphers(suites: Sequence[str]) -> str:
    """The accepted suites (IANA names) as an OpenSSL cipher string for sslyze's client."""
    from dcsaudit.rules.tls_suites import suites_by_name

    known = suites_by_name()
    names = [known[s].openssl for s in suites if s in known and known[s].openssl]
    return ":".join(dict.fromkeys(names)) or "ALL:COMPLEMENTOFALL"


def _undetermined(why: str, robot: bool) -> Vulnerabilities:
    notes = [f"Heartbleed, CCS injection and renegotiation undetermined: {why}"]
    if not robot:
        notes.append("ROBOT not tested (opt-in: TlsAuditOptions.robot)")
    return Vulnerabilities(notes=notes)


async def check_vulnerabilities(ctx: AuditContext, host: str, port: int, *, highest: str, suites: Sequence[str],
                                client_cert: str, robot: bool, sni: str | None = None,
                                bound: float | None = None) -> tuple[Vulnerabilities, bool | None]:
    """(vulnerabilities, client-initiated renegotiation accepted). Never raises; bounded by ``bound``
    (default BOUND_SECONDS without ROBOT, the endpoint bound with it) whatever the server does."""
    t = ctx.config.scan.timeouts
    limit = bound if bound is not None else (t.endpoint if robot else min(BOUND_SECONDS, t.endpoint))
    if limit < 1.0:
        return _undetermined("no time left within the endpoint bound (scan.timeouts.endpoint)", robot), None
    job = {"host": host, "port": port, "sni": sni, "highest": highest, "ciphers": openssl_ciphers(suites),
           "client_auth": client_cert, "robot": robot, "network_timeout": max(2, min(5, math.ceil(t.tls_handshake)))}
    start = time.perf_counter()
    pool = ctx.sslyze_workers
    proc: asyncio.subprocess.Process | None = None
    try:
        # One slot for the child: it opens at most four connections, one after another per test.
        async with ctx.limiter.slot(host):
            proc = await (pool.take() if pool is not None else _spawn())
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write((json.dumps(job) + "\n").encode())
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), max(0.5, limit - (time.perf_counter() - start)))
    except TimeoutError:
        return _undetermined(f"no result within {limit:.0f} s (the server is slow or drip-feeds its answers); "
                             "the tests were stopped", robot), None
    except (OSError, ValueError) as exc:
        return _undetermined(f"sslyze could not run: {type(exc).__name__}: {exc}", robot), None
    finally:
        if proc is not None:
            await _kill(proc)
    try:
        answer: dict[str, Any] = json.loads(line) if line else {}
    except ValueError:
        answer = {}
    if not answer:
        return _undetermined("sslyze ended without a result", robot), None
    notes = [str(n) for n in answer.get("notes", [])]
    if not robot:
        notes.append("ROBOT not tested (opt-in: TlsAuditOptions.robot)")
    return Vulnerabilities(heartbleed=answer.get("heartbleed"), ccs_injection=answer.get("ccs_injection"),
                           robot=answer.get("robot"), notes=notes), answer.get("client_renegotiation")
