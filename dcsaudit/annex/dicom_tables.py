"""Annex tables from the DICOM association audit and ``listen`` captures (PS3.2 2024d Annex N):

- N.6.1 Table N.6-1 General Configuration Parameters (association limits and timers as measured)
- N.6.2.x service tables (N.6-2 Worklist, N.6-3 MPPS, N.6-4 UPS, N.6-5 IAN, N.6-6 Storage, N.6-7
  Storage Commitment, N.6-8 Query/Retrieve): one block per AE (Called AE Title once, its plain and TLS
  ports) for services whose presentation contexts it accepted, and the Calling AE Titles the product
  used for services whose contexts it proposed to ``dcsaudit listen``
- N.7.1.1 Table N.7-1 General Association Parameters, as acceptor (association audit) and as
  requestor (A-ASSOCIATE-RQ captured by ``listen``)
- N.7.2.1.2 Table N.7-2 Association Parameters, one per AE, with the accepted transfer syntaxes
- N.7.3.1.2 Table N.7-9 Communication Failure Handling as Association Acceptor, from the answers to
  the audit's unknown titles, invalid identities, association limit and silent connections
- N.8.4.1 Table N.8-2, the four User Identity profile rows (PS3.15 B.4–B.7)
- N.8.5.1 Table N.8-8 (initiator, from ``listen``) and N.8.5.2 Table N.8-9 (acceptor)

Every observed cell cites the evidence its value was derived from and nothing else: the reference
association for implementation identity and contexts, the title probe for a title answer, the timer
measurement for a timer, the captured associations for the requestor side.

Declared values: ``data.declared[table_id][row_label]`` for a row's main value and
``data.declared[table_id]["<row label> | <column heading>"]`` for other columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dcsaudit.annex import cells
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import AnnexTable, Cell
from dcsaudit.models.dicom import (
    ApplicationEntity,
    AssociationAttempt,
    IdentityTypeResult,
    Initiator,
    MeasuredTimeout,
)
from dcsaudit.rules import uid_dictionary
from dcsaudit.rules.sop_classes import Service, service_of

CONFIG_COLS = ["Parameter", "Configurable", "Default Value", "Comments"]
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
NOT_CAPTURED = "no association captured by dcsaudit listen"

Value = tuple[str, list[str]]


def _ok(data: AuditData) -> list[ApplicationEntity]:
    return [a for a in data.application_entities if a.error is None]


def _where(a: ApplicationEntity) -> str:
    label = a.label()
    return f"{label}@{a.host}:{a.port}" if label == a.ae_title.strip() else label


def _captured(data: AuditData) -> list[Initiator]:
    """Initiators whose A-ASSOCIATE-RQ reached the listener (a failed TLS handshake carries none)."""
    return [i for i in data.initiators
            if i.outcome != "tls_failure" and (i.calling_ae or i.called_ae or i.implementation_class_uid)]


def _ev(items: Iterable[Initiator]) -> list[str]:
    return list(dict.fromkeys(e for i in items for e in i.evidence))


def _per_ae(aes: list[ApplicationEntity], value: Callable[[ApplicationEntity], Value | None],
            *, name_each: bool = False) -> tuple[str | None, list[str]]:
    """One value if every AE agrees (each named when ``name_each``), else 'AE@host:port: value' parts.

    The evidence is exactly what each value was derived from, as the value function says.
    """
    pairs = [(a, v) for a in aes if (v := value(a)) is not None]
    if not pairs:
        return None, []
    ev = list(dict.fromkeys(e for _, (_, evs) in pairs for e in evs))
    values = {v for _, (v, _) in pairs}
    if name_each:
        return "; ".join(f"{v} ({_where(a)})" for a, (v, _) in pairs), ev
    if len(values) == 1:
        return values.pop(), ev
    return "; ".join(f"{_where(a)}: {v}" for a, (v, _) in pairs), ev


def _per_initiator(inits: list[Initiator], value: Callable[[Initiator], str | None]) -> tuple[str | None, list[str]]:
    """One value if every captured association agrees, else 'value (CALLING AE)' parts; evidence of those
    associations that carried a value."""
    pairs = [(i, v) for i in inits if (v := value(i)) is not None]
    if not pairs:
        return None, []
    by_value: dict[str, list[Initiator]] = {}
    for i, v in pairs:
        by_value.setdefault(v, []).append(i)
    if len(by_value) == 1:
        return next(iter(by_value)), _ev(i for i, _ in pairs)
    text = "; ".join(f"{v} ({', '.join(sorted({i.calling_ae for i in group}))})" for v, group in by_value.items())
    return text, _ev(i for i, _ in pairs)


def _config_row(data: AuditData, table: str, row: str, observed: str | None, ev: list[str], comment: str = "",
                note: str = "not verifiable from the network", observable: bool = False,
                comment_ev: list[str] | None = None) -> list[Cell]:
    """A Parameter / Configurable / Default Value / Comments row; the comment cites ``comment_ev`` (default:
    the value's evidence) because a comment can rest on another measurement than the value."""
    return [
        cells.label(row),
        cells.reconcile(data.declared, table, f"{row} | Configurable", None),
        cells.reconcile(data.declared, table, row, observed, ev, unobservable_note=note, observable=observable),
        cells.reconcile(data.declared, table, f"{row} | Comments", comment or None,
                        (ev if comment_ev is None else comment_ev) if comment else []),
    ]


def _heading(text: str, width: int) -> list[Cell]:
    return [cells.label(text)] + [cells.label("") for _ in range(width - 1)]


def _timer(name: str) -> Callable[[ApplicationEntity], Value | None]:
    """A measured timer of one AE with the evidence of its own measurement."""
    def value(a: ApplicationEntity) -> Value | None:
        t = a.timeouts.get(name)
        if t is None or t.evidence is None:
            return None
        if t.seconds is not None:
            return f"{t.seconds:g} s", [t.evidence]
        return (f"> {t.cap_seconds:g} s", [t.evidence]) if t.exceeded_cap else None
    return value


def _max_associations(a: ApplicationEntity) -> Value | None:
    if a.max_associations is None:
        return None
    return (f"≥ {a.max_associations}" if a.max_associations_reached_cap else str(a.max_associations),
            a.max_associations_evidence)


def _max_associations_notes(aes: list[ApplicationEntity]) -> list[str]:
    """Why the maximum number of associations is undetermined, per AE."""
    return [f"{_where(a)}: {a.max_associations_note}" for a in aes if a.max_associations_note]


def _intrusive_note(aes: list[ApplicationEntity], what: str, notes: list[str] | None = None) -> str:
    if not aes:
        return "no DICOM AE audited"
    if notes:
        return "; ".join(notes)
    return f"{what} not measured (scan.intrusive is off or the measurement failed; see the evidence list)"


def n61(data: AuditData) -> AnnexTable:
    aes = _ok(data)
    t = "N.6-1"
    max_assoc, max_ev = _per_ae(aes, _max_associations, name_each=len(aes) > 1)
    idle, idle_ev = _per_ae(aes, _timer("idle_association"), name_each=True)
    artim, artim_ev = _per_ae(aes, _timer("artim"), name_each=True)
    request, req_ev = _per_ae(aes, _timer("association_request"), name_each=True)
    max_notes = _max_associations_notes(aes)
    requestor = "a requestor-side timer: dcsaudit sees the product as acceptor (dcsaudit listen does not time it)"
    rows = [
        _heading("General Parameters", 4),
        _config_row(data, t, "Timeout waiting for acceptance or rejection Response to an Association Open Request. "
                    "(Application-Level timeout)", None, [], note=requestor),
        _config_row(data, t, "Timeout waiting for a response to an Association release request (Application Level Timeout)",
                    None, [], note=requestor),
        # Only a DIMSE request the acceptor itself waits on measures this; the idle timer is another row.
        _config_row(data, t, "General DIMSE level timeout Values", None, [], observable=True,
                    note="not measured: it needs a DIMSE request the product waits on (e.g. a C-STORE sub-operation "
                    "of its C-GET); dcsaudit sends no DIMSE request other than C-ECHO"),
        _heading("DICOM Services Parameters", 4),
        _config_row(data, t, "Maximum number of simultaneous Associations accepted", max_assoc, max_ev,
                    "opened until the first (2, 3, x) refusal or the configured cap, counted twice" if max_assoc else "",
                    note=_intrusive_note(aes, "maximum associations", max_notes), observable=True),
        _heading("Other parameters", 4),
        _config_row(data, t, "ARTIM timeout (no A-ASSOCIATE-RQ after TCP connect)", artim, artim_ev,
                    "PS3.8 §9.1.5; measured" if artim else "", note=_intrusive_note(aes, "ARTIM"),
                    observable=True),
        _config_row(data, t, "Timeout for an incomplete A-ASSOCIATE-RQ", request, req_ev,
                    "measured with half a PDU" if request else "", note=_intrusive_note(aes, "request timer"),
                    observable=True),
        _config_row(data, t, "Idle association timeout (acceptor ends an association without activity)", idle,
                    idle_ev, "measured on an accepted, silent association" if idle else "",
                    note=_intrusive_note(aes, "idle timer"), observable=True),
    ]
    return AnnexTable(id=t, title="General Configuration Parameters", columns=CONFIG_COLS, rows=rows)


def _reference(pick: Callable[[ApplicationEntity], str | None]) -> Callable[[ApplicationEntity], Value | None]:
    """A value read from the AE's accepted reference association, with that association as evidence."""
    def value(a: ApplicationEntity) -> Value | None:
        v = pick(a)
        return None if v is None or a.reference_evidence is None else (v, [a.reference_evidence])
    return value


def _pdu(n: int | None) -> str | None:
    return None if n is None else ("unlimited (0)" if n == 0 else str(n))


def _both_roles(acc: tuple[str | None, list[str]], req: tuple[str | None, list[str]]) -> tuple[str | None, list[str], str]:
    """(value, evidence, note) of a parameter seen as acceptor and/or as requestor, each part citing its own
    evidence; one value when both sides agree."""
    (a, a_ev), (r, r_ev) = acc, req
    if a is None and r is None:
        return None, [], ""
    if r is None:
        return a, a_ev, "as Association Acceptor (association audit)"
    if a is None:
        return r, r_ev, "as Association Requestor (A-ASSOCIATE-RQ captured by dcsaudit listen)"
    ev = list(dict.fromkeys([*a_ev, *r_ev]))
    if a == r:
        return a, ev, "the same as Association Acceptor and as Association Requestor"
    return f"as acceptor: {a}; as requestor: {r}", ev, ""


def _association_rows(data: AuditData, t: str, aes: list[ApplicationEntity], inits: list[Initiator]) -> list[list[Cell]]:
    """The Networking Services rows of N.7-1 / N.7-2 for these AEs (acceptor) and captured associations
    (requestor)."""
    accepted = [a for a in aes if a.reference_evidence is not None]
    ctx_val = APPLICATION_CONTEXT if accepted else None
    ctx_ev = [a.reference_evidence for a in accepted if a.reference_evidence]
    uid = _both_roles(_per_ae(aes, _reference(lambda a: a.implementation_class_uid)),
                      _per_initiator(inits, lambda i: i.implementation_class_uid))
    ver = _both_roles(_per_ae(aes, _reference(lambda a: a.implementation_version_name)),
                      _per_initiator(inits, lambda i: i.implementation_version_name))
    pdu = _both_roles(_per_ae(aes, _reference(lambda a: _pdu(a.max_pdu_length))),
                      _per_initiator(inits, lambda i: _pdu(i.max_pdu_length)))
    impl = {x for x in [*(a.implementation for a in accepted), *(i.implementation for i in inits)] if x}
    artim, artim_ev = _per_ae(aes, _timer("artim"), name_each=True)
    acc, acc_ev = _per_ae(aes, _max_associations, name_each=len(aes) > 1)
    max_notes = _max_associations_notes(aes)
    # Read from an accepted association (either side): observable, so ∅ with the reason when missing.
    unobserved = ("no association was accepted by an audited AE" if aes else
                  "no DICOM AE could be audited" if data.application_entities else "no DICOM AE audited") + \
        ("" if t == "N.7-2" else f" and {NOT_CAPTURED}" if not inits else "")

    def row(name: str, observed: str | None, ev: list[str], note: str = "", comment: str = "",
            observable: bool = False) -> list[Cell]:
        c = cells.reconcile(data.declared, t, name, observed, ev, unobservable_note=note or unobserved,
                            observable=observable or not note)
        if comment and observed is not None:
            c = c.model_copy(update={"note": (c.note + "; " if c.note else "") + comment})
        return [cells.label(name), c]

    def two(name: str, seen: tuple[str | None, list[str], str], comment: str = "") -> list[Cell]:
        value, ev, side = seen
        return row(name, value, ev, comment="; ".join(x for x in (side, comment) if x))

    return [
        [cells.label("Networking Services"), cells.label("")],
        row("Application Context Name", ctx_val, ctx_ev, comment="as Association Acceptor" if ctx_val else "",
            note="" if not inits else f"{unobserved} (dcsaudit listen does not record the name an initiator proposes)",
            observable=True),
        two("Implementation Class UID", uid, f"recognised as {', '.join(sorted(impl))}" if impl else ""),
        two("Implementation Version Name", ver),
        two("Maximum PDU Length", pdu, "as announced in A-ASSOCIATE-AC / A-ASSOCIATE-RQ"),
        row("ARTIM Timeout", artim, artim_ev, _intrusive_note(aes, "ARTIM"), observable=True),
        row("Maximum number of simultaneous Associations as Association Initiator", None, [],
            "the most associations a product would open at once is not observable, only those it happened to open"),
        row("Maximum number of simultaneous Associations as Association Acceptor", acc, acc_ev,
            _intrusive_note(aes, "maximum associations", max_notes), observable=True),
        row("Maximum number of outstanding asynchronous Transactions", None, [],
            "not probed: dcsaudit does not propose Asynchronous Operations Window", observable=True),
    ]


def n71(data: AuditData) -> AnnexTable:
    aes = _ok(data)
    inits = _captured(data)
    return AnnexTable(id="N.7-1", title="General Association Parameters", columns=["Name", "Value"],
                      rows=_association_rows(data, "N.7-1", aes, inits),
                      empty_reason="" if aes or inits else "no DICOM AE was audited and " + NOT_CAPTURED)


def _ae_groups(aes: list[ApplicationEntity]) -> list[list[ApplicationEntity]]:
    """AEs grouped by (host, AE title): one title served on a plain and a TLS port is one AE. Ports whose title
    names nothing (``ApplicationEntity.label``) stay apart: two products that accept any title are not one AE."""
    groups: dict[tuple[str, str], list[ApplicationEntity]] = {}
    for a in aes:
        groups.setdefault((a.host, a.label()), []).append(a)
    return [sorted(g, key=lambda a: (a.tls, a.port)) for g in groups.values()]


def _ts_name(uid: str) -> str:
    name = uid_dictionary.name(uid)
    return f"{name} ({uid})" if name and name != uid else uid


def n72(data: AuditData) -> list[AnnexTable]:
    """Table N.7-2 for each audited AE, with the transfer syntax the AE chose for each accepted context."""
    out = []
    groups = _ae_groups(_ok(data))
    titles = [g[0].label() for g in groups]
    for group in groups:
        title = group[0].label()
        suffix = f" ({group[0].host})" if titles.count(title) > 1 else ""
        rows = _association_rows(data, "N.7-2", group, [])
        contexts = [(a, c) for a in group for c in a.presentation_contexts
                    if c.accepted and c.accepted_transfer_syntax and a.reference_evidence]
        if contexts:
            rows.append([cells.label("Presentation Contexts (observed)"), cells.label("")])
            names = list(dict.fromkeys(c.name or c.abstract_syntax for _, c in contexts))
            for name in names:
                per = [(a, c) for a, c in contexts if (c.name or c.abstract_syntax) == name]
                values = {_ts_name(c.accepted_transfer_syntax or "") for _, c in per}
                value = values.pop() if len(values) == 1 else "; ".join(
                    f"{_where(a)}: {_ts_name(c.accepted_transfer_syntax or '')}" for a, c in per)
                ev = list(dict.fromkeys(a.reference_evidence for a, _ in per if a.reference_evidence))
                proposed = ", ".join(_ts_name(ts) for ts in per[0][1].transfer_syntaxes)
                cell = cells.reconcile(data.declared, "N.7-2", f"Accepted Transfer Syntax: {name}", value, ev)
                if proposed:
                    cell = cell.model_copy(update={"note": f"chosen among those proposed: {proposed}"})
                rows.append([cells.label(f"Accepted Transfer Syntax: {name}"), cell])
        out.append(AnnexTable(id="N.7-2", title=f"Association Parameters for {title}{suffix}",
                              columns=["Name", "Value"], rows=rows,
                              notes=[f"{_where(a)}{' (TLS)' if a.tls else ''}" for a in group]))
    return out


# --- N.7-9: what the acceptor answered to requests that fail -----------------------------------------------

def _response(a: AssociationAttempt) -> str | None:
    """How the acceptor answered one attempt, in PS3.8 terms; None when the answer proves nothing (busy)."""
    if a.busy:
        return None
    if a.outcome == "accepted":
        return "A-ASSOCIATE-AC (the association is accepted)"
    if a.outcome == "rejected" and a.reject is not None:
        r = a.reject
        words = ", ".join(x for x in (r.result_str, r.source_str, r.reason_str) if x)
        return f"A-ASSOCIATE-RJ ({r.result}, {r.source}, {r.reason})" + (f": {words}" if words else "")
    if a.outcome == "aborted" and a.abort is not None:
        return f"A-ABORT (source {a.abort.source}, reason {a.abort.reason}" + \
            (f" {a.abort.reason_str}" if a.abort.reason_str else "") + ")"
    return {"closed": "TCP connection closed without a PDU", "timeout": "no answer within the audit's timeout",
            "protocol_error": "an answer that is not a well-formed PDU"}.get(a.outcome)


def _attempt(purpose: str) -> Callable[[ApplicationEntity], Value | None]:
    """The answer to the AE's (last) attempt of this purpose, citing that attempt."""
    def value(ae: ApplicationEntity) -> Value | None:
        found = [a for a in ae.attempts if a.purpose == purpose and a.evidence]
        if not found:
            return None
        r = _response(found[-1])
        return None if r is None or found[-1].evidence is None else (r, [found[-1].evidence])
    return value


def _identity_refusal(ae: ApplicationEntity) -> Value | None:
    """The answers to invalid credentials that were refused, citing those attempts."""
    refused = [a for a in ae.attempts if a.purpose == "user_identity" and a.credentials == "invalid"
               and a.refused and a.evidence]
    if not refused:
        return None
    by_answer: dict[str, list[AssociationAttempt]] = {}
    for a in refused:
        if (r := _response(a)) is not None:
            by_answer.setdefault(r, []).append(a)
    if not by_answer:
        return None
    text = "; ".join(f"{r} (type {', '.join(str(a.user_identity_type) for a in group)})"
                     for r, group in by_answer.items())
    return text, [a.evidence for group in by_answer.values() for a in group if a.evidence]


def _limit_refusal(ae: ApplicationEntity) -> Value | None:
    """The answer to the association one over the limit, citing those refused attempts."""
    if ae.max_associations is None or ae.max_associations_reached_cap:
        return None
    refused = [a for a in ae.attempts if a.purpose == "max_associations" and a.outcome != "accepted" and a.evidence]
    answers = {r for a in refused if (r := _response(a)) is not None}
    if not answers:
        return None
    return "; ".join(sorted(answers)), [a.evidence for a in refused if a.evidence]


def _timer_end(name: str) -> Callable[[ApplicationEntity], Value | None]:
    ends = {"close": "the acceptor closes the TCP connection", "abort": "the acceptor sends A-ABORT",
            "reject": "the acceptor sends A-ASSOCIATE-RJ", "release": "the acceptor releases"}

    def value(a: ApplicationEntity) -> Value | None:
        t: MeasuredTimeout | None = a.timeouts.get(name)
        if t is None or t.evidence is None:
            return None
        if t.seconds is not None and t.ended_by in ends:
            return f"{ends[t.ended_by]} after {t.seconds:g} s", [t.evidence]
        if t.exceeded_cap:
            return f"connection still open after {t.cap_seconds:g} s (the measurement's cap)", [t.evidence]
        return None
    return value


def n79(data: AuditData) -> AnnexTable:
    """Table N.7-9 from the answers the association audit received (PS3.8 §9.3.4, §9.3.8, §9.1.5)."""
    t = "N.7-9"
    aes = _ok(data)
    none = "no DICOM AE audited"

    def row(name: str, value: Callable[[ApplicationEntity], Value | None], why: str) -> list[Cell]:
        v, ev = _per_ae(aes, value)
        return [cells.label(name), cells.reconcile(data.declared, t, name, v, ev,
                                                   unobservable_note=why if aes else none, observable=True)]

    probed_identity = any(a.purpose == "user_identity" for ae in aes for a in ae.attempts)
    rows = [
        [cells.label("Failure during processing of an Association request"),
         cells.reconcile(data.declared, t, "Failure during processing of an Association request", None,
                         unobservable_note="not provoked: dcsaudit does not try to cause internal errors in the "
                         "product", observable=True)],
        row("Unrecognized Called AE", _attempt("any_called_ae"),
            "not observed: the title probe got no decisive answer (product busy or no answer)"),
        row("Unrecognized Calling AE", _attempt("any_calling_ae"),
            "not observed: the title probe got no decisive answer (product busy or no answer)"),
        row("Exceed limit for number of connections supported", _limit_refusal,
            _intrusive_note(aes, "the association limit", _max_associations_notes(aes))
            if not any(a.max_associations_reached_cap for a in aes) else
            "not reached: the product accepted every association up to the audit's cap"),
        row("Invalid User Identity credentials", _identity_refusal,
            "no invalid identity was refused" if probed_identity else "user identity not probed"),
        row("No A-ASSOCIATE-RQ after TCP connect (ARTIM expiry)", _timer_end("artim"),
            _intrusive_note(aes, "ARTIM")),
        row("Incomplete A-ASSOCIATE-RQ", _timer_end("association_request"), _intrusive_note(aes, "request timer")),
    ]
    return AnnexTable(id=t, title="DICOM Communication Failure Handling as Association Acceptor",
                      columns=["Exception", "Failure response"], rows=rows,
                      notes=["Failure responses as answered to the association audit's requests; rows after "
                             "the standard's three list further cases the audit provoked."])


# --- N.6.2.x service tables ---------------------------------------------------------------------------------

# N.6.2.x: section, table id, title, service
SERVICE_TABLES: list[tuple[str, str, str, Service, str]] = [
    ("N.6.2.1", "N.6-2", "Worklist Service Parameters", "worklist", "Worklist Service"),
    ("N.6.2.2", "N.6-3", "MPPS Service Parameters", "mpps", "MPPS Service"),
    ("N.6.2.3", "N.6-4", "Unified Worklist and Procedure Step Service Parameters", "ups",
     "Unified Worklist and Procedure Step Service"),
    ("N.6.2.4", "N.6-5", "IAN Service Parameters", "ian", "Instance Availability Notification Service"),
    ("N.6.2.5", "N.6-6", "Storage Service Parameters", "storage", "Storage Service"),
    ("N.6.2.6", "N.6-7", "Storage Commitment Service Parameters", "storage_commitment", "Storage Commitment Service"),
    ("N.6.2.7", "N.6-8", "Query/Retrieve Service Parameters", "query_retrieve", "Query/Retrieve Service"),
]


def _scp_block(data: AuditData, t: str, group: list[ApplicationEntity], service: Service) -> list[list[Cell]]:
    per = [(a, [c for c in a.presentation_contexts if c.accepted and service_of(c.abstract_syntax) == service])
           for a in group]
    per = [(a, acc) for a, acc in per if acc and a.reference_evidence]
    if not per:
        return []
    rows: list[list[Cell]] = []
    title = per[0][0].ae_title
    ref = [a.reference_evidence for a, _ in per if a.reference_evidence]
    # The title answer of each port's any-called-AE probe; one comment when the ports agree.
    comments: dict[str, list[str]] = {}
    for a, _ in per:
        probe = [x for x in a.attempts if x.purpose == "any_called_ae" and x.evidence]
        if probe and a.accepts_any_called_ae is not None and probe[-1].evidence:
            text = "any Called AE Title is accepted" if a.accepts_any_called_ae else "other Called AE Titles are refused"
            comments.setdefault(text, []).append(probe[-1].evidence)
    comment = "; ".join(comments) if len(comments) == 1 else ""
    # The title is the product's where a port accepted it and refused a random one (that port's association is
    # the evidence); accepted alone it shows nothing of the product's own title (a declared one is then shown
    # as declared, never contradicted).
    measured = [a.reference_evidence for a, _ in per if a.title_measured() and a.reference_evidence]
    if measured:
        observed, note, observable = title, "", False
    elif any(a.accepts_any_called_ae for a, _ in per):
        observed, observable = None, False
        called = "the configured title" if per[0][0].configured else "the title identification guessed"
        note = (f"the product accepts any Called AE Title, so its own cannot be told from the network "
                f"('{title.strip()}', {called}, was accepted like any other)")
    else:
        observed, observable = None, True
        note = (f"'{title.strip()}' was accepted, but whether other Called AE Titles are refused was not measured, "
                "so that does not show it is the product's title")
    rows.append(_config_row(data, t, "Called AE Title (SCP)", observed, measured, comment,
                            note=note or "not verifiable from the network", observable=observable,
                            comment_ev=[e for evs in comments.values() for e in evs]))
    for tls, label in ((False, "Port"), (True, "TLS-Secured Port")):
        ports = [(a, acc) for a, acc in per if a.tls == tls]
        if ports:
            rows.append(_config_row(data, t, label, ", ".join(str(a.port) for a, _ in ports),
                                    [a.reference_evidence for a, _ in ports if a.reference_evidence]))
    names = {a.port: ", ".join(c.name or c.abstract_syntax for c in acc) for a, acc in per}
    value = next(iter(names.values())) if len(set(names.values())) == 1 else \
        "; ".join(f"{_where(a)}: {names[a.port]}" for a, _ in per)
    rows.append(_config_row(data, t, "Supported SOP Classes as SCP (probed)", value, ref,
                            "accepted presentation contexts from the audit's list"))
    return rows


def _scu_rows(data: AuditData, t: str, service: Service) -> list[list[Cell]]:
    """One 'Calling AE Title (SCU)' row per title the product used to propose contexts of this service."""
    by_title: dict[str, list[Initiator]] = {}
    for i in _captured(data):
        if any(service_of(c.abstract_syntax) == service for c in i.proposed_contexts):
            by_title.setdefault(i.calling_ae, []).append(i)
    rows = []
    for title, inits in by_title.items():
        names = list(dict.fromkeys(c.name or c.abstract_syntax for i in inits for c in i.proposed_contexts
                                   if service_of(c.abstract_syntax) == service))
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        rows.append(_config_row(data, t, "Calling AE Title (SCU)", title, _ev(inits),
                                f"proposed {len(names)} SOP class(es) of this service ({shown}) to dcsaudit listen "
                                f"in {len(inits)} association(s)"))
    return rows


def service_tables(data: AuditData) -> list[tuple[str, AnnexTable]]:
    out: list[tuple[str, AnnexTable]] = []
    groups = _ae_groups(_ok(data))
    for section, t, title, service, long_name in SERVICE_TABLES:
        scu = _scu_rows(data, t, service)
        scp = [r for g in groups for r in _scp_block(data, t, g, service)]
        if not scu and not scp:
            continue
        rows = [_heading(f"Local Configuration Parameters - {long_name}", 4), *scu, *scp]
        out.append((section, AnnexTable(id=t, title=title, columns=CONFIG_COLS, rows=rows,
                                        notes=["Local Configuration Parameters, as observed on the wire: SCP rows "
                                               "from the association audit, SCU rows from associations the "
                                               "product opened to dcsaudit listen"])))
    return out


# --- N.8: User Identity -------------------------------------------------------------------------------------

# What a classification says in the Y/N columns of N.8-2 and N.8-9. Y only where support is proven,
# N only where the type is proven not to be checked; everything else is not observed, with its reason.
def _identity_mark(identity_type: int, result: IdentityTypeResult) -> str | None:
    c = result.classification
    if c == "supported":
        return "Y"
    if c == "not_checked":
        return "N"
    if c == "accepted_unchecked":
        # PS3.15 B.4 (type 1) needs no check; for a passcode, ticket, assertion or token it means no authentication.
        return "Y" if identity_type == 1 else "N"
    return None


def _acceptor_support(aes: list[ApplicationEntity], identity_type: int) -> tuple[str | None, list[str], str]:
    """(Y/N or None, the identity attempts it rests on, the reasons where None) over the audited AEs."""
    marks = [(a, _identity_mark(identity_type, r), r) for a in aes
             if (r := a.user_identity.types.get(str(identity_type))) is not None]
    known = [(a, m, r) for a, m, r in marks if m is not None]
    reasons = "; ".join(f"{_where(a)}: type {identity_type} {r.classification.replace('_', ' ')} — {r.reason}"
                        for a, m, r in marks if m is None) or "user identity not probed"
    if not known:
        return None, [], reasons
    ev = list(dict.fromkeys(e for _, _, r in known for e in r.evidence))
    # An AE where the type was not tested says nothing against the others; an undetermined one is
    # named beside the value.
    undetermined = [a for a, m, r in marks if m is None and r.classification != "not_tested"]
    values = {m for _, m, _ in known}
    value = values.pop() if len(values) == 1 and not undetermined else \
        "; ".join(f"{_where(a)}: {m}" for a, m, _ in known)
    return value, ev, reasons if len(known) < len(marks) else ""


# PS3.2 Table N.8-2 rows in the standard's order, with the User-Identity-Type each profile is about
# (PS3.15 B.4 Basic: type 1; B.5: type 2; B.6: type 3; B.7: type 4).
IDENTITY_PROFILES = (("Basic User Identity Association", 1), ("User Identity Plus Passcode Association", 2),
                     ("Kerberos Identity Negotiation Association", 3),
                     ("Generic SAML Assertion Identity Negotiation Association", 4))


def _sender(captured: list[Initiator], identity_type: int) -> tuple[str | None, list[str], str]:
    """Y (citing the associations that carried the type), N (citing every captured association: the
    control that the capture worked), or None without any captured association."""
    if not captured:
        return None, [], NOT_CAPTURED
    sent = [i for i in captured if i.user_identity_type == identity_type]
    if sent:
        return "Y", _ev(sent), f"sent in {len(sent)} of {len(captured)} captured association(s)"
    return "N", _ev(captured), (f"not sent in any of {len(captured)} captured association(s); a product may send "
                                "it only where configured to")


def n82(data: AuditData) -> AnnexTable:
    t = "N.8-2"
    aes = _ok(data)
    captured = _captured(data)
    rows = []
    for name, ty in IDENTITY_PROFILES:
        receiver, recv_ev, recv_note = _acceptor_support(aes, ty)
        recv = cells.reconcile(data.declared, t, f"{name} | Consumer/Receiver", receiver, recv_ev,
                               unobservable_note=recv_note, observable=True)
        if receiver is not None and recv_note:
            recv = recv.model_copy(update={"note": recv_note})
        sender, send_ev, send_note = _sender(captured, ty)
        send = cells.reconcile(data.declared, t, f"{name} | Creator/Sender", sender, send_ev,
                               unobservable_note=send_note, observable=True)
        if sender is not None:
            send = send.model_copy(update={"note": send_note})
        rows.append([cells.label(name), send, recv, cells.label("N.8.5")])
    return AnnexTable(id=t, title="Secure Use and User Identity Profiles",
                      columns=["Profile", "Creator/Sender", "Consumer/Receiver", "Reference"], rows=rows)


def n88(data: AuditData) -> AnnexTable:
    t = "N.8-8"
    captured = _captured(data)
    with_id = [i for i in captured if i.user_identity_type is not None]
    types = sorted({i.user_identity_type for i in with_id if i.user_identity_type is not None})
    positive = [i for i in with_id if i.positive_response_requested]
    # Y rests on the associations that carried an identity; N on every captured association (the control).
    sup = ("Y" if with_id else "N") if captured else None
    sup_ev = _ev(with_id) if with_id else _ev(captured)
    pos_sup = ("Y" if positive else "N") if captured else None
    pos_ev = _ev(positive) if positive else (_ev(with_id) if with_id else _ev(captured))
    pos_values = sorted({int(bool(i.positive_response_requested)) for i in with_id})
    value_note = "no User Identity sub-item in any captured association" if captured else NOT_CAPTURED
    rows = [
        [cells.label("User-Identity-Type"),
         cells.reconcile(data.declared, t, "User-Identity-Type | Supported", sup, sup_ev, unobservable_note=NOT_CAPTURED,
                         observable=True),
         cells.reconcile(data.declared, t, "User-Identity-Type", ", ".join(map(str, types)) if types else None,
                         _ev(with_id), unobservable_note=value_note, observable=True)],
        [cells.label("Positive-response-requested"),
         cells.reconcile(data.declared, t, "Positive-response-requested | Supported", pos_sup, pos_ev,
                         unobservable_note=NOT_CAPTURED, observable=True),
         cells.reconcile(data.declared, t, "Positive-response-requested",
                         ", ".join(map(str, pos_values)) if pos_values else None, _ev(with_id),
                         unobservable_note=value_note, observable=True)],
    ]
    notes = [f"{len(captured)} association(s) captured by dcsaudit listen, {len(with_id)} with a User Identity "
             "sub-item"] if captured else []
    return AnnexTable(id=t, title="User Identity Negotiation as Association Initiator",
                      columns=["User Identity Negotiation", "Supported", "Requested Value"], rows=rows, notes=notes)


def n89(data: AuditData) -> AnnexTable:
    t = "N.8-9"
    aes = _ok(data)
    per_type = {ty: _acceptor_support(aes, ty) for ty in range(1, 6)}
    supported = [str(ty) for ty, (v, _, _) in per_type.items() if v == "Y"]
    # A "Y" rests on the supported types' attempts; an "N" on every type's.
    ev = list(dict.fromkeys(e for ty, (v, evs, _) in per_type.items()
                            if v is not None and (v == "Y" or not supported) for e in evs))
    undetermined = [note for _, (v, _, note) in per_type.items() if note and note != "user identity not probed"]
    if supported:
        sup: str | None = "Y"
    elif all(v == "N" for v, _, _ in per_type.values() if v is not None) and not undetermined \
            and any(v is not None for v, _, _ in per_type.values()):
        sup = "N"
    else:
        sup = None
    why = "; ".join(undetermined) or "user identity not probed"
    notes = []
    for a in aes:
        u = a.user_identity
        notes.append(f"{_where(a)}: identity " + ("required" if u.enforced else "not required" if u.enforced is False
                                                   else "requirement undetermined") + f" ({u.enforced_reason})"
                     + (f", reject coding {u.reject_coding}" if u.reject_coding != "none" else ""))
    rows = [[
        cells.label("User-Identity-Type"),
        cells.reconcile(data.declared, t, "User-Identity-Type | Supported", sup, ev, unobservable_note=why,
                        observable=True),
        cells.reconcile(data.declared, t, "User-Identity-Type",
                        ", ".join(supported) if supported else ("none" if sup == "N" else None), ev,
                        unobservable_note=why, observable=True),
    ]]
    return AnnexTable(id=t, title="User Identity Negotiation as Association Acceptor",
                      columns=["User Identity Negotiation", "Supported", "Supported Value"], rows=rows, notes=notes)


def tables(data: AuditData) -> list[tuple[str, AnnexTable]]:
    """(PS3.2 section id, table) pairs for the builder, in the standard's order."""
    return [("N.6.1", n61(data)), *service_tables(data), ("N.7.1.1", n71(data)),
            *(("N.7.2.1.2", t) for t in n72(data)), ("N.7.3.1.2", n79(data)), ("N.8.4.1", n82(data)),
            ("N.8.5.1", n88(data)), ("N.8.5.2", n89(data))]
