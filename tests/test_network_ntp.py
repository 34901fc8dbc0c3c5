"""NTP facts (RFC 5905, RFC 8915) from a real chronyd on loopback, through the runner's ``ntp`` stage,
and the N.8-1 / N.11.1.1 rows they fill (issue 15 item 1)."""

from __future__ import annotations

import asyncio
import socket

from dcsaudit.annex.network_tables import n8_1, n11_1_1
from dcsaudit.checks.base import AuditData
from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Cell, Provenance
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.runner import STAGES, Collected, run_stage
from tests.network_cells import cell_problems
from tests.peers.common import LOOPBACK, TestPKI, free_port
from tests.peers.network_peers import chrony


def _run(ntp_port: int, nts_port: int | None, tcp_seen: int = 1) -> tuple[Collected, AuditContext]:
    cfg = parse_config({"deployment": "t", "hosts": [{"address": LOOPBACK}],
                        "scan": {"timeouts": {"read": 1.0, "connect": 1.0},
                                 "ntp": {"ports": [ntp_port], "nts_ke_port": nts_port}}})
    ctx = AuditContext.create(cfg)
    # The inventory found one TCP port on the host; UDP was not inventoried (no raw sockets).
    got = Collected(endpoints=[Endpoint(host=LOOPBACK, port=tcp_seen, protocol="tcp", state="open")])
    stage = next(s for s in STAGES if s.name == "ntp")
    asyncio.run(run_stage(ctx, stage, got))
    return got, ctx


def _row(table_rows: list[list[Cell]], name: str) -> list[Cell]:
    return next(r for r in table_rows if r[0].value == name)


def test_chrony_answers_with_its_facts_and_nts_ke(pki: TestPKI) -> None:
    # Given chronyd serving NTP at local stratum 8, with NTS-KE, on loopback ports
    with chrony(stratum=8, pki=pki) as peer:
        # When the ntp stage runs against the host
        got, ctx = _run(peer.ntp_port, peer.nts_ke_port)
    # Then the UDP endpoint is added with what the server said
    ep = next(e for e in got.endpoints if e.protocol == "udp")
    assert (ep.port, ep.state, ep.service) == (peer.ntp_port, "open", "ntp")
    r = ep.ntp
    assert r is not None and r.answered
    assert (r.version, r.mode, r.stratum, r.leap) == (4, 4, 8, 0)
    assert r.reference_id == "127.127.1.1"  # chrony's local reference
    assert r.offset_ms is not None and abs(r.offset_ms) < 1000
    # And chrony answers neither NTP control protocol (it has its own command port, disabled here)
    assert r.mode6_answers is False and r.mode7_answers is False
    assert r.nts_ke is True
    # And N.8-1 says so, citing ntp.* evidence only
    data = AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items())
    t = n8_1(data)
    server = _row(t.rows, "NTP server")
    assert server[1].provenance == Provenance.VERIFIED and server[1].value == "yes"
    assert "stratum 8" in server[2].value and "NTS-KE (RFC 8915) offered" in server[2].value
    assert _row(t.rows, "NTP client")[1].provenance == Provenance.NOT_VERIFIABLE
    assert _row(t.rows, "DNS server")[1].provenance == Provenance.NOT_OBSERVED
    probes = {e.probe for e in ctx.evidence.items() if e.id in server[1].evidence}
    assert probes and all(p.startswith("ntp.") for p in probes)
    t11 = n11_1_1(data)
    assert [c.value for c in t11.rows[0][1:5]] == ["NTPv4", "8", "no warning", "127.127.1.1"]
    assert t11.rows[0][5].value == "no / no" and t11.rows[0][6].value == "yes"
    assert not cell_problems(ctx.evidence.items(), [t, t11], ("ntp.",))


def test_a_silent_port_is_no_ntp_and_adds_no_endpoint() -> None:
    # Given a UDP port where nothing answers (bound, never read)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))
        port = silent.getsockname()[1]
        # When the ntp stage runs
        got, ctx = _run(port, None)
    # Then no endpoint is invented, the evidence says no answer, and N.8-1 says not observed with the reason
    assert [e.protocol for e in got.endpoints] == ["tcp"]
    ev = [e for e in ctx.evidence.items() if e.probe == "ntp.query"]
    assert len(ev) == 1 and not ev[0].ok and "no answer" in ev[0].summary
    t = n8_1(AuditData(endpoints=got.endpoints, evidence=ctx.evidence.items()))
    server = _row(t.rows, "NTP server")
    assert server[1].provenance == Provenance.NOT_OBSERVED and server[1].note


def test_nts_ke_refused_port_is_no_nts() -> None:
    # Given chronyd without NTS, and a TCP port where nothing listens for NTS-KE
    with chrony(stratum=5) as peer:
        got, _ = _run(peer.ntp_port, free_port())
    r = next(e for e in got.endpoints if e.protocol == "udp").ntp
    assert r is not None and r.stratum == 5 and r.nts_ke is False
