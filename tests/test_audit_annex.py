"""Annex tables N.6-18/N.6-19, N.8-2 (audit rows), N.11-2 and N.11-3 from recorded data."""

from __future__ import annotations

import datetime as dt

from dcsaudit.annex.audit_tables import tables
from dcsaudit.annex.builder import build_annex
from dcsaudit.checks import AuditData
from dcsaudit.models.audit import AuditMessage, AuditTrail, Correlation, MissingEvent, SyslogSendResult
from dcsaudit.models.core import Provenance
from dcsaudit.models.endpoint import Endpoint

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def _trail() -> AuditTrail:
    msgs = [
        AuditMessage(transport="tls", peer="127.0.0.5:1", received_at=T0, event_id="110100", event_name="Application Activity",
                     event_type_codes=["110120"], event_action_code="E", event_outcome="0", valid=True, schema_valid=True,
                     size=800, evidence="ev-0010",
                     fields={"Event": ["EventActionCode", "EventDateTime", "EventOutcomeIndicator", "EventID", "EventTypeCode"],
                             "ActiveParticipant 110150": ["UserID", "AlternativeUserID", "UserIsRequestor", "RoleIDCode"]}),
        AuditMessage(transport="udp", peer="127.0.0.5:2", received_at=T0, event_id="110112", valid=False,
                     schema_valid=True, errors=["PS3.15 A.5.3.10: x"], size=1500, evidence="ev-0011"),
    ]
    corr = [Correlation(trigger="query", action_evidence="ev-0003", action_probe="dicom.find", action_at=T0,
                        expected_events=["110112"], matched_messages=[1], matched_events=["110112"]),
            Correlation(trigger="user_identity_rejected", action_evidence="ev-0004", action_probe="dicom.user_identity",
                        action_at=T0, expected_events=["110114", "110113"])]
    missing = [MissingEvent(trigger="user_identity_rejected", action_evidence="ev-0004",
                            action_probe="dicom.user_identity", expected_events=["110114", "110113"], description="")]
    return AuditTrail(messages=msgs, bind="0.0.0.0", tls_port=6514, udp_port=514, correlations=corr,
                      missing_events=missing, largest_message=1500)


def _cell(tabs: dict[str, list[list[object]]], table: str, row: str, col: int) -> object:
    return next(r for r in tabs[table] if r[0].value == row)[col]  # type: ignore[attr-defined]


def test_tables_from_observed_trail() -> None:
    # Given a trail with two messages, one correlated query and one missing User Authentication
    data = AuditData(endpoints=[], evidence=[], audit_trail=_trail(),
                     declared={"N.11-2": {"Application Activity": "N", "Query | Configurable Triggers": "Y"}})
    # When the tables are built
    out = tables(data)
    ids = [(s, t.id) for s, t in out]
    assert ids == [("N.6.6", "N.6-18"), ("N.6.6", "N.6-19"), ("N.8.4.1", "N.8-2"), ("N.11.2.2", "N.11-2"),
                   ("N.11.2.2", "N.11-3")]
    # (declarations are reconciled by the builder, over the whole annex)
    built = [t for s in build_annex(data).sections for t in s.tables]
    tabs = {t.id: t.rows for t in built}
    cols = {t.id: t.columns for t in built}
    assert cols["N.11-2"] == ["Audit Message", "Used", "Supported Triggers", "Configurable Triggers",
                              "Configurable Message", "Comments"]
    # Then N.11-2 shows what was used, contradicting a wrong declaration, with evidence
    app = _cell(tabs, "N.11-2", "Application Activity", 1)
    assert app.provenance is Provenance.CONTRADICTED and app.value == "Y" and app.evidence == ["ev-0010"]  # type: ignore[attr-defined]
    q = next(r for r in tabs["N.11-2"] if r[0].value == "Query")
    assert q[1].value == "Y" and "query (x1)" in q[2].value and q[3].provenance is Provenance.DECLARED
    ua = _cell(tabs, "N.11-2", "User Authentication", 1)
    # "N" rests on the trigger and on the control: other messages from the product did arrive
    assert ua.value == "N" and ua.evidence == ["ev-0004", "ev-0010", "ev-0011"]  # type: ignore[attr-defined]
    # and N.8-2 says the product sends over TLS and UDP; N.6-18 the largest size
    fmt = _cell(tabs, "N.8-2", "Audit Trail Message Format", 1)
    assert fmt.value == "Y"  # type: ignore[attr-defined]
    size = _cell(tabs, "N.6-18", "Maximum Size sent", 3)
    assert "1500" in size.value  # type: ignore[attr-defined]
    # and N.11-3 lists the fields of the Application Activity message
    rows113 = [(r[0].value, r[1].value, r[3].value) for r in tabs["N.11-3"]]
    assert ("Event", "EventID", 'EV (110100, DCM, "Application Activity")') in rows113
    assert ("Active Participant: Application", "AlternativeUserID", "") in rows113


def test_tables_without_collector() -> None:
    # Given no collector and no syslog endpoint
    out = dict((t.id, t) for _, t in tables(AuditData(endpoints=[], evidence=[])))
    # Then nothing is invented: N.6-19 and N.11-3 are empty with a reason; "Used" of N.11-2 is observable
    # but not observed (∅) because no collector ran, never a "N"
    assert out["N.6-19"].empty_reason and out["N.11-3"].empty_reason
    assert all(r[1].provenance is Provenance.NOT_OBSERVED and r[1].note == "no audit-trail collector ran"
               for r in out["N.11-2"].rows)


def test_collector_table_from_product_endpoints() -> None:
    # Given a product syslog-tls endpoint
    ep = Endpoint(host="127.0.0.9", port=6514, protocol="tcp", state="open", service="syslog-tls", evidence=["ev-0020"])
    out = dict((t.id, t) for _, t in tables(AuditData(endpoints=[ep], evidence=[])))
    rows = {r[0].value: r for r in out["N.6-19"].rows}
    assert rows["Local Listening Secured port number"][3].value == "127.0.0.9:6514/tcp"
    assert rows["Local Listening Secured port number"][3].evidence == ["ev-0020"]
    assert rows["TLS Protocol"][2].value == "TLS"


def test_collector_table_from_test_messages_sent() -> None:
    # Given product collector endpoints with the results of the opt-in test messages
    # (Endpoint.syslog_send; the evidence's display data is deliberately empty: the annex reads the results)
    sent = SyslogSendResult(transport="tls", sent=True, delivered=True, accepted=True, size=32768,
                            framing="octet-counting", tls_version="TLSv1.3", evidence=["ev-0031"])
    tls = Endpoint(host="127.0.0.9", port=6514, protocol="tcp", state="open", service="syslog-tls",
                   evidence=["ev-0020"], syslog_send=sent)
    udp = Endpoint(host="127.0.0.9", port=514, protocol="udp", state="open", service="syslog-udp",
                   evidence=["ev-0021"], syslog_send=SyslogSendResult(transport="udp", sent=True, delivered=True,
                                                                      size=2048, evidence=["ev-0032"]))
    # When the tables are built
    out = dict((t.id, t) for _, t in tables(AuditData(endpoints=[tls, udp], evidence=[])))
    rows = {r[0].value: r for r in out["N.6-19"].rows}
    # Then the TLS version, the accepted size and the UDP send are verified, citing the sends
    size = rows["Maximum Size Received"][3]
    assert (size.value, size.provenance, size.evidence) == (
        "accepted a 32768-octet message over TLS", Provenance.VERIFIED, ["ev-0031"])
    assert "TLSv1.3" in rows["TLS Protocol"][3].value and "ev-0031" in rows["TLS Protocol"][3].evidence
    assert rows["UDP Protocol"][3].value.endswith("test message sent") and "ev-0032" in rows["UDP Protocol"][3].evidence


def test_collector_table_without_accepted_message_says_not_observed() -> None:
    # Given a TLS test message the collector closed on (delivered, not accepted)
    closed = SyslogSendResult(transport="tls", sent=True, delivered=True, accepted=False, size=32768,
                              evidence=["ev-0031"])
    tls = Endpoint(host="127.0.0.9", port=6514, protocol="tcp", state="open", service="syslog-tls",
                   evidence=["ev-0020"], syslog_send=closed)
    out = dict((t.id, t) for _, t in tables(AuditData(endpoints=[tls], evidence=[])))
    size = {r[0].value: r for r in out["N.6-19"].rows}["Maximum Size Received"][3]
    assert size.provenance == Provenance.NOT_OBSERVED and not size.value
