"""rsyslog (rsyslog-gnutls) forwards DICOM audit messages to the collector over TLS, octet-counted and
with a client certificate, and over UDP; each message is received and classified."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcsaudit.evidence import EvidenceLog
from dcsaudit.listeners.syslog_collector import SyslogCollector
from tests.peers.common import LOOPBACK, TestPKI
from tests.peers.rsyslog import rsyslog_forwarder, wait_until
from tests.test_audit_messages import originator_messages

pytestmark = pytest.mark.peer("rsyslogd")


def test_rsyslog_forwards_over_tls_with_client_cert_and_udp(pki: TestPKI, tmp_path: Path) -> None:
    # Given our collector (asking for client certs, trusting the test CA) and rsyslog relaying to it
    collector = SyslogCollector(LOOPBACK, 0, 0, EvidenceLog(), cert_file=pki.server_chain,
                                key_file=pki.server_key, ca_file=pki.ca_file)
    collector.start()
    msgs = originator_messages()
    valid = [msgs["app"], msgs["auth"], msgs["query"], msgs["store"]]
    invalid = [
        msgs["app"].replace(b"<85>", b"<13>"),  # wrong facility/severity
        msgs["alert"].replace(b'EventOutcomeIndicator="4"', b'EventOutcomeIndicator="5"'),  # schema
        msgs["auth"].replace(b'<EventTypeCode csd-code="110122" codeSystemName="DCM" originalText="Login"/>', b""),
    ]
    try:
        with rsyslog_forwarder(tmp_path / "rs", tls_port=collector.tls_port, udp_port=collector.udp_port,
                               ca_file=pki.ca_file, client_cert=pki.client_cert, client_key=pki.client_key) as rs:
            # When the messages are fed to rsyslog
            rs.send_octet_counted(valid + invalid)
            arrived = wait_until(lambda: len(collector.snapshot()) >= 2 * 7, 20)
            assert arrived, rs.log()
    finally:
        trail = collector.stop(drain_seconds=1.0)
    # Then each arrived once over TLS (octet-counted) and once over UDP
    for transport, framing in (("tls", "octet-counting"), ("udp", "datagram")):
        got = [m for m in trail.messages if m.transport == transport]
        assert len(got) == 7, (transport, [m.errors for m in got])
        assert {m.framing for m in got} == {framing}
        # and valid and invalid ones are told apart, with the reason
        assert sorted(m.event_id or "" for m in got if m.valid) == ["110100", "110104", "110112", "110114"]
        bad = [m for m in got if not m.valid]
        assert any("PRI <13>" in e for m in bad for e in m.errors)
        assert any(not m.schema_valid for m in bad)
        assert any(m.schema_valid and any("A.5.3.12" in e for e in m.errors) for m in bad)
    # and rsyslog presented its client certificate, which validated against the CA
    tls_conns = [c for c in trail.connections if c.messages]
    assert tls_conns and all(c.client_certificate_presented and c.client_certificate_validated for c in tls_conns)
    assert trail.framings == ["octet-counting", "datagram"] or set(trail.framings) == {"octet-counting", "datagram"}
