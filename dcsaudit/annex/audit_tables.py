"""Annex tables for the audit trail: PS3.2 2024d N.6.6 (Tables N.6-18, N.6-19), the audit rows of
N.8.4.1 (Table N.8-2) and N.11.2.2 (Tables N.11-2, N.11-3).

Observed values come from the collector's :class:`AuditTrail` (the product as *originator*) and from the
``syslog-tls``/``syslog-udp`` endpoints with their test-message results, ``Endpoint.syslog_send`` (the
product as *collector*).
Declared values: ``data.declared[table_id][row_label]`` for a row's main value (N.6-18/19 "Default
Value", N.11-2 "Used"), and ``data.declared[table_id]["<row label> | <column heading>"]`` for any other
column (e.g. ``"Query | Configurable Triggers"``, ``"Audit Trail Message Format | Creator/Sender"``).
"""

from __future__ import annotations

from collections import defaultdict

from dcsaudit.annex import cells
from dcsaudit.checks.base import AuditData
from dcsaudit.models.audit import AuditMessage, AuditTrail, SyslogSendResult
from dcsaudit.models.core import AnnexTable, Cell
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.rules.audit_events import load_rules

N618 = "N.6-18"
N619 = "N.6-19"
N82 = "N.8-2"
N112 = "N.11-2"
N113 = "N.11-3"
SYSLOG_COLS = ["Parameter", "Configurable", "Default Value", "Comments"]

# PS3.2 Table N.11-2 rows, in the template's order, with their EventID (PS3.15 A.5.3).
N112_ROWS: list[tuple[str, str]] = [
    ("Application Activity", "110100"), ("Audit Log Used", "110101"),
    ("Begin Transferring DICOM Instances", "110102"), ("Data Export", "110106"), ("Data Import", "110107"),
    ("DICOM Instance Accessed", "110103"), ("DICOM Instance Transferred", "110104"),
    ("DICOM Study Deleted", "110105"), ("Network Entry", "110108"), ("Query", "110112"),
    ("Security Alert", "110113"), ("User Authentication", "110114"), ("Order Record", "110109"),
    ("Patient Record", "110110"), ("Procedure Record", "110111"),
]

_ROLE_NAMES = {"110150": "Application", "110151": "Application Launcher", "110152": "Destination",
               "110153": "Source", "110154": "Destination Media", "110155": "Source Media"}


def _col(declared: dict[str, dict[str, str]], table: str, row: str, column: str,
         observed: str | None = None, evidence: list[str] | None = None,
         note: str = "not verifiable from the network", observable: bool = False) -> Cell:
    return cells.reconcile(declared, table, f"{row} | {column}", observed, evidence or [], unobservable_note=note,
                           observable=observable)


def _ev(msgs: list[AuditMessage], n: int | None = None) -> list[str]:
    """The evidence of the messages a value was derived from (all of them unless ``n`` says otherwise)."""
    return [m.evidence for m in msgs if m.evidence][:n]


def _syslog_endpoints(data: AuditData, service: str) -> list[Endpoint]:
    return [e for e in data.endpoints if e.service == service and e.state == "open"]


def _delivered(data: AuditData, transport: str) -> list[SyslogSendResult]:
    """Test messages that reached the product's collector over ``transport`` (``Endpoint.syslog_send``)."""
    return [e.syslog_send for e in data.endpoints
            if e.syslog_send is not None and e.syslog_send.transport == transport and e.syslog_send.delivered]


# -- N.6.6 -------------------------------------------------------------------------------------------

def _originator_table(data: AuditData) -> AnnexTable:
    d, t, trail = data.declared, N618, data.audit_trail
    msgs = trail.messages if trail else []
    udp = [m for m in msgs if m.transport == "udp"]
    tls = [m for m in msgs if m.transport == "tls"]
    versions = sorted({c.tls_version for c in (trail.connections if trail else []) if c.tls_version})
    conn_ev = [c.evidence for c in (trail.connections if trail else []) if c.evidence]
    nothing = "no audit message received (collector not run or product not pointed at it)"

    def comment(observed: str | None, ev: list[str]) -> Cell:
        return cells.verified(observed, ev) if observed else cells.not_observed(nothing if not msgs else "not observed")

    rows: list[list[Cell]] = []
    for label, observed, ev in [
        ("Remote Port number", f"sent to the collector's UDP port {trail.udp_port}" if udp and trail else None, _ev(udp)),
        ("Remote secured port number", f"sent to the collector's TLS port {trail.tls_port}" if tls and trail else None, _ev(tls)),
        ("Remote Host name/IP", f"sent to {trail.bind}" if msgs and trail else None, _ev(msgs)),
    ]:
        rows.append([cells.label(label), _col(d, t, label, "Configurable"),
                     cells.reconcile(d, t, label, None), comment(observed, ev)])
    rows.append([cells.label("UDP Protocol"), _col(d, t, "UDP Protocol", "Configurable"),
                 cells.reconcile(d, t, "UDP Protocol", None),
                 comment(f"used: {len(udp)} messages over UDP" if udp else None, _ev(udp))])
    tls_obs = ("TLS" if tls else None)
    rows.append([cells.label("TLS Protocol"), _col(d, t, "TLS Protocol", "Configurable"),
                 cells.reconcile(d, t, "TLS Protocol", tls_obs, conn_ev),
                 comment(f"{', '.join(versions) or 'TLS'}; {len(tls)} messages" if tls else None, conn_ev)])
    largest = max((m.size for m in msgs), default=0)
    big = [m for m in msgs if m.size == largest]
    rows.append([cells.label("Maximum Size sent"), _col(d, t, "Maximum Size sent", "Configurable"),
                 cells.reconcile(d, t, "Maximum Size sent", None),
                 comment(f"largest message received: {largest} octets" if msgs else None, _ev(big, 3))])
    return AnnexTable(id=t, title="Audit Trail Originator Parameters", columns=SYSLOG_COLS, rows=rows,
                      notes=["Observed from the messages the product sent to the dcsaudit collector."])


def _collector_table(data: AuditData) -> AnnexTable:
    d, t = data.declared, N619
    udp_eps = _syslog_endpoints(data, "syslog-udp")
    tls_eps = _syslog_endpoints(data, "syslog-tls")
    sent_tls = _delivered(data, "tls")
    sent_udp = _delivered(data, "udp")
    if not (udp_eps or tls_eps or d.get(t)):
        return AnnexTable(id=t, title="Audit Trail Collector Parameters", columns=SYSLOG_COLS,
                          empty_reason="no syslog collector endpoint found on the product and none declared")

    def ep_cell(eps: list[Endpoint], what: str) -> Cell:
        if not eps:
            return cells.not_observed(f"no {what} syslog endpoint found")
        return cells.verified(", ".join(f"{e.host}:{e.port}/{e.protocol}" for e in eps),
                              [x for e in eps for x in e.evidence])

    rows: list[list[Cell]] = []
    rows.append([cells.label("Local Listening Port Number"), _col(d, t, "Local Listening Port Number", "Configurable"),
                 cells.reconcile(d, t, "Local Listening Port Number", None), ep_cell(udp_eps, "UDP")])
    rows.append([cells.label("Local Listening Secured port number"),
                 _col(d, t, "Local Listening Secured port number", "Configurable"),
                 cells.reconcile(d, t, "Local Listening Secured port number", None), ep_cell(tls_eps, "TLS")])
    hosts = sorted({e.host for e in udp_eps + tls_eps})
    rows.append([cells.label("Local Host Name/IP"), _col(d, t, "Local Host Name/IP", "Configurable"),
                 cells.reconcile(d, t, "Local Host Name/IP", None),
                 cells.verified(", ".join(hosts), [x for e in udp_eps + tls_eps for x in e.evidence])
                 if hosts else cells.not_observed()])
    rows.append([cells.label("UDP Protocol"), _col(d, t, "UDP Protocol", "Configurable"),
                 cells.reconcile(d, t, "UDP Protocol", None),
                 cells.verified("UDP syslog port open" + ("; test message sent" if sent_udp else ""),
                                [x for e in udp_eps for x in e.evidence] + [x for r in sent_udp for x in r.evidence])
                 if udp_eps else cells.not_observed("no UDP syslog port found")])
    versions: set[str] = set()
    client_cert: set[str] = set()
    for e in tls_eps:
        if e.tls is not None:
            versions.update(v for v, suites in e.tls.protocols.items() if suites)
            client_cert.add(e.tls.client_certificate)
    versions.update(r.tls_version for r in sent_tls if r.tls_version)
    tls_txt = None
    if tls_eps:
        tls_txt = "TLS" + (f" ({', '.join(sorted(versions))})" if versions else "")
        if client_cert - {"unknown"}:
            tls_txt += f"; client certificate {'/'.join(sorted(client_cert - {'unknown'}))}"
    rows.append([cells.label("TLS Protocol"), _col(d, t, "TLS Protocol", "Configurable"),
                 cells.reconcile(d, t, "TLS Protocol", "TLS" if tls_eps else None,
                                 [x for e in tls_eps for x in e.evidence]),
                 cells.verified(tls_txt, [x for e in tls_eps for x in e.evidence] + [x for r in sent_tls for x in r.evidence])
                 if tls_txt else cells.not_observed("no TLS syslog port found")])
    accepted = [r for r in sent_tls if r.accepted]
    size_cell = (cells.verified(f"accepted a {accepted[0].size}-octet message over TLS",
                                [x for r in accepted for x in r.evidence])
                 if accepted else cells.not_observed("no test message accepted (opt-in scan.intrusive.syslog_test_messages)"))
    rows.append([cells.label("Maximum Size Received"), _col(d, t, "Maximum Size Received", "Configurable"),
                 cells.reconcile(d, t, "Maximum Size Received", None), size_cell])
    return AnnexTable(id=t, title="Audit Trail Collector Parameters", columns=SYSLOG_COLS, rows=rows,
                      notes=["Observed from the product's syslog ports and, with opt-in, test messages sent to them."])


# -- N.8-2 -------------------------------------------------------------------------------------------

def _n82_rows(data: AuditData) -> AnnexTable:
    d, t, trail = data.declared, N82, data.audit_trail
    msgs = trail.messages if trail else []
    tls = [m for m in msgs if m.transport == "tls"]
    udp = [m for m in msgs if m.transport == "udp"]
    valid = [m for m in msgs if m.schema_valid]

    def sender(row: str, got: list[AuditMessage], good: list[AuditMessage]) -> Cell:
        if not got:
            return _col(d, t, row, "Creator/Sender", observable=True,
                        note="no audit message received" if trail else "no audit-trail collector ran")
        obs = "Y" if good else "N"
        c = _col(d, t, row, "Creator/Sender", obs, _ev(good or got))
        if not good:
            return c.model_copy(update={"note": "messages received, none valid against PS3.15 A.5.1"})
        return c

    tls_eps = _syslog_endpoints(data, "syslog-tls")
    udp_eps = _syslog_endpoints(data, "syslog-udp")

    def receiver(row: str, eps: list[Endpoint]) -> Cell:
        if eps:
            return _col(d, t, row, "Consumer/Receiver", "Y", [x for e in eps for x in e.evidence])
        return _col(d, t, row, "Consumer/Receiver", observable=True,
                    note="no syslog collector port of this transport among the audited ports")

    fmt = "Audit Trail Message Format"
    rtls = "Audit Trail Message Transmission Profile - SYSLOG-TLS"
    rudp = "Audit Trail Message Transmission Profile - SYSLOG-UDP"
    rows = [
        [cells.label(fmt), sender(fmt, msgs, valid),
         _col(d, t, fmt, "Consumer/Receiver", note="whether the product parses received messages is not visible"),
         cells.label("N.11.2.2")],
        [cells.label(rtls), sender(rtls, tls, tls), receiver(rtls, tls_eps), cells.label("N.11.2.3")],
        [cells.label(rudp), sender(rudp, udp, udp), receiver(rudp, udp_eps), cells.label("N.11.2.4")],
    ]
    return AnnexTable(id=t, title="Secure Use and User Identity Profiles",
                      columns=["Profile", "Creator/Sender", "Consumer/Receiver", "Reference"], rows=rows)


# -- N.11.2.2 ----------------------------------------------------------------------------------------

def _n112(data: AuditData) -> AnnexTable:
    d, t, trail = data.declared, N112, data.audit_trail
    msgs = trail.messages if trail else []
    by_event: dict[str, list[AuditMessage]] = defaultdict(list)
    for m in msgs:
        if m.event_id:
            by_event[m.event_id].append(m)
    triggers: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for c in (trail.correlations if trail else []):
        for i in c.matched_messages:
            eid = msgs[i].event_id if i < len(msgs) else None
            if eid:
                triggers[eid][c.trigger].append(c.action_evidence)
    known = {code for _, code in N112_ROWS}
    rows: list[list[Cell]] = []
    row_defs = list(N112_ROWS) + [(f"[Other Message] {code}", code) for code in sorted(by_event) if code not in known]
    for label, code in row_defs:
        got = by_event.get(code, [])
        if got:
            used = cells.reconcile(d, t, label, "Y", _ev(got))
        elif trail is not None and code in _expected_codes(trail) and trail.messages:
            # A trigger that should have produced this event ran and nothing came, while the channel
            # worked (the collector received other messages from the product): evidence for "N". The
            # cell cites the triggering actions and the control messages.
            ev = [m.action_evidence for m in trail.missing_events if code in m.expected_events]
            used = cells.reconcile(d, t, label, "N", ev + _ev(trail.messages, 3)).model_copy(
                update={"note": "the scan caused a trigger for this message and none arrived, while other "
                                "messages from the product did"})
        elif trail is not None and code in _expected_codes(trail):
            used = cells.reconcile(d, t, label, None, observable=True,
                                   unobservable_note="the scan caused a trigger, but the collector received no "
                                                     "message at all: a missing message proves nothing")
        else:
            used = cells.reconcile(d, t, label, None, observable=True,
                                   unobservable_note="no trigger for this message in this audit"
                                   if trail is not None else "no audit-trail collector ran")
        trig = triggers.get(code, {})
        if trig:
            txt = "; ".join(f"{name} (x{len(evs)})" for name, evs in sorted(trig.items()))
            unmatched = len(got) - sum(len(v) for v in trig.values())
            if unmatched > 0:
                txt += f"; {unmatched} without a scan trigger"
            sup = _col(d, t, label, "Supported Triggers", txt, [e for v in trig.values() for e in v])
        elif got:
            sup = _col(d, t, label, "Supported Triggers", "observed, trigger not attributed", _ev(got))
        else:
            sup = _col(d, t, label, "Supported Triggers", note="no trigger observed", observable=True)
        comment = None
        if got:
            valid = sum(1 for m in got if m.valid)
            comment = f"{len(got)} received, {valid} valid"
            errs = sorted({e.split(":")[0] for m in got for e in m.errors})
            if errs:
                comment += "; rules broken: " + ", ".join(errs[:4])
        rows.append([
            cells.label(label), used, sup,
            _col(d, t, label, "Configurable Triggers"),
            _col(d, t, label, "Configurable Message"),
            cells.verified(comment, _ev(got)) if comment
            else _col(d, t, label, "Comments", note="no message of this kind received", observable=True),
        ])
    return AnnexTable(id=t, title="DICOM Specific Audit Messages",
                      columns=["Audit Message", "Used", "Supported Triggers", "Configurable Triggers",
                               "Configurable Message", "Comments"], rows=rows,
                      notes=["Used = Y: the message was received by the dcsaudit collector during the audit. "
                             "Configurable triggers/messages cannot be seen from the network."])


def _expected_codes(trail: AuditTrail) -> set[str]:
    return {code for m in trail.missing_events if m.level == "expected" for code in m.expected_events}


def _entity_label(entity: str) -> str:
    if entity.startswith("ActiveParticipant"):
        roles = entity.split(" ", 1)[1] if " " in entity else ""
        names = [_ROLE_NAMES.get(r, r) for r in roles.split("/") if r and r != "(no role)"]
        return "Active Participant" + (f": {', '.join(names)}" if names else "")
    if entity.startswith("ParticipantObject"):
        return "Participant Object: IDTypeCode " + entity.split(" ", 1)[-1]
    return {"Event": "Event", "AuditSource": "Audit Source"}.get(entity, entity)


def _n113(data: AuditData) -> AnnexTable:
    trail = data.audit_trail
    cols = ["Real-World Entities", "Field Name", "Supported", "Value Constraints"]
    title = "Audit Message Details"
    if trail is None or not any(m.event_id for m in trail.messages):
        return AnnexTable(id=N113, title=title, columns=cols,
                          empty_reason="no DICOM audit message was received during this audit")
    events = load_rules()["events"]
    by_event: dict[str, list[AuditMessage]] = defaultdict(list)
    for m in trail.messages:
        if m.event_id:
            by_event[m.event_id].append(m)
    rows: list[list[Cell]] = []
    order = [code for _, code in N112_ROWS] + sorted(c for c in by_event if c not in events)
    for code in order:
        got = by_event.get(code)
        if not got:
            continue
        name = str(events.get(code, {}).get("name", f"Event {code}"))
        ev = _ev(got)
        rows.append([cells.label(f"{name} Message"), cells.label(""), cells.label(""), cells.label("")])
        rows.append([cells.label("Event"), cells.label("EventID"), cells.verified("Y", ev),
                     cells.verified(f'EV ({code}, DCM, "{name}")', ev)])
        values = {
            "EventActionCode": sorted({m.event_action_code for m in got if m.event_action_code}),
            "EventTypeCode": sorted({c for m in got for c in m.event_type_codes}),
            "EventOutcomeIndicator": sorted({m.event_outcome for m in got if m.event_outcome}),
        }
        entities: dict[str, list[str]] = {}
        carriers: dict[tuple[str, str], list[AuditMessage]] = defaultdict(list)  # the messages that sent a field
        for m in got:
            for ent, fields in m.fields.items():
                seen = entities.setdefault(ent, [])
                seen.extend(f for f in fields if f not in seen)
                for f in fields:
                    carriers[(ent, f)].append(m)
        for ent in sorted(entities, key=lambda e: (e != "Event", e.startswith("AuditSource"), e)):
            for f in entities[ent]:
                if ent == "Event" and f == "EventID":
                    continue
                vals = values.get(f) if ent == "Event" else None
                fev = _ev(carriers[(ent, f)])
                rows.append([cells.label(_entity_label(ent)), cells.label(f), cells.verified("Y", fev),
                             cells.verified(", ".join(vals), fev) if vals
                             else cells.not_verifiable("the constraints the product applies to this field are not "
                                                       "visible in the messages received")])
    return AnnexTable(id=N113, title=title, columns=cols, rows=rows,
                      notes=["Fields seen in the messages received during this audit; a field never sent "
                             "may still be supported."])


def tables(data: AuditData) -> list[tuple[str, AnnexTable]]:
    """(PS3.2 section id, table) pairs for the audit-trail parts of Annex N."""
    return [
        ("N.6.6", _originator_table(data)),
        ("N.6.6", _collector_table(data)),
        ("N.8.4.1", _n82_rows(data)),
        ("N.11.2.2", _n112(data)),
        ("N.11.2.2", _n113(data)),
    ]
