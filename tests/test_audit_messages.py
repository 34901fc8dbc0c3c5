"""RFC 5424 parsing and PS3.15 A.5 classification of audit messages (no network)."""

from __future__ import annotations

import datetime as dt

import pytest

from dcsaudit.audit_originator import AuditOriginator
from dcsaudit.auditmsg import build, classify, rfc5424
from dcsaudit.auditmsg.build import Participant
from dcsaudit.auditmsg.xmlbody import parse_body
from dcsaudit.models.audit import AuditMessage

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def _classify(raw: bytes, transport: str = "tls") -> AuditMessage:
    return classify(raw, transport=transport, peer="127.0.0.1:5000", received_at=NOW,  # type: ignore[arg-type]
                    framing="octet-counting" if transport == "tls" else "datagram")


def originator_messages() -> dict[str, bytes]:
    """Every message the demo originator can build, captured instead of sent."""
    out: dict[str, bytes] = {}
    o = AuditOriginator("127.0.0.1", 9, "udp")
    key = {"k": ""}
    o.send_raw = lambda msg: out.__setitem__(key["k"], msg) or True  # type: ignore[method-assign]
    for name, call in [
        ("app", lambda: o.application_activity(True, ["DEMO", "DEMO2"])),
        ("auth", lambda: o.user_authentication("alice", False, "127.0.0.1")),
        ("alert", lambda: o.security_alert("110126", "127.0.0.1", "127.0.0.1")),
        ("query", lambda: o.query("1.2.840.10008.5.1.4.1.2.2.1", "127.0.0.1", "SCU", b"\x08\x00\x52\x00")),
        ("store", lambda: o.instances_transferred("127.0.0.1", "SCU", "1.2.3.4", "PID1", "1.2.840.10008.5.1.4.1.1.7")),
        ("assoc", lambda: o.association("127.0.0.1", "BAD", "DEMO", accepted=False)),
    ]:
        key["k"] = name
        call()
    return out


def test_originator_messages_are_all_valid() -> None:
    # Given every message kind the demo originator builds
    msgs = originator_messages()
    # When each is classified
    results = {k: _classify(v) for k, v in msgs.items()}
    # Then each is valid with its PS3.15 A.5.3 EventID, PRI <85> and MSGID DICOM+RFC3881
    expected = {"app": "110100", "auth": "110114", "alert": "110113", "query": "110112", "store": "110104",
                "assoc": "110113"}
    for k, m in results.items():
        assert m.errors == [], (k, m.errors)
        assert m.valid and m.schema_valid and m.bom
        assert m.event_id == expected[k]
        assert m.pri == 85 and m.msgid == "DICOM+RFC3881"
    assert results["app"].event_type_codes == ["110120"]
    assert results["auth"].event_outcome == "4"


def test_rfc5424_header_fields_parsed() -> None:
    # Given a message with structured data
    raw = b'<85>1 2024-05-01T12:00:00.123456+02:00 host app 42 DICOM+RFC3881 [x@1 a="b\\]c"][y@2] \xef\xbb\xbf<a/>'
    # When parsed
    h = rfc5424.parse(raw)
    # Then every header field is extracted and nothing is flagged
    assert h.errors == []
    assert (h.pri, h.version, h.hostname, h.app_name, h.procid, h.msgid) == (85, 1, "host", "app", "42", "DICOM+RFC3881")
    assert h.sd_ids == ["x@1", "y@2"] and h.bom and h.msg == b"<a/>"


@pytest.mark.parametrize("raw, fragment", [
    (b"hello world", "no PRI"),
    (b"<999>1 - - - - - -", "out of range"),
    (b"<85>Jan  1 00:00:00 host app: msg", "no VERSION"),
    (b"<85>2 - - - - - -", "VERSION is 2"),
    (b"<85>1 2024-05-01T12:00:00 h a p m -", "TIMESTAMP"),
    (b"<85>1 - h a p " + b"M" * 40 + b" -", "MSGID is 40 octets"),
    (b"<85>1 - h a p m [bad", "SD"),
    (b"<85>1 - h", "ends before"),
])
def test_rfc5424_errors_are_reported(raw: bytes, fragment: str) -> None:
    # Given a malformed header / When parsed / Then the error names the problem (and nothing raises)
    h = rfc5424.parse(raw)
    assert any(fragment in e for e in h.errors), h.errors


def _auth_xml(**kw: object) -> bytes:
    parts = kw.pop("participants", [Participant("alice", True, nap_id="127.0.0.1", nap_type="2")])
    return build.audit_xml("110114", action="E", type_codes=["110122"], participants=parts,  # type: ignore[arg-type]
                           source_id="X", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda m: m.replace(b"<85>", b"<13>"), "PRI <13>"),
    (lambda m: m.replace(b"DICOM+RFC3881", b"-"), "MSGID is not set"),
    (lambda m: m.replace(b"\xef\xbb\xbf", b""), "BOM"),
    (lambda m: m.replace(b'EventOutcomeIndicator="0"', b'EventOutcomeIndicator="3"'), "schema"),
    (lambda m: m.replace(b"<EventTypeCode", b"<Bogus").replace(b"</EventTypeCode", b"</Bogus"), "schema"),
    (lambda m: m.split(b"\xef\xbb\xbf")[0] + b"\xef\xbb\xbf<AuditMessage>", "not well formed"),
    (lambda m: m.replace(b"alice", b"al\xffice"), "not well formed"),
])
def test_invalid_messages_are_told_apart_with_reason(mutate, fragment) -> None:  # type: ignore[no-untyped-def]
    # Given a valid User Authentication message broken in one way
    good = build.syslog_message(_auth_xml(), app_name="t")
    assert _classify(good).valid
    # When the broken one is classified
    m = _classify(mutate(good))
    # Then it is invalid and the reason says why
    assert not m.valid
    assert any(fragment in e for e in m.errors), m.errors


def test_a53_rules_catch_what_the_schema_allows() -> None:
    # Given schema-valid messages that break PS3.15 A.5.3.12 / A.5.3.1 / A.5.2
    no_nap = build.syslog_message(_auth_xml(participants=[Participant("alice", True)]))
    no_type = build.syslog_message(build.audit_xml("110100", action="E", participants=[
        Participant("1", False, roles=["110150"])], source_id="X"))
    # When classified
    m1, m2 = _classify(no_nap), _classify(no_type)
    # Then the schema passes but the per-event rule fails, citing its section
    assert m1.schema_valid and not m1.valid and any("A.5.3.12" in e and "NetworkAccessPoint" in e for e in m1.errors)
    assert m2.schema_valid and any("A.5.3.1" in e and "EventTypeCode" in e for e in m2.errors)


def test_event_date_time_without_time_zone_is_an_error() -> None:
    # Given a message whose EventDateTime has no offset
    xml = _auth_xml().decode()
    start = xml.index('EventDateTime="') + len('EventDateTime="')
    end = xml.index('"', start)
    xml = xml[:start] + "2024-05-01T12:00:00" + xml[end:]
    # When classified / Then A.5.2 is cited (the schema's xsd:dateTime alone would accept it)
    m = _classify(build.syslog_message(xml.encode()))
    assert m.schema_valid
    assert any("A.5.2" in e and "time zone" in e for e in m.errors)


def test_xml_bomb_and_external_entities_are_refused() -> None:
    # Given a billion-laughs body and an external-entity body (file and network)
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + b"".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i else "&lol;" * 10}">'.encode()
                       for i in range(9))
            + b"]><AuditMessage>&lol8;</AuditMessage>")
    xxe = b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><AuditMessage>&x;</AuditMessage>'
    net = b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><AuditMessage/>'
    for body in (bomb, xxe, net):
        # When parsed
        r = parse_body(body)
        # Then it is refused without resolving anything
        assert not r.well_formed and not r.schema_valid
        assert any("refused" in e for e in r.errors)


def test_padded_message_has_exact_size_and_stays_valid() -> None:
    # Given the 32768-octet PS3.15 A.6 test message
    from dcsaudit.probes.syslog_sender import build_test_message
    msg = build_test_message(32768)
    # Then it is exactly that size and valid
    assert len(msg) == 32768
    assert _classify(msg).valid
