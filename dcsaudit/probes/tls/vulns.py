"""Known-vulnerability tests: Heartbleed, CCS injection, client-initiated renegotiation (ROBOT opt-in).

Heartbleed and CCS injection run on raw records with the project's own TLS code (``vulns_raw``), client
renegotiation with nassl's legacy client in a bounded thread (``renegotiation``): each mirrors sslyze's
plugin, except that a silence or garbage is undetermined, never "not vulnerable". They run one after
another on one connection slot, after the enumeration, with the version <= TLS 1.2 and the suites the
audit found accepted; a server that accepts only TLS 1.3 has neither attack surface (RFC 8446 has no
heartbeat and no renegotiation, and its ChangeCipherSpec is a no-op), which is said, not measured.
Each test records one evidence item with what was sent and what came back.

ROBOT sends many RSA key exchanges (seconds per endpoint) and stays on sslyze's plugin, opt-in. sslyze
blocks, and a thread cannot be stopped: a server that drip-feeds its answers keeps every read alive
past any per-read timeout (issue 12 F1). So ROBOT runs in a child process (``sslyze_worker.py``) that is
killed when the bound fires, fed with the audit's facts instead of sslyze's connectivity test; children
are started ahead (``prewarm``) only when ROBOT is on, so the default path never imports sslyze.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.tls import Vulnerabilities
from dcsaudit.probes.tls import renegotiation, vulns_raw, wire
from dcsaudit.probes.tls.engine import Timeouts

_WORKER = Path(__file__).with_name("sslyze_worker.py")
# -P: the child's sys.path gets no current directory; runpy: the worker file runs without importing
# dcsaudit's package (its models cost more than sslyze's plugins).
_ARGV = [sys.executable, "-P", "-c", "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')",
         str(_WORKER)]
# At most this many children wait ready at a time: each import of sslyze costs CPU the enumeration needs.
PREWARM_MAX = 2
# Bound of one endpoint's tests without ROBOT: three connections (twelve handshakes), tens of ms on loopback.
BOUND_SECONDS = 20.0
PROBE = "tls.vulns"
LEGACY_VERSIONS = ("TLSv1.2", "TLSv1.1", "TLSv1.0", "SSLv3")  # where the tested attacks exist, best first
ROBOT_OFF = "ROBOT not tested (opt-in: TlsAuditOptions.robot)"


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


def _reason(detail: str) -> Reason:
    """The Reason of an undetermined test, from what its detail says happened."""
    d = detail.lower()
    if ("time" in d and ("out" in d or "bound" in d)) or "no answer" in d or "no result" in d:
        return Reason.TIMEOUT
    if "client certificate" in d:
        return Reason.CLIENT_CERTIFICATE_REQUIRED
    if "refused the handshake" in d or "handshake failed" in d:
        return Reason.TLS_FAILURE
    if "reset" in d:
        return Reason.RESET
    if "connect failed" in d:
        return Reason.UNREACHABLE
    return Reason.PROTOCOL_ERROR


def _hello(version: str, suites: Sequence[str], sni: str | None) -> wire.HelloSpec:
    """The enumeration's flight hello for ``version`` (enumerate.Enumerator._spec): it was accepted."""
    from dcsaudit.probes.tls.enumerate import ALL_GROUPS_12, SIGALGS_12
    from dcsaudit.rules.tls_suites import VERSION_CODES, suites_by_name

    known = suites_by_name()
    codes = [known[s].code for s in suites if s in known]
    return wire.HelloSpec(version=VERSION_CODES[version], suites=codes, groups=list(ALL_GROUPS_12),
                          signature_algorithms=list(SIGALGS_12), sni=sni, extensions=version != "SSLv3")


Word = Literal["vulnerable", "not vulnerable", "undetermined"]


def _word(v: bool | None) -> Word:
    return "undetermined" if v is None else "vulnerable" if v else "not vulnerable"


async def check_vulnerabilities(ctx: AuditContext, host: str, port: int, *, protocols: Mapping[str, Sequence[str]],
                                client_cert: str, robot: bool, sni: str | None = None,
                                bound: float | None = None) -> tuple[Vulnerabilities, bool | None]:
    """(vulnerabilities, client-initiated renegotiation accepted). ``protocols``: the audit's accepted suites
    (IANA names) per version. Never raises; bounded by ``bound`` (default BOUND_SECONDS without ROBOT, the
    endpoint bound with it) whatever the server does."""
    to = ctx.config.scan.timeouts
    limit = to.endpoint if bound is None else bound
    if not robot:
        limit = min(limit, BOUND_SECONDS)
    target = f"{host}:{port}/tls"
    notes: list[str] = []
    evidence: list[str] = []
    undetermined: list[str] = []
    if limit < 1.0:
        why = "no time left within the endpoint bound (scan.timeouts.endpoint)"
        ev = ctx.evidence.add(PROBE, target, False, f"vulnerability tests not run: {why}", reason=Reason.TIMEOUT)
        return Vulnerabilities(notes=[f"Heartbleed, CCS injection and renegotiation undetermined: {why}"]
                               + ([] if robot else [ROBOT_OFF]), evidence=[ev.id],
                               undetermined=["Heartbleed", "CCS injection"] + (["ROBOT"] if robot else [])), None
    start = time.monotonic()
    legacy = next((v for v in LEGACY_VERSIONS if protocols.get(v)), None)
    heartbleed: bool | None
    ccs: bool | None
    reneg: bool | None
    if legacy is None:
        # Only TLS 1.3 (an SSLv2-only server is not audited further): the tests have nothing to run on. Not
        # a pass (nothing was measured; sslyze answers "not vulnerable" here): not applicable, and why.
        heartbleed = ccs = None
        reneg = False  # RFC 8446 §4.1.2: TLS 1.3 forbids renegotiation (a ClientHello mid-connection is fatal)
        why = ("only TLS 1.3 is accepted: Heartbleed and CCS injection are bugs of TLS 1.2-and-earlier "
               "handshakes in OpenSSL releases that predate TLS 1.3, and TLS 1.3 forbids renegotiation "
               "(RFC 8446 §4.1.2)")
        notes.append(f"Heartbleed, CCS injection: not applicable, not tested: {why}")
        evidence.append(ctx.evidence.add(PROBE, target, True, f"not tested on the wire: {why}",
                                         data={"inferred": True, "versions": [v for v in protocols if protocols[v]]}).id)
    else:
        t = Timeouts(connect=to.connect, read=min(to.read, to.tls_handshake))
        suites = protocols[legacy]
        one_test = t.connect + 2 * t.read + 1.0  # connect, the flight, the answer
        # One slot for the three tests, one connection at a time: fragile products get no extra load.
        async with ctx.limiter.slot(host):
            hb = await vulns_raw.heartbleed(host, port, _hello(legacy, suites, sni), t,
                                            max(0.5, min(one_test, limit - (time.monotonic() - start))))
            heartbleed = hb.vulnerable
            evidence.append(_record(ctx, "heartbleed", target, "Heartbleed (CVE-2014-0160)", hb.vulnerable,
                                    hb.detail, hb.data(), hb.elapsed_ms))
            cc = await vulns_raw.ccs_injection(host, port, _hello(legacy, suites, sni), t,
                                               max(0.5, min(one_test, limit - (time.monotonic() - start))))
            ccs = cc.vulnerable
            evidence.append(_record(ctx, "ccs_injection", target, "CCS injection (CVE-2014-0224)", cc.vulnerable,
                                    cc.detail, cc.data(), cc.elapsed_ms))
            rn = await renegotiation.client_renegotiation(
                host, port, version=legacy, ciphers=openssl_ciphers(suites), sni=sni, read_timeout=t.read,
                connect_timeout=t.connect, bound=max(0.5, limit - (time.monotonic() - start) - 1.0),
                client_cert_required=client_cert == "required")
            reneg = rn.accepted
            word = "undetermined" if reneg is None else "accepted" if reneg else "not accepted"
            evidence.append(_record(ctx, "client_renegotiation", target, "client-initiated renegotiation", None,
                                    rn.detail, rn.data(), rn.elapsed_ms, word=word,
                                    ok=reneg is not None))
        for name, r in (("Heartbleed", hb), ("CCS injection", cc)):
            if r.vulnerable is None:
                undetermined.append(name)
                notes.append(f"{name} undetermined: {r.detail}")
        if reneg is None:
            notes.append(f"client renegotiation undetermined: {rn.detail}")
        if protocols.get("TLSv1.3"):
            notes.append(f"tested over {legacy}, which the server also accepts (the attacks target TLS 1.2-and-"
                         "earlier handshakes)")
    robot_name: str | None = None
    if robot:
        robot_name, robot_note = await _robot(ctx, host, port, protocols, client_cert, sni,
                                              limit - (time.monotonic() - start))
        if robot_name is None:
            undetermined.append("ROBOT")
        if robot_note:
            notes.append(robot_note)
    else:
        notes.append(ROBOT_OFF)
    return Vulnerabilities(heartbleed=heartbleed, ccs_injection=ccs, robot=robot_name, notes=notes,
                           evidence=evidence, undetermined=undetermined), reneg


def _record(ctx: AuditContext, key: str, target: str, title: str, vulnerable: bool | None, detail: str,
            data: dict[str, Any], elapsed_ms: float, *, word: str | None = None, ok: bool | None = None) -> str:
    word = word or _word(vulnerable)
    determined = ok if ok is not None else vulnerable is not None
    return ctx.evidence.add(f"{PROBE}.{key}", target, determined, f"{title}: {word}: {detail}",
                            reason=None if determined else _reason(detail), data=data, duration_ms=elapsed_ms).id


async def _robot(ctx: AuditContext, host: str, port: int, protocols: Mapping[str, Sequence[str]], client_cert: str,
                 sni: str | None, limit: float) -> tuple[str | None, str | None]:
    """sslyze's ROBOT plugin in a child: (RobotScanResultEnum name or None, note)."""
    from dcsaudit.models.tls import TLS_VERSIONS

    if limit < 1.0:
        return None, "ROBOT undetermined: no time left within the endpoint bound (scan.timeouts.endpoint)"
    top = next((v for v in reversed(TLS_VERSIONS) if protocols.get(v)), None)
    if top is None or top == "SSLv2":
        return None, "ROBOT not tested: no SSLv3 .. TLS 1.3 version accepted"
    t = ctx.config.scan.timeouts
    job = {"host": host, "port": port, "sni": sni, "highest": top, "ciphers": openssl_ciphers(protocols[top]),
           "client_auth": client_cert, "commands": ["robot"],
           "network_timeout": max(2, min(5, math.ceil(t.tls_handshake)))}
    start = time.perf_counter()
    pool = ctx.sslyze_workers
    proc: asyncio.subprocess.Process | None = None
    try:
        # One slot for the child: it opens its connections one after another.
        async with ctx.limiter.slot(host):
            proc = await (pool.take() if pool is not None else _spawn())
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write((json.dumps(job) + "\n").encode())
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), max(0.5, limit - (time.perf_counter() - start)))
    except TimeoutError:
        return None, (f"ROBOT undetermined: no result within {limit:.0f} s (the server is slow or drip-feeds its "
                      "answers); the test was stopped")
    except (OSError, ValueError) as exc:
        return None, f"ROBOT undetermined: sslyze could not run: {type(exc).__name__}: {exc}"
    finally:
        if proc is not None:
            await _kill(proc)
    try:
        answer: dict[str, Any] = json.loads(line) if line else {}
    except ValueError:
        answer = {}
    robot_name = answer.get("robot")
    if robot_name is None:
        why = "; ".join(str(n) for n in answer.get("notes", [])) or "sslyze ended without a result"
        return None, f"ROBOT undetermined: {why}"
    return str(robot_name), None
