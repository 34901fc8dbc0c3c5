"""The XML body of a DICOM audit message: safe parsing, schema validation, field extraction.

PS3.15 A.5.1 defines the schema (RELAX NG Compact, inline in A.5.1.1); ``dcsaudit/data`` holds that text
as shipped (``dicom-audit-message.rnc``) and its RELAX NG XML form (``dicom-audit-message.rng``, converted
once with rnc2rng 2.7.0) which lxml validates against.

Audit messages come from the network, so parsing is defensive: a document type declaration or an entity
declaration is refused before parsing (XML bombs, external entities - nothing is ever resolved or
fetched), the parser runs with ``resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False``,
and the body size is capped by the collector before it reaches here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from lxml import etree

SCHEMA_FILE = "dicom-audit-message.rng"

_local = threading.local()


def _schema() -> etree.RelaxNG:
    """One compiled schema per thread: lxml validators keep an error log and are not shared safely."""
    schema = getattr(_local, "schema", None)
    if schema is None:
        blob = resources.files("dcsaudit").joinpath("data", SCHEMA_FILE).read_bytes()
        schema = etree.RelaxNG(etree.fromstring(blob, _parser()))
        _local.schema = schema
    return schema


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
            dtd_validation=False, remove_comments=False, collect_ids=False,
        )
        _local.parser = parser
    return parser


@dataclass
class Participant:
    user_id: str | None
    requestor: str | None
    roles: list[str]
    nap_id: str | None
    nap_type: str | None


@dataclass
class ParticipantObject:
    id_type: str | None
    type_code: str | None
    role: str | None
    has_query: bool
    detail_types: list[str]


@dataclass
class AuditBody:
    """What the body says, and every problem found with it."""

    well_formed: bool = False
    schema_valid: bool = False
    errors: list[str] = field(default_factory=list)
    event_id: str | None = None
    event_id_system: str | None = None
    event_type_codes: list[str] = field(default_factory=list)
    action_code: str | None = None
    outcome: str | None = None
    date_time: str | None = None
    participants: list[Participant] = field(default_factory=list)
    objects: list[ParticipantObject] = field(default_factory=list)
    audit_source_id: str | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)


def _forbidden_markup(data: bytes) -> str | None:
    """Refuse DTDs and entity declarations outright: a legitimate PS3.15 message never has one."""
    head = data.lstrip()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return "XML: document type or entity declaration refused (never resolved; PS3.15 A.5.1 has none)"
    if head.startswith(b"\xfe\xff") or head.startswith(b"\xff\xfe"):
        return "XML: UTF-16 body; RFC 5424 §6.4 MSG-UTF8 is UTF-8"
    return None


def _add_fields(fields: dict[str, list[str]], entity: str, el: Any) -> None:
    seen = fields.setdefault(entity, [])
    for name in [*el.attrib.keys(), *(c.tag for c in el if isinstance(c.tag, str))]:
        if name not in seen:
            seen.append(str(name))


def parse_body(data: bytes) -> AuditBody:
    """Parse and validate one message body (the MSG part, BOM already removed). Never raises."""
    body = AuditBody()
    if not data.strip():
        body.errors.append("PS3.15 A.6: MSG is empty (expected the XML audit message)")
        return body
    refused = _forbidden_markup(data)
    if refused:
        body.errors.append(refused)
        return body
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        body.errors.append(f"XML: not well formed: {str(exc)[:200]}")
        return body
    except (ValueError, MemoryError) as exc:  # lxml raises ValueError for some encodings
        body.errors.append(f"XML: cannot parse: {str(exc)[:200]}")
        return body
    doc = root.getroottree()
    if doc.docinfo.doctype or doc.docinfo.internalDTD is not None:
        body.errors.append("XML: document type declaration refused")
        return body
    body.well_formed = True
    schema = _schema()
    if schema.validate(root):
        body.schema_valid = True
    else:
        for e in list(schema.error_log)[:5]:
            body.errors.append(f"PS3.15 A.5.1 schema: line {e.line}: {e.message[:200]}")
    _extract(root, body)
    return body


def _extract(root: Any, body: AuditBody) -> None:
    """Pick the fields the A.5.3 rules and the annex need, tolerating invalid documents."""
    if root.tag != "AuditMessage":
        return
    ev = root.find("EventIdentification")
    if ev is not None:
        _add_fields(body.fields, "Event", ev)
        body.action_code = ev.get("EventActionCode")
        body.outcome = ev.get("EventOutcomeIndicator")
        body.date_time = ev.get("EventDateTime")
        eid = ev.find("EventID")
        if eid is not None:
            body.event_id = eid.get("csd-code")
            body.event_id_system = eid.get("codeSystemName")
        body.event_type_codes = [c for c in (t.get("csd-code") for t in ev.findall("EventTypeCode")) if c]
    for ap in root.findall("ActiveParticipant"):
        roles = [c for c in (r.get("csd-code") for r in ap.findall("RoleIDCode")) if c]
        body.participants.append(Participant(
            user_id=ap.get("UserID"), requestor=ap.get("UserIsRequestor"), roles=roles,
            nap_id=ap.get("NetworkAccessPointID"), nap_type=ap.get("NetworkAccessPointTypeCode"),
        ))
        _add_fields(body.fields, "ActiveParticipant " + ("/".join(roles) if roles else "(no role)"), ap)
    src = root.find("AuditSourceIdentification")
    if src is not None:
        body.audit_source_id = src.get("AuditSourceID")
        _add_fields(body.fields, "AuditSource", src)
    for po in root.findall("ParticipantObjectIdentification"):
        idt = po.find("ParticipantObjectIDTypeCode")
        code = idt.get("csd-code") if idt is not None else None
        body.objects.append(ParticipantObject(
            id_type=code, type_code=po.get("ParticipantObjectTypeCode"),
            role=po.get("ParticipantObjectTypeCodeRole"),
            has_query=po.find("ParticipantObjectQuery") is not None,
            detail_types=[d.get("type") or "" for d in po.findall("ParticipantObjectDetail")],
        ))
        _add_fields(body.fields, f"ParticipantObject {code or '(no type)'}", po)
