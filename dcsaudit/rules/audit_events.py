"""PS3.15 A.5.3 per-event rules and A.6/A.7 format rules, applied from ``configs/audit_events.yaml``.

The rules are data: each event entry cites its PS3.15 section, and every error
produced here quotes that section so the report says which rule a message breaks.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any

from dcsaudit import packaged_yaml
from dcsaudit.auditmsg.rfc5424 import SyslogHeader
from dcsaudit.auditmsg.xmlbody import AuditBody

RULES_FILE = "audit_events.yaml"

# xsd:dateTime with an explicit time zone (PS3.15 A.5.2: EventDateTime shall include a time zone).
_TZ = re.compile(r"(Z|[+-]\d\d:\d\d)$")


@functools.cache
def load_rules(path: str | None = None) -> dict[str, Any]:
    """The rules file: the packaged copy unless a path is given (tests, site overrides)."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    else:
        # configs/ is installed as dcsaudit.configs (see pyproject), like dcsaudit.checks: always present.
        text = resources.files("dcsaudit.configs").joinpath(RULES_FILE).read_text(encoding="utf-8")
    data = packaged_yaml.load(text)
    if not isinstance(data, dict) or not isinstance(data.get("events"), dict):
        raise ValueError(f"{RULES_FILE}: expected a mapping with 'events'")
    return data


def event_name(event_id: str | None) -> str | None:
    if event_id is None:
        return None
    ev = load_rules()["events"].get(event_id)
    return str(ev["name"]) if ev else None


def check_format(h: SyslogHeader, transport: str) -> tuple[list[str], list[str]]:
    """PS3.15 A.6/A.7 requirements on the syslog envelope: (errors, warnings)."""
    fmt = load_rules()["format"]
    errors: list[str] = []
    warnings: list[str] = []
    allowed_pri = fmt["pri_allowed_udp"] if transport == "udp" else fmt["pri"]
    if h.pri is not None and h.pri not in allowed_pri:
        errors.append(f"PS3.15 {'A.7' if transport == 'udp' else 'A.6'}: PRI <{h.pri}> (facility {h.facility}, "
                      f"severity {h.severity}); expected facility 10 severity 5, i.e. <85>")
    if h.msgid is None:
        errors.append("PS3.15 A.6: MSGID is not set (NILVALUE)")
    elif h.msgid not in fmt["msgid"]:
        # A.6 says MSGID shall be set and "DICOM+RFC3881" *may* be used: another value is a warning.
        warnings.append(f"PS3.15 A.6: MSGID {h.msgid!r} is not 'DICOM+RFC3881'")
    if h.msg and not h.bom:
        errors.append("RFC 5424 §6.4: UTF-8 MSG does not begin with the BOM EF BB BF")
    return errors, warnings


def _count_check(what: str, n: int, spec: dict[str, Any], section: str, errors: list[str]) -> None:
    lo = int(spec.get("min", 0))
    hi = spec.get("max")
    if n < lo:
        errors.append(f"{section}: {what}: {n} present, at least {lo} required")
    if hi is not None and n > int(hi):
        errors.append(f"{section}: {what}: {n} present, at most {hi} allowed")


def check_event(body: AuditBody) -> list[str]:
    """A.5.2 conventions and the A.5.3 specialisation for the message's EventID."""
    errors: list[str] = []
    if body.date_time is not None and not _TZ.search(body.date_time):
        errors.append("PS3.15 A.5.2: EventDateTime has no time zone")
    if body.event_id is None:
        return errors
    rule = load_rules()["events"].get(body.event_id)
    if rule is None or (body.event_id_system not in (None, "DCM")):
        # Not a DICOM-specific event (e.g. an IHE or private code): schema rules only.
        return errors
    sec = str(rule["section"])
    codes = rule.get("action_codes")
    if codes and body.action_code not in codes:
        errors.append(f"{sec}: EventActionCode {body.action_code or '(absent)'} not in {'/'.join(codes)}")
    etc = rule.get("event_type_codes")
    if etc and etc.get("required"):
        allowed = set(etc.get("allowed", []))
        if not any(c in allowed for c in body.event_type_codes):
            errors.append(f"{sec}: EventTypeCode required, one of {', '.join(sorted(allowed))}; "
                          f"got {', '.join(body.event_type_codes) or 'none'}")
    if "participants" in rule:
        _count_check("ActiveParticipant", len(body.participants), rule["participants"], sec, errors)
    for role, spec in (rule.get("roles") or {}).items():
        n = sum(1 for p in body.participants if role in p.roles)
        _count_check(f"ActiveParticipant with RoleIDCode {role}", n, spec, sec, errors)
    if rule.get("network_access_point") and not any(p.nap_id and p.nap_type for p in body.participants):
        errors.append(f"{sec}: NetworkAccessPointID and NetworkAccessPointTypeCode are mandatory for the "
                      "user authenticated")
    for id_type, spec in (rule.get("objects") or {}).items():
        n = sum(1 for o in body.objects if o.id_type == id_type)
        _count_check(f"ParticipantObject with IDTypeCode {id_type}", n, spec, sec, errors)
    if rule.get("query_object"):
        for o in body.objects:
            if o.id_type == "110181":
                if not o.has_query:
                    errors.append(f"{sec}: the SOP Class object has no ParticipantObjectQuery")
                if "TransferSyntax" not in o.detail_types:
                    errors.append(f"{sec}: the SOP Class object has no ParticipantObjectDetail 'TransferSyntax'")
    return errors
