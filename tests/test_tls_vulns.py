"""sslyze's vulnerability plugins fed with the TLS audit's facts, and bounded even against a drip-feeding
server (issue 12 F1, issue 16). Real peers on 127.0.0.1: openssl s_server, a drip-feeding proxy in front."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.probes.tls.vulns import WorkerPool, check_vulnerabilities
from tests.peers.common import LOOPBACK, tcp_server
from tests.peers.tls_peers import RsaPKI, openssl_server

# sslyze's Heartbleed request: a heartbeat record (type 24) of 16384 bytes, request type 1, length 16381.
HEARTBEAT = re.compile(rb"\x18\x03[\x00-\x04]\x40\x00\x01\x3f\xfd")


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> RsaPKI:
    return RsaPKI(Path(tmp_path_factory.mktemp("rsa-pki")))


@contextmanager
def drip_proxy(upstream: int) -> Iterator[int]:
    """Relays to ``upstream``; once a client sends a heartbeat request, the server's bytes reach it at
    1 byte/s (every read succeeds, no per-read timeout ever fires)."""

    def relay(conn: socket.socket) -> None:
        with socket.create_connection((LOOPBACK, upstream), timeout=5) as up:
            seen, dripping = b"", False
            for _ in range(600):  # bounded: at most ~10 minutes of relaying per connection
                ready, _, _ = select.select([conn, up], [], [], 1.0)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        return
                    if not seen:
                        # sslyze sends its heartbeat right behind the ClientHello: take both before the
                        # server can answer, so the decision to drip comes before any server byte.
                        time.sleep(0.02)
                        while select.select([conn], [], [], 0)[0]:
                            more = conn.recv(65536)
                            if not more:
                                break
                            data += more
                    seen = (seen + data)[-32768:]
                    dripping = dripping or bool(HEARTBEAT.search(seen))
                    up.sendall(data)
                if up in ready:
                    data = up.recv(65536)
                    if not data:
                        return
                    if not dripping:
                        conn.sendall(data)
                        continue
                    for i in range(len(data)):
                        conn.sendall(data[i:i + 1])
                        time.sleep(1.0)

    with tcp_server(relay, threaded=True) as port:
        yield port


def _ctx(endpoint: float = 30.0) -> AuditContext:
    return AuditContext.create(parse_config({
        "deployment": "vulns test", "hosts": [{"address": LOOPBACK}],
        "scan": {"timeouts": {"connect": 1, "read": 1.5, "tls_handshake": 1.5, "endpoint": endpoint}}}))


def _workers() -> list[int]:
    """Our sslyze children still alive."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(re.search(r"PPid:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        if ppid == os.getpid() and b"sslyze_worker" in cmd:
            out.append(int(pid))
    return out


def _sslyze_own_answer(port: int) -> tuple[bool, bool, bool]:
    """sslyze's own scanner, with its connectivity test: the reference the fact-fed run must match."""
    from sslyze.plugins.scan_commands import ScanCommand
    from sslyze.scanner.models import ServerScanRequest
    from sslyze.scanner.scanner import Scanner
    from sslyze.server_setting import ServerNetworkLocation

    scanner = Scanner()
    scanner.queue_scans([ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=LOOPBACK, port=port, ip_address=LOOPBACK),
        scan_commands={ScanCommand.HEARTBLEED, ScanCommand.OPENSSL_CCS_INJECTION, ScanCommand.SESSION_RENEGOTIATION})])
    r = next(iter(scanner.get_results())).scan_result
    assert r is not None
    assert r.heartbleed.result is not None and r.openssl_ccs_injection.result is not None
    assert r.session_renegotiation.result is not None
    return (r.heartbleed.result.is_vulnerable_to_heartbleed, r.openssl_ccs_injection.result.is_vulnerable_to_ccs_injection,
            r.session_renegotiation.result.is_vulnerable_to_client_renegotiation_dos)


@pytest.mark.parametrize("switches", [("-no_tls1_3",), ("-no_tls1_3", "-legacy_renegotiation"), ()])
def test_fact_fed_plugins_agree_with_sslyze_own_scan(rsa_pki: RsaPKI, switches: tuple[str, ...]) -> None:
    # Given openssl s_server (TLS 1.2 only, with legacy renegotiation, or up to TLS 1.3)
    with openssl_server(rsa_pki, versions=switches) as port:
        highest = "TLSv1.2" if "-no_tls1_3" in switches else "TLSv1.3"
        suites = ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"] if highest == "TLSv1.2" else ["TLS_AES_256_GCM_SHA384"]

        async def fed() -> tuple[object, bool | None, float]:
            ctx = _ctx()
            start = time.perf_counter()
            v, reneg = await check_vulnerabilities(ctx, LOOPBACK, port, highest=highest, suites=suites,
                                                   client_cert="not_requested", robot=False)
            return v, reneg, time.perf_counter() - start

        # When the plugins run with the audit's facts, and sslyze runs on its own
        vulns, reneg, elapsed = asyncio.run(fed())
        reference = _sslyze_own_answer(port)
    # Then they give sslyze's own answers, quickly
    assert (vulns.heartbleed, vulns.ccs_injection, reneg) == reference  # type: ignore[attr-defined]
    assert elapsed < 5


def test_drip_feeding_server_is_abandoned_at_the_bound(rsa_pki: RsaPKI) -> None:
    # Given a TLS 1.2 server whose answers to sslyze's Heartbleed request come at 1 byte/s
    with openssl_server(rsa_pki, versions=("-no_tls1_3",)) as upstream, drip_proxy(upstream) as port:

        async def run() -> tuple[object, float]:
            ctx = _ctx()
            ctx.sslyze_workers = WorkerPool(1)
            await ctx.sslyze_workers.prewarm()
            start = time.perf_counter()
            try:
                v, _ = await check_vulnerabilities(ctx, LOOPBACK, port, highest="TLSv1.2",
                                                   suites=["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"],
                                                   client_cert="not_requested", robot=False, bound=3.0)
            finally:
                await ctx.sslyze_workers.close()
            return v, time.perf_counter() - start

        # When the vulnerability tests run with a 3 s bound
        vulns, elapsed = asyncio.run(run())
    # Then they end at the bound, undetermined with the reason, and no sslyze child is left behind
    assert elapsed < 4.5, elapsed
    assert vulns.heartbleed is None  # type: ignore[attr-defined]
    assert any("undetermined" in n and "drip-feeds" in n for n in vulns.notes)  # type: ignore[attr-defined]
    assert _workers() == []


def test_scan_of_a_drip_feeding_server_ends_within_its_bound_with_a_report(rsa_pki: RsaPKI, tmp_path: Path) -> None:
    # Given the drip-feeding server, and a scan whose endpoint bound is 8 s
    with openssl_server(rsa_pki, versions=("-no_tls1_3",)) as upstream, drip_proxy(upstream) as port:
        cfg = tmp_path / "deployment.yaml"
        cfg.write_text(yaml.safe_dump({
            "deployment": "drip", "hosts": [{"address": LOOPBACK, "tcp_ports": [port], "udp_ports": []}],
            "scan": {"use_nmap": False, "dicom_audit": False,
                     "timeouts": {"connect": 1, "read": 1.5, "tls_handshake": 1.5, "endpoint": 8}}}))
        out = tmp_path / "out"
        start = time.monotonic()
        # When `dcsaudit scan` runs (bounded here too: a hang fails the test, it does not stall it)
        proc = subprocess.run([sys.executable, "-m", "dcsaudit.cli", "scan", str(cfg), "--out", str(out), "-q"],
                              capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
        elapsed = time.monotonic() - start
    # Then it ended soon after the endpoint bound, wrote its report, and says why the tests are undetermined
    assert proc.returncode in (0, 1), proc.stderr
    assert elapsed < 8 + 10, elapsed
    report = json.loads((out / "report.json").read_text())
    [ep] = [e for e in report["endpoints"] if e["port"] == port]
    assert ep["tls"] is not None and ep["tls"]["protocols"]["TLSv1.2"], ep["tls"]
    v = ep["tls"]["vulnerabilities"]
    assert v["heartbleed"] is None and any("undetermined" in n for n in v["notes"]), v
