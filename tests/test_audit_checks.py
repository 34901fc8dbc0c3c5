"""Audit-trail checks: one passing and one failing case each, on constructed data."""

from __future__ import annotations

import datetime as dt

from dcsaudit.checks import REGISTRY, AuditData
from dcsaudit.models.audit import AuditMessage, AuditTrail, CollectorConnection, Correlation, MissingEvent

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def m(valid: bool = True, transport: str = "tls", errors: list[str] | None = None) -> AuditMessage:
    return AuditMessage(transport=transport, peer="10.0.0.5:40000", received_at=T0, event_id="110100",  # type: ignore[arg-type]
                        valid=valid, schema_valid=valid, errors=errors or [], evidence="ev-0001")


def conn(presented: bool = True, validated: bool | None = True, framing: str = "octet-counting") -> CollectorConnection:
    return CollectorConnection(peer="10.0.0.5:40000", opened_at=T0, handshake_ok=True, messages=1,
                               client_certificate_presented=presented, client_certificate_validated=validated,
                               framing=[framing], evidence="ev-0002")  # type: ignore[list-item]


def run(check_id: str, trail: AuditTrail | None) -> list[str]:
    spec = REGISTRY.get(check_id)
    assert spec is not None
    return [f.status for f in spec.run(AuditData(endpoints=[], evidence=[], audit_trail=trail))]


def test_messages_valid() -> None:
    assert run("audit.messages_valid", AuditTrail(messages=[m()])) == ["pass"]
    assert run("audit.messages_valid", AuditTrail(messages=[m(), m(False, errors=["PS3.15 A.6: PRI <13>"])])) == ["fail"]
    assert run("audit.messages_valid", None) == ["not_applicable"]


def test_tls_octet_counting() -> None:
    assert run("audit.tls_octet_counting", AuditTrail(connections=[conn()])) == ["pass"]
    assert run("audit.tls_octet_counting", AuditTrail(connections=[conn(framing="non-transparent")])) == ["fail"]


def test_client_certificate() -> None:
    assert run("audit.client_certificate", AuditTrail(connections=[conn()])) == ["pass"]
    assert run("audit.client_certificate", AuditTrail(connections=[conn(presented=False, validated=None)])) == ["fail"]
    assert run("audit.client_certificate", AuditTrail(connections=[conn(validated=False)])) == ["fail"]


def test_expected_events() -> None:
    ok = Correlation(trigger="query", action_evidence="ev-0003", action_probe="dicom.find", action_at=T0,
                     expected_events=["110112"], matched_messages=[0], matched_events=["110112"])
    miss = Correlation(trigger="user_identity_rejected", action_evidence="ev-0004", action_probe="dicom.user_identity",
                       action_at=T0, expected_events=["110114", "110113"])
    missing = MissingEvent(trigger="user_identity_rejected", action_evidence="ev-0004", action_probe="dicom.user_identity",
                           expected_events=["110114", "110113"], description="")
    assert run("audit.expected_events", AuditTrail(messages=[m()], correlations=[ok])) == ["pass"]
    assert run("audit.expected_events", AuditTrail(messages=[m()], correlations=[ok, miss],
                                                   missing_events=[missing])) == ["fail"]


def test_tls_transport() -> None:
    assert run("audit.tls_transport", AuditTrail(messages=[m(), m(transport="udp")])) == ["pass"]
    assert run("audit.tls_transport", AuditTrail(messages=[m(transport="udp")])) == ["fail"]
