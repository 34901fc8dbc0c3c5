"""Hostile and vanished peers during a scan (issue 12: F2, F3, dead targets gate).

F2: a TCP reset or close is never an answer about an AE title. A proxy in front of a real pynetdicom SCP
(which accepts any Called AE Title) resets every second connection: the title probe is retried on a
fresh connection and the SCP's real answer decides; when every retry is reset the verdict is
undetermined (not_applicable), never a pass.
F3: port evidence is labelled ``ports.nmap`` only when nmap produced it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dcsaudit.checks import REGISTRY, AuditData
from dcsaudit.config import DeploymentConfig, parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.dicom import ApplicationEntity, AssociationAttempt
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.probes import ports
from dcsaudit.probes.dicom_assoc import audit_application_entities
from tests.peers.common import LOOPBACK, require_program, tcp_server
from tests.peers.dicom_peers import pynetdicom_scp


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
    conn.close()


@contextmanager
def resetting_proxy(backend: int, reset: Callable[[int], bool]) -> Iterator[int]:
    """A TCP proxy to ``backend``; connection n (from 1) is reset after its first bytes when ``reset(n)``."""
    counter = itertools.count(1)
    upstream: list[socket.socket] = []

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def relay(conn: socket.socket) -> None:
        if reset(next(counter)):
            conn.settimeout(2)
            try:
                conn.recv(65536)  # the A-ASSOCIATE-RQ, then a reset instead of any answer
            except OSError:
                pass
            _reset(conn)
            return
        up = socket.create_connection((LOOPBACK, backend), timeout=2)
        up.settimeout(None)
        upstream.append(up)
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()

    try:
        with tcp_server(relay) as port:
            yield port
    finally:
        for s in upstream:
            s.close()


def ae_config(port: int) -> DeploymentConfig:
    return parse_config({
        "deployment": "flaky",
        "hosts": [{"address": LOOPBACK, "tcp_ports": [port]}],
        "application_entities": [{"ae_title": "FLAKY", "host": LOOPBACK, "port": port}],
        "scan": {"use_nmap": False, "udp": False, "tls_audit": False,
                 "timeouts": {"connect": 2, "read": 2, "dicom": 3},
                 "dicom": {"user_identity": False, "default_called_aes": [], "default_calling_aes": []}},
    })


def audit(port: int) -> tuple[ApplicationEntity, dict[str, str]]:
    ctx = AuditContext.create(ae_config(port))
    aes = asyncio.run(asyncio.wait_for(audit_application_entities(ctx, []), 60))
    data = AuditData(endpoints=[], evidence=ctx.evidence.items(), application_entities=aes)
    verdicts = {}
    for check_id in ("dicom.promiscuous_called_ae", "dicom.any_calling_ae", "dicom.ae_reachable"):
        spec = REGISTRY.get(check_id)
        assert spec is not None
        verdicts[check_id] = spec.run(data)[0].status
    return aes[0], verdicts


def attempt(ae: ApplicationEntity, purpose: str) -> AssociationAttempt:
    return next(a for a in ae.attempts if a.purpose == purpose)


def test_f2_reset_every_second_connection_is_retried_not_read_as_a_refusal() -> None:
    # Given an SCP that accepts any Called AE Title, behind a proxy resetting connections 2, 4, 6, …
    with pynetdicom_scp("FLAKY") as backend, resetting_proxy(backend, lambda n: n % 2 == 0) as port:
        # When its AEs are audited
        ae, verdicts = audit(port)
    # Then the reset title probe was tried again, and the SCP's real answer (accepted) decides: fail
    called = attempt(ae, "any_called_ae")
    assert called.outcome == "accepted" and called.retries == 1
    assert verdicts["dicom.promiscuous_called_ae"] == "fail"
    assert verdicts["dicom.ae_reachable"] == "pass"


def test_f2_a_peer_that_always_resets_is_undetermined_never_pass() -> None:
    # Given the same SCP, reachable once (the baseline), then every connection reset
    with pynetdicom_scp("FLAKY") as backend, resetting_proxy(backend, lambda n: n > 1) as port:
        ae, verdicts = audit(port)
    # Then the title probes stayed "closed" through their retries, and that proves nothing
    called = attempt(ae, "any_called_ae")
    assert called.outcome == "closed" and called.retries >= 1
    assert ae.accepts_any_called_ae is None and ae.accepts_any_calling_ae is None
    assert verdicts["dicom.promiscuous_called_ae"] == "not_applicable"
    assert verdicts["dicom.any_calling_ae"] == "not_applicable"


def test_f2_refusing_scp_through_the_flaky_proxy_still_passes() -> None:
    # Given an SCP that checks the Called AE Title, behind the proxy resetting every second connection
    with pynetdicom_scp("FLAKY", require_called=True) as backend, \
            resetting_proxy(backend, lambda n: n % 2 == 0) as port:
        ae, verdicts = audit(port)
    # Then the retried probe gets the SCP's (1, 1, 7) and the check passes on that answer alone
    called = attempt(ae, "any_called_ae")
    assert called.outcome == "rejected" and called.reject is not None and called.reject.reason == 7
    assert verdicts["dicom.promiscuous_called_ae"] == "pass"


def test_dead_ae_fails_high_and_gates() -> None:
    from dcsaudit.policy import load_policy
    from dcsaudit.runner import run_checks

    # Given an AE on a port where nothing listens
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    ae, verdicts = audit(port)
    assert attempt(ae, "baseline").outcome == "refused"
    assert verdicts["dicom.ae_reachable"] == "fail"
    # Then dicom.ae_reachable fails with high severity, and the default policy gates on it
    policy = load_policy("default")
    found = [f for f in run_checks(AuditData(endpoints=[], evidence=[], application_entities=[ae]), policy)
             if f.check_id == "dicom.ae_reachable"]
    assert [(f.status, f.severity) for f in found] == [("fail", "high")]
    assert policy.is_failing(found[0])


def test_ae_reachable_busy_or_unfinished_is_an_error_never_a_pass() -> None:
    busy = AssociationAttempt(purpose="baseline", called_ae="A", calling_ae="B", outcome="rejected", busy=True)
    aes = [
        ApplicationEntity(ae_title="A", host=LOOPBACK, port=1, tls=False, attempts=[busy]),
        ApplicationEntity(ae_title="B", host=LOOPBACK, port=2, tls=False, error="not audited: interrupted"),
    ]
    spec = REGISTRY.get("dicom.ae_reachable")
    assert spec is not None
    assert [f.status for f in spec.run(AuditData(endpoints=[], evidence=[], application_entities=aes))] == \
        ["error", "error"]


def test_f3_ports_filled_by_the_connect_scan_are_not_labelled_nmap(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given nmap "succeeds" but reports none of the ports (as for a name it could not resolve)
    monkeypatch.setattr(ports, "nmap_available", lambda: True)
    monkeypatch.setattr(ports, "_nmap_scan", lambda *a, **k: {})
    with socket.socket() as srv:
        srv.bind((LOOPBACK, 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        cfg = parse_config({"deployment": "f3", "hosts": [{"address": LOOPBACK, "tcp_ports": [port]}],
                            "scan": {"use_nmap": True, "udp": False}})
        ctx = AuditContext.create(cfg)
        endpoints: list[Endpoint] = asyncio.run(asyncio.wait_for(ports.inventory_host(ctx, cfg.hosts[0]), 30))
    # Then the port state comes from the connect scan, and its evidence says so
    assert [e.state for e in endpoints] == ["open"]
    ev = next(e for e in ctx.evidence.items() if e.id == endpoints[0].evidence[0])
    assert ev.probe == "ports.connect"
    assert not [e for e in ctx.evidence.items() if e.probe == "ports.nmap" and e.target.endswith("/tcp")]


def test_host_answering_on_no_port_fails_the_default_policy(tmp_path: Path) -> None:
    """Inside a network namespace of its own (its loopback only), nftables drops every scanned port:
    the host looks like a device that vanished behind a firewall."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    require_program("ip")
    require_program("nft")
    name = f"dcsaudit-h-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        rules = ("add table inet dcs\n"
                 "add chain inet dcs input { type filter hook input priority 0; }\n"
                 "add rule inet dcs input tcp dport { 7102, 7103 } drop\n")
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=rules.encode(), check=True)
        cfg = tmp_path / "c.yaml"
        cfg.write_text("deployment: vanished\n"
                       "hosts: [{address: 127.0.0.1, tcp_ports: [7102, 7103]}]\n"
                       "scan: {udp: false, timeouts: {connect: 1, read: 1, tls_handshake: 1, nmap: 20}}\n")
        # When scanned (not quiet: the summary is part of what is checked)
        proc = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-m", "dcsaudit.cli", "scan", str(cfg),
                               "--out", str(tmp_path / "out")], timeout=90, capture_output=True)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    # Then the audit fails (exit 1), the host's finding is a high-severity fail, and stderr says why
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    found = [f for f in report["findings"] if f["check_id"] == "inventory.host_reachable"]
    assert [(f["target"], f["status"], f["severity"], f["gating"]) for f in found] == [
        ("127.0.0.1", "fail", "high", True)]
    assert report["run"]["unreachable_hosts"] == ["127.0.0.1"]
    assert "1 host(s), 1 unreachable host(s)" in err
    assert "gating inventory.host_reachable: 127.0.0.1" in err
