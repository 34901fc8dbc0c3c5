"""Turn one received syslog message into a classified :class:`AuditMessage`.

Order of the checks: RFC 5424 header (§6), PS3.15 A.6/A.7 envelope (PRI <85>, MSGID, BOM), the XML body
against the PS3.15 A.5.1 schema, then the A.5.2 conventions and the A.5.3 rule for the EventID.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from dcsaudit.auditmsg import rfc5424
from dcsaudit.auditmsg.xmlbody import parse_body
from dcsaudit.models.audit import AuditMessage, Framing
from dcsaudit.rules import audit_events as rules


def classify(
    raw: bytes,
    *,
    transport: Literal["tls", "udp"],
    peer: str,
    received_at: datetime,
    framing: Framing,
    connection: int | None = None,
    extra_errors: list[str] | None = None,
) -> AuditMessage:
    """Classify one message. Never raises: an internal failure becomes an error on the message."""
    errors: list[str] = list(extra_errors or [])
    warnings: list[str] = []
    try:
        h = rfc5424.parse(raw)
        errors.extend(h.errors)
        fmt_errors, warnings = rules.check_format(h, transport)
        errors.extend(fmt_errors)
        body = parse_body(h.msg)
        errors.extend(body.errors)
        errors.extend(rules.check_event(body))
    except Exception as exc:  # a classifier bug must not lose the message or stop the collector
        return AuditMessage(transport=transport, peer=peer, received_at=received_at, size=len(raw),
                            framing=framing, connection=connection,
                            errors=[*errors, f"internal error while classifying: {type(exc).__name__}"])
    if framing == "non-transparent":
        errors.append("RFC 5425 §4.3: TLS frame is not octet-counted (non-transparent framing, RFC 6587)")
    return AuditMessage(
        transport=transport, peer=peer, received_at=received_at, pri=h.pri, msgid=h.msgid,
        event_id=body.event_id, event_type_codes=body.event_type_codes, schema_valid=body.schema_valid,
        errors=errors, size=len(raw), valid=not errors, framing=framing, connection=connection,
        version=h.version, timestamp=h.timestamp, hostname=h.hostname, app_name=h.app_name, procid=h.procid,
        structured_data=h.structured_data, bom=h.bom, event_name=rules.event_name(body.event_id),
        event_action_code=body.action_code, event_outcome=body.outcome, event_date_time=body.date_time,
        fields=body.fields, warnings=warnings,
    )
