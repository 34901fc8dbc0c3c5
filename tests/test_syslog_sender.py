"""Test messages sent to a product's collector (PS3.15 A.6 32768 octets over TLS; UDP), opt-in only."""

from __future__ import annotations

import asyncio

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.evidence import EvidenceLog
from dcsaudit.listeners.syslog_collector import SyslogCollector
from dcsaudit.models.core import Reason
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.probes.syslog_sender import probe_product_collector
from tests.peers.common import LOOPBACK, TestPKI, free_port
from tests.peers.rsyslog import wait_until


def _ctx(opt_in: bool, pki: TestPKI | None = None) -> AuditContext:
    cfg: dict[str, object] = {"deployment": "t", "hosts": [{"address": LOOPBACK}],
                              "scan": {"intrusive": {"syslog_test_messages": opt_in}}}
    if pki is not None:
        cfg["credentials"] = {"ca_file": str(pki.ca_file),
                              "tls_client": {"cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}}
    return AuditContext.create(parse_config(cfg))


def test_without_opt_in_nothing_is_sent() -> None:
    # Given a syslog-tls endpoint and no opt-in
    ctx = _ctx(False)
    ep = Endpoint(host=LOOPBACK, port=free_port(), protocol="tcp", state="open", service="syslog-tls")
    # When probed
    result = asyncio.run(probe_product_collector(ctx, ep))
    # Then nothing was sent, and only a not_permitted evidence is recorded
    assert not result.sent and result.reason is Reason.NOT_PERMITTED and result.transport == "tls"
    (ev,) = [ctx.evidence.get(i) for i in result.evidence]
    assert ev is not None and ev.reason is Reason.NOT_PERMITTED and not ev.ok


def test_32768_octet_message_over_tls_and_udp_accepted(pki: TestPKI) -> None:
    # Given a collector standing in for the product, trusting the test CA
    product = SyslogCollector(LOOPBACK, 0, 0, EvidenceLog(), cert_file=pki.server_chain, key_file=pki.server_key,
                              ca_file=pki.ca_file)
    product.start()
    ctx = _ctx(True, pki)
    tls_ep = Endpoint(host=LOOPBACK, port=product.tls_port or 0, protocol="tcp", state="open", service="syslog-tls")
    udp_ep = Endpoint(host=LOOPBACK, port=product.udp_port or 0, protocol="udp", state="open", service="syslog-udp")
    try:
        # When the test messages are sent
        tls_res = asyncio.run(probe_product_collector(ctx, tls_ep))
        udp_res = asyncio.run(probe_product_collector(ctx, udp_ep))
        assert wait_until(lambda: len(product.snapshot()) >= 2, 5)
    finally:
        trail = product.stop(drain_seconds=0.5)
    # Then the product received a valid 32768-octet message over TLS with our client certificate
    tls_msg = next(m for m in trail.messages if m.transport == "tls")
    assert tls_msg.size == 32768 and tls_msg.valid, tls_msg.errors
    assert trail.connections[0].client_certificate_validated is True
    udp_msg = next(m for m in trail.messages if m.transport == "udp")
    assert udp_msg.size == 2048 and udp_msg.valid
    # and the typed results say what was sent and that the TLS message was accepted
    assert (tls_res.transport, tls_res.sent, tls_res.delivered, tls_res.accepted) == ("tls", True, True, True)
    assert tls_res.size == 32768 and tls_res.framing == "octet-counting" and tls_res.tls_version in ("TLSv1.2", "TLSv1.3")
    assert tls_res.client_certificate_sent is True and tls_res.server_verified is True and tls_res.reason is None
    assert (udp_res.transport, udp_res.sent, udp_res.delivered, udp_res.accepted) == ("udp", True, True, None)
    assert udp_res.size == 2048 and udp_res.framing == "datagram"
    # and each result names its evidence
    evs = [ctx.evidence.get(i) for i in tls_res.evidence + udp_res.evidence]
    assert [(e.probe, e.ok) for e in evs if e is not None] == [("syslog.sender.tls", True), ("syslog.sender.udp", True)]


def test_closed_ports_are_results_not_exceptions() -> None:
    # Given nothing listening on either port
    ctx = _ctx(True)
    tcp = Endpoint(host=LOOPBACK, port=free_port(), protocol="tcp", state="open", service="syslog-tls")
    udp = Endpoint(host=LOOPBACK, port=free_port(), protocol="udp", state="open", service="syslog-udp")
    # When probed
    results = [asyncio.run(probe_product_collector(ctx, tcp)), asyncio.run(probe_product_collector(ctx, udp))]
    # Then both are failures with a reason, in the results and in their evidence
    assert [(r.transport, r.delivered, r.accepted, r.reason) for r in results] == [
        ("tls", False, None, Reason.REFUSED), ("udp", False, None, Reason.REFUSED)]
    evs = [ctx.evidence.get(i) for r in results for i in r.evidence]
    assert len(evs) == 2 and all(e is not None and not e.ok and e.reason is Reason.REFUSED for e in evs)
