"""Heartbleed, CCS injection and client renegotiation in-process (issue 16 item 2), agreeing with sslyze's own
scan on real servers, calling fake vulnerable servers vulnerable as sslyze's plugins do, and bounded and
undetermined (never "not vulnerable") against silent, drip-feeding and resetting peers (issue 12 F1).
Real peers on 127.0.0.1: openssl s_server, Orthanc, tests/peers/vulnerable_tls.py, a drip-feeding proxy."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from dcsaudit.checks.base import AuditData, Verdict
from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Evidence, Reason
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TlsResult, Vulnerabilities
from dcsaudit.probes.tls import renegotiation
from dcsaudit.probes.tls.audit import audit_tls
from dcsaudit.probes.tls.vulns import check_vulnerabilities
from tests.peers.common import LOOPBACK, free_port, stop, tcp_server, wait_for_port
from tests.peers.tls_peers import RsaPKI, bad_server, openssl_server, orthanc_tls
from tests.peers.vulnerable_tls import Kind, vulnerable_server

# sslyze's Heartbleed request: a heartbeat record (type 24) of 16384 bytes, request type 1, length 16381.
HEARTBEAT = re.compile(rb"\x18\x03[\x00-\x04]\x40\x00\x01\x3f\xfd")
FAKE_PEER_SUITE = "TLS_RSA_WITH_AES_128_CBC_SHA"  # vulnerable_tls.SUITE, which the fake peers pick when offered


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


def _sslyze_own_answer(port: int) -> tuple[bool | None, bool | None, bool | None]:
    """sslyze's own scanner, with its connectivity test: the reference our tests must match (None: the plugin
    raised, e.g. a renegotiation test on a server that requires a client certificate)."""
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
    hb, ccs, reneg = r.heartbleed.result, r.openssl_ccs_injection.result, r.session_renegotiation.result
    return (hb.is_vulnerable_to_heartbleed if hb else None, ccs.is_vulnerable_to_ccs_injection if ccs else None,
            reneg.is_vulnerable_to_client_renegotiation_dos if reneg else None)


def _sslyze_plugins_on(port: int) -> tuple[bool, bool]:
    """sslyze's Heartbleed and CCS plugins themselves, fed with the facts (a fake server has no full handshake
    for sslyze's connectivity test): the reference for the fake vulnerable peers."""
    from sslyze.plugins.heartbleed_plugin import _test_heartbleed
    from sslyze.plugins.openssl_ccs_injection_plugin import _test_for_ccs_injection

    from dcsaudit.probes.tls.sslyze_worker import _server_info

    info = _server_info({"host": LOOPBACK, "port": port, "sni": None, "highest": "TLSv1.2", "ciphers": "AES128-SHA",
                         "client_auth": "not_requested", "network_timeout": 2})
    return _test_heartbleed(info), _test_for_ccs_injection(info)


def _audit(port: int, pki: RsaPKI | None = None, read: float = 1.5) -> tuple[TlsResult, AuditContext, float]:
    """The whole TLS audit with its vulnerability tests, as `dcsaudit scan` runs it."""
    creds = {"ca_file": str(pki.ca_file)} if pki is not None else {}
    cfg = parse_config({"deployment": "vulns", "hosts": [{"address": LOOPBACK}], "credentials": creds,
                        "scan": {"timeouts": {"connect": 1, "read": read, "tls_handshake": read, "endpoint": 30}}})
    ctx = AuditContext.create(cfg)
    ep = Endpoint(host=LOOPBACK, port=port, protocol="tcp", state="open", service="tls")
    start = time.perf_counter()
    r = asyncio.run(audit_tls(ctx, ep))
    return r, ctx, time.perf_counter() - start


def _ours(r: TlsResult) -> tuple[bool | None, bool | None, bool | None]:
    return r.vulnerabilities.heartbleed, r.vulnerabilities.ccs_injection, r.features.client_renegotiation


def _evidence(ctx: AuditContext, probe: str) -> Evidence:
    [ev] = [e for e in ctx.evidence.items() if e.probe == probe]
    return ev


@contextmanager
def plain_s_server(pki: RsaPKI, *switches: str, ciphers: str | None = None) -> Iterator[int]:
    """openssl s_server without -www (whose loop sleeps 1 s whenever a read would block, which makes ten
    renegotiations take ten seconds for any client); stdin stays open so it does not end the connection."""
    port = free_port()
    cmd = ["openssl", "s_server", "-accept", f"{LOOPBACK}:{port}", "-cert", str(pki.server_cert),
           "-key", str(pki.server_key), "-quiet", "-naccept", "1000", *switches] + (["-cipher", ciphers] if ciphers else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        stop(proc)


SERVERS = {
    "TLS 1.2 only": (("-no_tls1_3",), None),
    "legacy renegotiation": (("-no_tls1_3", "-legacy_renegotiation"), None),
    "client renegotiation": (("-no_tls1_3", "-client_renegotiation"), None),
    "no renegotiation": (("-no_tls1_3", "-no_renegotiation"), None),
    "up to TLS 1.3": ((), None),
    "legacy TLS 1.0": (("-tls1",), "ALL:@SECLEVEL=0"),
}


@pytest.mark.parametrize("name", list(SERVERS))
def test_in_process_tests_agree_with_sslyze_own_scan(rsa_pki: RsaPKI, name: str) -> None:
    switches, ciphers = SERVERS[name]
    # Given a real openssl s_server
    with plain_s_server(rsa_pki, *switches, ciphers=ciphers) as port:
        # When the TLS audit runs its vulnerability tests, and sslyze runs its own scan
        r, ctx, elapsed = _audit(port)
        reference = _sslyze_own_answer(port)
    # Then both give the same answers, with one evidence item per test, quickly
    assert r.error is None, r.error
    assert _ours(r) == reference, (r.vulnerabilities, ctx.evidence.items())
    if name == "client renegotiation":
        assert r.features.client_renegotiation is True
        assert _evidence(ctx, "tls.vulns.client_renegotiation").data["renegotiations_completed"] == 10
    assert len(r.vulnerabilities.evidence) == 3 and r.vulnerabilities.undetermined == []
    hb = _evidence(ctx, "tls.vulns.heartbleed")
    assert hb.ok and any("alert" in x or "closed" in x for x in hb.data["received"]), hb
    assert elapsed < 10


@pytest.mark.parametrize("required", [False, True])
def test_orthanc_dicom_tls_agrees_with_sslyze(rsa_pki: RsaPKI, required: bool) -> None:
    # Given Orthanc's DICOM-TLS port, with an optional or a required client certificate
    with orthanc_tls(rsa_pki, remote_certificate_required=required) as port:
        r, ctx, _ = _audit(port, rsa_pki)
        reference = _sslyze_own_answer(port)
    # Then Heartbleed and CCS agree with sslyze; renegotiation agrees too, and where sslyze's plugin fails for
    # want of a client certificate ours is undetermined with that reason, not an answer
    assert r.error is None, r.error
    assert _ours(r) == reference, (r.vulnerabilities, ctx.evidence.items())
    if required:
        ev = _evidence(ctx, "tls.vulns.client_renegotiation")
        assert r.features.client_renegotiation is None and "client certificate" in ev.summary
        assert ev.reason == Reason.CLIENT_CERTIFICATE_REQUIRED


@pytest.mark.parametrize("kind", ["heartbleed", "ccs"])
def test_fake_vulnerable_server_is_vulnerable_for_sslyze_and_for_us(kind: Kind) -> None:
    # Given a fake TLS 1.2 server with the bug
    with vulnerable_server(kind) as port:
        # When sslyze's own plugins and our tests run against it
        reference = _sslyze_plugins_on(port)
        ctx = _ctx()
        vulns, reneg = _on_fake_tls12(ctx, port)
    # Then sslyze calls it vulnerable (the fake is faithful), and so do we, with the evidence to show it
    expected = (True, False) if kind == "heartbleed" else (False, True)
    assert reference == expected
    assert (vulns.heartbleed, vulns.ccs_injection) == expected, vulns
    probe = "tls.vulns.heartbleed" if kind == "heartbleed" else "tls.vulns.ccs_injection"
    ev = _evidence(ctx, probe)
    assert ev.summary.split(":")[1].strip() == "vulnerable"
    assert any("echoed" in x or "bad_record_mac" in x for x in ev.data["received"]), ev.data
    assert ev.id in vulns.evidence
    # And the check fails the endpoint, citing that evidence
    [verdict] = list(check_vulnerabilities_verdicts(vulns))
    assert verdict.status == "fail" and ev.id in verdict.evidence
    assert reneg is None  # a fake flight cannot be completed: undetermined, not "refused"


def test_a_patched_server_that_implements_heartbeats_is_not_vulnerable_by_measurement() -> None:
    # Given a fake server that answers well-formed heartbeats and discards over-long ones (OpenSSL 1.0.1g-1.0.2)
    with vulnerable_server("heartbeat_patched") as port:
        # When sslyze's own plugin and our test run against it
        reference, _ = _sslyze_plugins_on(port)
        ctx = _ctx()
        start = time.perf_counter()
        vulns, _ = _on_fake_tls12(ctx, port)
        elapsed = time.perf_counter() - start
    # Then sslyze says "not vulnerable" (from its read timing out), and so do we, from the control's answer,
    # without waiting for a timeout
    assert reference is False
    assert vulns.heartbleed is False, vulns
    ev = _evidence(ctx, "tls.vulns.heartbleed")
    assert any("control payload echoed" in x for x in ev.data["received"]), ev.data
    assert "well-formed heartbeat" in ev.summary
    assert elapsed < 1.5, elapsed


@pytest.mark.parametrize("peer", ["silent", "reset", "silent_after_flight", "drip"])
def test_hostile_peers_are_undetermined_and_bounded(peer: str) -> None:
    # Given a peer that is silent after the ClientHello, resets inside its ServerHello, goes silent after
    # its flight, or drip-feeds its flight
    cm = bad_server(peer) if peer in ("silent", "reset") else vulnerable_server(peer)  # type: ignore[arg-type]
    with cm as port:
        ctx = _ctx()
        start = time.perf_counter()
        vulns, reneg = _on_fake_tls12(ctx, port, bound=6.0)
        elapsed = time.perf_counter() - start
    # Then every test is undetermined with its reason, never "not vulnerable", and the bound holds
    assert (vulns.heartbleed, vulns.ccs_injection, reneg) == (None, None, None), (vulns, ctx.evidence.items())
    assert vulns.undetermined == ["Heartbleed", "CCS injection"]
    for probe in ("tls.vulns.heartbleed", "tls.vulns.ccs_injection", "tls.vulns.client_renegotiation"):
        ev = _evidence(ctx, probe)
        assert not ev.ok and ev.reason is not None and "undetermined" in ev.summary, ev
    [verdict] = list(check_vulnerabilities_verdicts(vulns))
    assert verdict.status == "error" and verdict.summary.startswith("undetermined")
    assert elapsed < 6.0 + 2.0, elapsed
    assert not [t for t in threading.enumerate() if t.name.startswith("reneg ")]


def test_reset_after_the_flight_is_not_vulnerable() -> None:
    # Given a server that reads our records after its flight and resets the connection (a refusal)
    with vulnerable_server("reset_after_flight") as port:
        vulns, _ = _on_fake_tls12(_ctx(), port)
    # Then, as with sslyze, both tests read it as "not vulnerable"
    assert (vulns.heartbleed, vulns.ccs_injection) == (False, False), vulns


def test_a_renegotiation_left_unanswered_is_undetermined_not_refused(rsa_pki: RsaPKI) -> None:
    # Given a TLS 1.2 server that completes the handshake and then reads nothing more: our renegotiation
    # ClientHello stays unanswered, as with Netty (which ignores it) or a server too busy to answer
    def handshake_then_ignore(conn: socket.socket) -> None:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        tls_ctx.load_cert_chain(rsa_pki.server_chain, rsa_pki.server_key)
        conn.settimeout(5)
        tls = tls_ctx.wrap_socket(conn, server_side=True)
        time.sleep(4)  # bounded; tcp_server closes the connection at the end
        tls.close()

    with tcp_server(handshake_then_ignore, threaded=True) as port:
        start = time.monotonic()
        # When the renegotiation test runs with a 1 s read timeout
        rn = asyncio.run(renegotiation.client_renegotiation(
            LOOPBACK, port, version="TLSv1.2", ciphers="ECDHE-RSA-AES128-GCM-SHA256", sni=None, read_timeout=1.0,
            connect_timeout=1.0, bound=6.0, client_cert_required=False))
        elapsed = time.monotonic() - start
    # Then the first handshake is recorded, and the silence is undetermined with its reason (sslyze would
    # say "not accepted"), within the read timeout and not the bound
    assert rn.steps[0].startswith("handshake completed"), rn.steps
    assert rn.accepted is None, rn
    assert "no answer within the read timeout" in rn.detail and "slow" in rn.detail, rn.detail
    assert elapsed < 3.0, elapsed


def test_tls13_only_server_is_not_applicable_without_a_connection() -> None:
    # Given an endpoint whose audit found only TLS 1.3 (the port is closed: no connection may be needed)
    ctx = _ctx()
    vulns, reneg = asyncio.run(check_vulnerabilities(
        ctx, LOOPBACK, free_port(), protocols={"TLSv1.3": ["TLS_AES_128_GCM_SHA256"], "TLSv1.2": []},
        client_cert="not_requested", robot=False))
    # Then Heartbleed and CCS injection are not applicable (not a pass: nothing was measured), renegotiation
    # is refused by the standard itself, and the evidence says why
    assert (vulns.heartbleed, vulns.ccs_injection, reneg) == (None, None, False)
    [ev] = ctx.evidence.items()
    assert ev.data["inferred"] is True and "TLS 1.3" in ev.summary
    [verdict] = list(check_vulnerabilities_verdicts(vulns))
    assert verdict.status == "not_applicable" and "only TLS 1.3" in verdict.summary


def _on_fake_tls12(ctx: AuditContext, port: int, bound: float | None = None) -> tuple[Vulnerabilities, bool | None]:
    """The vulnerability tests on a fake TLS 1.2 peer (vulnerable_tls, bad_server): one suite it picks."""
    return asyncio.run(check_vulnerabilities(ctx, LOOPBACK, port, protocols={"TLSv1.2": [FAKE_PEER_SUITE]},
                                             client_cert="not_requested", robot=False, bound=bound))


def check_vulnerabilities_verdicts(v: Vulnerabilities) -> Iterator[Verdict]:
    """The tls.vulnerabilities check on one endpoint carrying ``v``."""
    from dcsaudit.checks.tls import vulnerabilities

    tls = TlsResult(protocols={"TLSv1.2": ["TLS_RSA_WITH_AES_128_CBC_SHA"]}, vulnerabilities=v, evidence=["ev-main"])
    ep = Endpoint(host=LOOPBACK, port=1, protocol="tcp", state="open", service="tls", tls=tls)
    return iter(vulnerabilities(AuditData(endpoints=[ep], evidence=[])))


def test_drip_feeding_server_is_abandoned_at_the_bound(rsa_pki: RsaPKI) -> None:
    # Given a TLS 1.2 server whose answers to the Heartbleed request come at 1 byte/s
    with openssl_server(rsa_pki, versions=("-no_tls1_3",)) as upstream, drip_proxy(upstream) as port:
        ctx = _ctx()
        start = time.perf_counter()
        # When the vulnerability tests run with a 3 s bound
        vulns, _ = asyncio.run(check_vulnerabilities(
            ctx, LOOPBACK, port, protocols={"TLSv1.2": ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]},
            client_cert="not_requested", robot=False, bound=3.0))
        elapsed = time.perf_counter() - start
    # Then they end at the bound, Heartbleed undetermined with the reason, and no child or thread is left behind
    assert elapsed < 4.5, elapsed
    assert vulns.heartbleed is None and "Heartbleed" in vulns.undetermined
    assert any(n.startswith("Heartbleed undetermined") and "time bound" in n for n in vulns.notes), vulns.notes
    assert _evidence(ctx, "tls.vulns.heartbleed").reason == Reason.TIMEOUT
    assert _workers() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("reneg ")]


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


def test_robot_opt_in_still_runs_sslyze_in_a_child(rsa_pki: RsaPKI) -> None:
    # Given a TLS 1.2 server and the ROBOT test asked for
    with plain_s_server(rsa_pki, "-no_tls1_3") as port:
        ctx = _ctx()
        vulns, _ = asyncio.run(check_vulnerabilities(
            ctx, LOOPBACK, port, protocols={"TLSv1.2": ["TLS_RSA_WITH_AES_128_GCM_SHA256"]},
            client_cert="not_requested", robot=True))
    # Then sslyze's ROBOT plugin answered (from its child, which is gone), beside our three tests
    assert vulns.robot is not None and vulns.robot.startswith("NOT_VULNERABLE"), vulns
    assert vulns.undetermined == [] and len(vulns.evidence) == 3
    assert _workers() == []
