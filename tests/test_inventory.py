"""Port inventory with nmap (and the connect-scan fallback) against loopback listeners."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.probes.ports import inventory_host
from tests.peers.common import LOOPBACK, free_port, require_program
from tests.peers.spine_peers import silent_listener


def inventory(tcp: list[int], udp: list[int] | None = None, **scan: object) -> tuple[dict[tuple[str, int], str], AuditContext]:
    cfg = parse_config({"deployment": "inv", "hosts": [{"address": LOOPBACK, "tcp_ports": tcp, "udp_ports": udp or []}],
                        "scan": {"udp": bool(udp), **scan}})
    ctx = AuditContext.create(cfg)
    eps = asyncio.run(inventory_host(ctx, cfg.hosts[0]))
    return {(e.protocol, e.port): e.state for e in eps}, ctx


def test_nmap_finds_open_and_closed() -> None:
    require_program("nmap")
    closed = free_port()
    with silent_listener() as open_port:
        states, ctx = inventory([open_port, closed])
    assert states == {("tcp", open_port): "open", ("tcp", closed): "closed"}
    assert any(e.probe == "ports.nmap" and e.ok for e in ctx.evidence.items())


def test_connect_scan_fallback_gives_same_states() -> None:
    closed = free_port()
    with silent_listener() as open_port:
        states, ctx = inventory([open_port, closed], use_nmap=False)
    assert states == {("tcp", open_port): "open", ("tcp", closed): "closed"}
    assert not any(e.probe == "ports.nmap" for e in ctx.evidence.items())


@pytest.mark.skipif(os.geteuid() != 0, reason="UDP inventory needs raw sockets (root)")
def test_udp_syslog_port_with_listener() -> None:
    require_program("nmap")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((LOOPBACK, 0))
        port = udp.getsockname()[1]
        closed_udp = free_port(kind=socket.SOCK_DGRAM)
        start = time.monotonic()
        states, _ = inventory([free_port()], udp=[port, closed_udp])
    assert states[("udp", port)] == "filtered"  # open|filtered: UDP listeners do not answer
    assert states[("udp", closed_udp)] == "closed"  # ICMP port unreachable
    assert time.monotonic() - start < 30


def test_udp_without_privileges_is_recorded_not_skipped_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    states, ctx = inventory([free_port()], udp=[514], use_nmap=False)
    assert ("udp", 514) not in states
    assert any(e.probe == "ports.udp" and e.reason == "not_available" for e in ctx.evidence.items())
