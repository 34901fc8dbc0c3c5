"""Build valid DICOM audit messages (PS3.15 A.5) and their RFC 5424 envelope (PS3.15 A.6/A.7).

Used by the demo's audit-trail originator, by the test messages sent to a product's collector, and by
tests. Every message built here validates against the A.5.1 schema and its A.5.3 rule.
"""

from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from dcsaudit.auditmsg.rfc5424 import BOM

MSGID = "DICOM+RFC3881"
PRI = 85  # facility 10 (security/authorization) * 8 + severity 5 (notice): PS3.15 A.6

# Display names (DICOM Code Meaning, PS3.16 DCM) for the codes this module emits.
MEANINGS = {
    "110100": "Application Activity", "110104": "DICOM Instances Transferred", "110112": "Query",
    "110113": "Security Alert", "110114": "User Authentication", "110120": "Application Start",
    "110121": "Application Stop", "110122": "Login", "110123": "Logout", "110126": "Node Authentication",
    "110127": "Emergency Override Started", "110128": "Network Configuration",
    "110129": "Security Configuration", "110132": "Use of Restricted Function",
    "110150": "Application", "110151": "Application Launcher", "110152": "Destination Role ID",
    "110153": "Source Role ID", "110180": "Study Instance UID", "110181": "SOP Class UID",
    "110182": "Node ID",
}


def coded(tag: str, code: str, system: str = "DCM", meaning: str | None = None) -> etree._Element:
    el = etree.Element(tag)
    el.set("csd-code", code)
    el.set("codeSystemName", system)
    el.set("originalText", meaning or MEANINGS.get(code, code))
    return el


@dataclass
class Participant:
    user_id: str
    requestor: bool
    roles: list[str] = field(default_factory=list)
    alternative_user_id: str | None = None
    user_name: str | None = None
    nap_id: str | None = None
    nap_type: str | None = None  # "1" machine name, "2" IP address


@dataclass
class ParticipantObject:
    object_id: str
    id_type: tuple[str, str, str]  # (code, system, meaning)
    type_code: str | None = None
    role: str | None = None
    name: str | None = None
    query: bytes | None = None
    details: list[tuple[str, bytes]] = field(default_factory=list)
    description: list[etree._Element] = field(default_factory=list)


def now_iso(at: datetime | None = None) -> str:
    """An xsd:dateTime with an explicit time zone (A.5.2), in local time with its UTC offset."""
    t = (at or datetime.now().astimezone()).astimezone()
    return t.isoformat(timespec="milliseconds")


def audit_xml(
    event_id: str,
    *,
    action: str,
    outcome: str = "0",
    type_codes: list[str] | None = None,
    participants: list[Participant],
    source_id: str,
    source_type: str = "4",
    objects: list[ParticipantObject] | None = None,
    at: datetime | None = None,
    outcome_description: str | None = None,
) -> bytes:
    """The XML of one AuditMessage, elements in the order the A.5.1 schema requires."""
    root = etree.Element("AuditMessage")
    ev = etree.SubElement(root, "EventIdentification")
    ev.set("EventActionCode", action)
    ev.set("EventDateTime", now_iso(at))
    ev.set("EventOutcomeIndicator", outcome)
    ev.append(coded("EventID", event_id))
    for code in type_codes or []:
        ev.append(coded("EventTypeCode", code))
    if outcome_description:
        etree.SubElement(ev, "EventOutcomeDescription").text = outcome_description
    for p in participants:
        ap = etree.SubElement(root, "ActiveParticipant")
        ap.set("UserID", p.user_id)
        if p.alternative_user_id:
            ap.set("AlternativeUserID", p.alternative_user_id)
        if p.user_name:
            ap.set("UserName", p.user_name)
        ap.set("UserIsRequestor", "true" if p.requestor else "false")
        if p.nap_id:
            ap.set("NetworkAccessPointID", p.nap_id)
            ap.set("NetworkAccessPointTypeCode", p.nap_type or "2")
        for r in p.roles:
            ap.append(coded("RoleIDCode", r))
    src = etree.SubElement(root, "AuditSourceIdentification")
    src.set("AuditSourceID", source_id)
    st = etree.SubElement(src, "AuditSourceTypeCode")
    st.set("csd-code", source_type)
    for o in objects or []:
        po = etree.SubElement(root, "ParticipantObjectIdentification")
        po.set("ParticipantObjectID", o.object_id)
        if o.type_code:
            po.set("ParticipantObjectTypeCode", o.type_code)
        if o.role:
            po.set("ParticipantObjectTypeCodeRole", o.role)
        po.append(coded("ParticipantObjectIDTypeCode", o.id_type[0], o.id_type[1], o.id_type[2]))
        if o.query is not None:
            etree.SubElement(po, "ParticipantObjectQuery").text = base64.b64encode(o.query).decode()
        else:
            etree.SubElement(po, "ParticipantObjectName").text = o.name or o.object_id
        for t, v in o.details:
            d = etree.SubElement(po, "ParticipantObjectDetail")
            d.set("type", t)
            d.set("value", base64.b64encode(v).decode())
        for el in o.description:
            desc = etree.SubElement(po, "ParticipantObjectDescription")
            desc.append(el)
    return bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=False))


def syslog_message(
    xml: bytes,
    *,
    app_name: str = "dcsaudit",
    hostname: str | None = None,
    procid: str | None = None,
    pri: int = PRI,
    msgid: str = MSGID,
    at: datetime | None = None,
) -> bytes:
    """RFC 5424 §6 message: ``<85>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM xml``."""
    ts = (at or datetime.now().astimezone()).astimezone().isoformat(timespec="microseconds")
    host = (hostname or socket.gethostname() or "-")[:255]
    head = f"<{pri}>1 {ts} {host} {app_name[:48]} {procid or os.getpid()} {msgid} -"
    return head.encode("ascii", errors="replace") + b" " + BOM + xml


def octet_frame(msg: bytes) -> bytes:
    """RFC 5425 §4.3: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(msg)).encode() + b" " + msg


def padded_to(msg_builder: Any, size: int) -> bytes:
    """A message of exactly ``size`` octets: ``msg_builder(pad)`` gets a padding string to embed.

    Used for the PS3.15 A.6 32768-octet test message; the padding goes into EventOutcomeDescription so
    that the message stays schema-valid.
    """
    base = msg_builder("")
    missing = size - len(base)
    if missing < 0:
        raise ValueError(f"base message is already {len(base)} octets, more than {size}")
    out = msg_builder("x" * missing)
    if len(out) != size:  # escaping cannot change 'x', so this only guards against builder surprises
        raise ValueError(f"built {len(out)} octets, wanted {size}")
    return bytes(out)
