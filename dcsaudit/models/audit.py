"""Audit-trail (syslog) results (PS3.15 A.5-A.7, RFC 5424/5425/5426). Contract names are relied on by scripts.

Contract (``report.json`` → ``audit_trail``): ``messages`` is a list; each message has ``transport``,
``peer``, ``received_at``, ``pri``, ``msgid``, ``event_id``, ``event_type_codes``, ``schema_valid``,
``errors`` and ``size``. Everything else here is an extension.

References: RFC 5424 §6 (header), RFC 5425 §4.3 (octet-counting), RFC 6587 §3.4.2 (non-transparent
framing), RFC 5426 §3.1 (one message per datagram), PS3.15 A.5 (message format), A.5.3 (per-event rules),
A.6/A.7 (SYSLOG-TLS/UDP transmission).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from dcsaudit.models.core import Model, Reason

Framing = Literal["octet-counting", "non-transparent", "datagram"]


class AuditMessage(Model):
    """One syslog message received by the collector, parsed and classified."""

    transport: Literal["tls", "udp"]
    peer: str
    received_at: datetime
    pri: int | None = None
    msgid: str | None = None
    event_id: str | None = Field(default=None, description="EventID csd-code, e.g. '110114'")
    event_type_codes: list[str] = Field(default_factory=list)
    schema_valid: bool = Field(default=False, description="the XML body validates against the PS3.15 A.5.1 schema")
    errors: list[str] = Field(default_factory=list, description="every rule the message breaks, each with its source")
    size: int = Field(default=0, description="octets of the syslog message (without the frame length)")
    # Extensions.
    valid: bool = Field(default=False, description="no error at all (header, schema, A.5.3 rules)")
    framing: Framing = "datagram"
    connection: int | None = Field(default=None, description="index into AuditTrail.connections (TLS)")
    version: int | None = None
    timestamp: str | None = None
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    structured_data: str | None = None
    bom: bool = False
    event_name: str | None = Field(default=None, description="PS3.2 Table N.11-2 row for the EventID")
    event_action_code: str | None = None
    event_outcome: str | None = None
    event_date_time: str | None = None
    fields: dict[str, list[str]] = Field(
        default_factory=dict, description="entity (Event, ActiveParticipant <role>, …) -> fields present (N.11-3)"
    )
    warnings: list[str] = Field(default_factory=list, description="departures that are allowed but noteworthy")
    evidence: str | None = Field(default=None, description="Evidence id recorded for this message")


class CollectorConnection(Model):
    """One TLS connection to the collector, with what the sender showed of itself (RFC 5425 §4.2)."""

    peer: str
    opened_at: datetime
    handshake_ok: bool
    tls_version: str | None = None
    cipher: str | None = None
    client_certificate_presented: bool = False
    client_certificate_validated: bool | None = Field(
        default=None, description="chain validated against the collector's CA file (None: no CA file given)"
    )
    client_certificate_subject: str | None = None
    client_certificate_sha256: str | None = None
    verify_error: str | None = None
    framing: list[Framing] = Field(default_factory=list)
    messages: int = 0
    errors: list[str] = Field(default_factory=list, description="framing errors, oversize frames, timeouts")
    evidence: str | None = None


class SyslogSendResult(Model):
    """A test audit message sent to the product's own collector (PS3.15 A.6 TLS / A.7 UDP), opt-in.

    Sits on the collector's :class:`~dcsaudit.models.endpoint.Endpoint` as ``syslog_send``.
    """

    transport: Literal["tls", "udp"]
    sent: bool = Field(default=False, description="a message was sent (False: not permitted, or no connection)")
    delivered: bool = Field(
        default=False, description="TLS: handshake done and the frame written; UDP: sent and no ICMP error came back")
    accepted: bool | None = Field(
        default=None, description="TLS: the collector kept the connection open after the frame, no alert (False: it "
        "closed or refused); None: not sent, or UDP (no acknowledgement)")
    size: int = Field(default=0, description="octets of the syslog message sent (TLS: without the frame length)")
    framing: Framing = "datagram"
    tls_version: str | None = Field(default=None, description="negotiated TLS version, e.g. 'TLSv1.3'")
    cipher: str | None = None
    server_verified: bool | None = Field(
        default=None, description="the collector's chain was validated against credentials.ca_file (None: TLS not tried)")
    client_certificate_sent: bool | None = Field(
        default=None, description="the configured client certificate was offered (None: TLS not tried)")
    reason: Reason | None = Field(default=None, description="why it was not sent, delivered or accepted")
    outcome: str = Field(default="", description="what happened, in words")
    evidence: list[str] = Field(default_factory=list)


class Correlation(Model):
    """An action of the scan matched to the audit messages it was expected to cause."""

    trigger: str = Field(description="trigger rule name from configs/audit_events.yaml")
    action_evidence: str = Field(description="Evidence id of the scan action")
    action_probe: str
    action_at: datetime
    expected_events: list[str] = Field(description="EventIDs (any one of them satisfies the rule)")
    matched_messages: list[int] = Field(default_factory=list, description="indexes into AuditTrail.messages")
    matched_events: list[str] = Field(default_factory=list)


class MissingEvent(Model):
    """An expected audit message that never arrived within the correlation window."""

    trigger: str
    action_evidence: str
    action_probe: str
    expected_events: list[str]
    level: Literal["expected", "optional"] = Field(
        default="expected", description="expected: a finding when missing; optional: reported only"
    )
    description: str


class MessageClass(Model):
    """Messages of one kind (transport, EventID, valid or not) and how many came."""

    transport: Literal["tls", "udp"]
    event_id: str | None = None
    valid: bool
    count: int = 0
    examples: list[int] = Field(default_factory=list, description="indexes (arrival order) of the messages kept "
                                "in AuditTrail.messages for this class")


class AuditTrail(Model):
    messages: list[AuditMessage] = Field(
        default_factory=list, description="the first messages received (up to the collector's keep_all), then the "
        "first examples of each class; every classified message is in messages_file")
    # Extensions.
    bind: str | None = None
    tls_port: int | None = None
    udp_port: int | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    ca_file_given: bool = False
    connections: list[CollectorConnection] = Field(default_factory=list)
    framings: list[Framing] = Field(default_factory=list, description="framings seen, in order of first sight")
    largest_message: int = Field(default=0, description="octets of the largest message received (N.6-19)")
    dropped: dict[str, int] = Field(
        default_factory=dict, description="reason -> count of frames not kept (oversize, malformed, overflow)"
    )
    received: int = Field(default=0, description="messages received and stored (TLS frames and UDP datagrams)")
    classified: int = Field(default=0, description="messages classified (the rest were received, stored raw in "
                            "received_file, and not classified before the collector stopped)")
    classes: list[MessageClass] = Field(default_factory=list)
    messages_file: str | None = Field(default=None, description="JSON Lines: every classified message with its index")
    received_file: str | None = Field(default=None, description="every received message, raw, in arrival order")
    udp_receive_buffer: int | None = Field(default=None, description="SO_RCVBUF the kernel granted (octets)")
    correlations: list[Correlation] = Field(default_factory=list)
    missing_events: list[MissingEvent] = Field(default_factory=list)
    window_seconds: float | None = None
    evidence: list[str] = Field(default_factory=list)
