"""Annex tables from the DICOM association audit and ``listen`` captures (PS3.2 2024d Annex N):

- N.6.1 Table N.6-1 General Configuration Parameters (association limits and timers as measured)
- N.6.2.x service tables (N.6-2 Worklist, N.6-3 MPPS, N.6-6 Storage, N.6-7 Storage Commitment,
  N.6-8 Query/Retrieve) for services whose presentation contexts an AE accepted
- N.7.1.1 Table N.7-1 General Association Parameters (implementation identity, Max PDU, ARTIM)
- N.8.4.1 Table N.8-2, the four User Identity profile rows (PS3.15 B.4–B.7)
- N.8.5.1 Table N.8-8 (initiator, from ``listen``) and N.8.5.2 Table N.8-9 (acceptor)

Declared values: ``data.declared[table_id][row_label]`` for a row's main value and
``data.declared[table_id]["<row label> | <column heading>"]`` for other columns.
"""

from __future__ import annotations

from collections.abc import Callable

from dcsaudit.annex import cells
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import AnnexTable, Cell
from dcsaudit.models.dicom import ApplicationEntity, IdentityTypeResult, Initiator
from dcsaudit.rules.sop_classes import service_of

CONFIG_COLS = ["Parameter", "Configurable", "Default Value", "Comments"]
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


def _ok(data: AuditData) -> list[ApplicationEntity]:
    return [a for a in data.application_entities if a.error is None]


def _where(a: ApplicationEntity) -> str:
    return f"{a.ae_title}@{a.host}:{a.port}"


def _per_ae(aes: list[ApplicationEntity], value: Callable[[ApplicationEntity], tuple[str, list[str]] | None],
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


def _config_row(data: AuditData, table: str, row: str, observed: str | None, ev: list[str], comment: str = "",
                note: str = "not verifiable from the network", observable: bool = False) -> list[Cell]:
    return [
        cells.label(row),
        cells.reconcile(data.declared, table, f"{row} | Configurable", None),
        cells.reconcile(data.declared, table, row, observed, ev, unobservable_note=note, observable=observable),
        cells.reconcile(data.declared, table, f"{row} | Comments", comment or None, ev if comment else []),
    ]


def _timer(name: str) -> Callable[[ApplicationEntity], tuple[str, list[str]] | None]:
    """A measured timer of one AE with the evidence of its own measurement."""
    def value(a: ApplicationEntity) -> tuple[str, list[str]] | None:
        t = a.timeouts.get(name)
        if t is None or t.evidence is None:
            return None
        if t.seconds is not None:
            return f"{t.seconds:g} s", [t.evidence]
        return (f"> {t.cap_seconds:g} s", [t.evidence]) if t.exceeded_cap else None
    return value


def _max_associations(a: ApplicationEntity) -> tuple[str, list[str]] | None:
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
        [cells.label("General Parameters"), cells.label(""), cells.label(""), cells.label("")],
        _config_row(data, t, "Timeout waiting for acceptance or rejection Response to an Association Open Request. "
                    "(Application-Level timeout)", None, [], note=requestor),
        _config_row(data, t, "Timeout waiting for a response to an Association release request (Application Level Timeout)",
                    None, [], note=requestor),
        # Only a DIMSE request the acceptor itself waits on measures this; the idle timer is another row.
        _config_row(data, t, "General DIMSE level timeout Values", None, [], observable=True,
                    note="not measured: it needs a DIMSE request the product waits on (e.g. a C-STORE sub-operation "
                    "of its C-GET); dcsaudit sends no DIMSE request other than C-ECHO"),
        [cells.label("DICOM Services Parameters"), cells.label(""), cells.label(""), cells.label("")],
        _config_row(data, t, "Maximum number of simultaneous Associations accepted", max_assoc, max_ev,
                    "opened until the first (2, 3, x) refusal or the configured cap, counted twice" if max_assoc else "",
                    note=_intrusive_note(aes, "maximum associations", max_notes), observable=True),
        [cells.label("Other parameters"), cells.label(""), cells.label(""), cells.label("")],
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


def _reference(pick: Callable[[ApplicationEntity], str | None]) -> Callable[[ApplicationEntity], tuple[str, list[str]] | None]:
    """A value read from the AE's accepted reference association, with that association as evidence."""
    def value(a: ApplicationEntity) -> tuple[str, list[str]] | None:
        v = pick(a)
        return None if v is None or a.reference_evidence is None else (v, [a.reference_evidence])
    return value


def n71(data: AuditData) -> AnnexTable:
    aes = _ok(data)
    t = "N.7-1"
    accepted = [a for a in aes if a.reference_evidence is not None]
    ctx_val = APPLICATION_CONTEXT if accepted else None
    ctx_ev = [a.reference_evidence for a in accepted if a.reference_evidence]
    uid, uid_ev = _per_ae(aes, _reference(lambda a: a.implementation_class_uid))
    ver, ver_ev = _per_ae(aes, _reference(lambda a: a.implementation_version_name))
    pdu, pdu_ev = _per_ae(aes, _reference(lambda a: None if a.max_pdu_length is None else
                                          ("unlimited (0)" if a.max_pdu_length == 0 else str(a.max_pdu_length))))
    artim, artim_ev = _per_ae(aes, _timer("artim"), name_each=True)
    acc, acc_ev = _per_ae(aes, _max_associations, name_each=len(aes) > 1)
    impl = _per_ae(aes, _reference(lambda a: a.implementation))[0]
    max_notes = _max_associations_notes(aes)

    def row(name: str, observed: str | None, ev: list[str], note: str = "not verifiable from the network",
            comment: str = "", observable: bool = False) -> list[Cell]:
        c = cells.reconcile(data.declared, t, name, observed, ev, unobservable_note=note, observable=observable)
        if comment:
            c = c.model_copy(update={"note": (c.note + "; " if c.note else "") + comment})
        return [cells.label(name), c]

    rows = [
        [cells.label("Networking Services"), cells.label("")],
        row("Application Context Name", ctx_val, ctx_ev),
        row("Implementation Class UID", uid, uid_ev, comment=f"recognised as {impl}" if impl else ""),
        row("Implementation Version Name", ver, ver_ev),
        row("Maximum PDU Length", pdu, pdu_ev, comment="as announced in A-ASSOCIATE-AC" if pdu else ""),
        row("ARTIM Timeout", artim, artim_ev, _intrusive_note(aes, "ARTIM"), observable=True),
        row("Maximum number of simultaneous Associations as Association Initiator", None, [],
            "the number of associations a product opens is not observable"),
        row("Maximum number of simultaneous Associations as Association Acceptor", acc, acc_ev,
            _intrusive_note(aes, "maximum associations", max_notes), observable=True),
        row("Maximum number of outstanding asynchronous Transactions", None, [],
            "not probed: dcsaudit does not propose Asynchronous Operations Window", observable=True),
    ]
    return AnnexTable(id=t, title="General Association Parameters", columns=["Name", "Value"], rows=rows,
                      empty_reason="" if aes else "no DICOM AE was audited")


# N.6.2.x: section, table id, title, service
SERVICE_TABLES = [
    ("N.6.2.1", "N.6-2", "Worklist Service Parameters", "worklist"),
    ("N.6.2.2", "N.6-3", "MPPS Service Parameters", "mpps"),
    ("N.6.2.5", "N.6-6", "Storage Service Parameters", "storage"),
    ("N.6.2.6", "N.6-7", "Storage Commitment Service Parameters", "storage_commitment"),
    ("N.6.2.7", "N.6-8", "Query/Retrieve Service Parameters", "query_retrieve"),
]


def service_tables(data: AuditData) -> list[tuple[str, AnnexTable]]:
    out: list[tuple[str, AnnexTable]] = []
    aes = _ok(data)
    for section, t, title, service in SERVICE_TABLES:
        rows: list[list[Cell]] = []
        for a in aes:
            accepted = [c for c in a.presentation_contexts if c.accepted and service_of(c.abstract_syntax) == service]
            if not accepted:
                continue
            ev = [a.reference_evidence] if a.reference_evidence else []
            called_comment = ("any Called AE Title is accepted" if a.accepts_any_called_ae
                              else "other Called AE Titles are refused" if a.accepts_any_called_ae is False else "")
            rows.append(_config_row(data, t, "Called AE Title (SCP)", a.ae_title, ev, called_comment))
            rows.append(_config_row(data, t, "TLS-Secured Port" if a.tls else "Port", str(a.port), ev))
            names = ", ".join(c.name for c in accepted)
            rows.append(_config_row(data, t, "Supported SOP Classes as SCP (probed)", names, ev,
                                    "accepted presentation contexts from the audit's list"))
        if rows:
            out.append((section, AnnexTable(id=t, title=title, columns=CONFIG_COLS, rows=rows,
                                            notes=["Local Configuration Parameters, as observed on the wire"])))
    return out


def _initiator_types(inits: list[Initiator]) -> set[int]:
    return {i.user_identity_type for i in inits if i.user_identity_type is not None}


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


def n82(data: AuditData) -> AnnexTable:
    t = "N.8-2"
    aes = _ok(data)
    inits = data.initiators
    sent = _initiator_types(inits)
    init_ev = [e for i in inits for e in i.evidence[:1]]
    rows = []
    for name, ty in IDENTITY_PROFILES:
        sender = ("Y" if ty in sent else "N") if inits else None
        receiver, recv_ev, recv_note = _acceptor_support(aes, ty)
        recv = cells.reconcile(data.declared, t, f"{name} | Consumer/Receiver", receiver, recv_ev,
                               unobservable_note=recv_note, observable=True)
        if receiver is not None and recv_note:
            recv = recv.model_copy(update={"note": recv_note})
        rows.append([
            cells.label(name),
            cells.reconcile(data.declared, t, f"{name} | Creator/Sender", sender, init_ev,
                            unobservable_note="no association captured by dcsaudit listen", observable=True),
            recv,
            cells.label("N.8.5"),
        ])
    return AnnexTable(id=t, title="Secure Use and User Identity Profiles",
                      columns=["Profile", "Creator/Sender", "Consumer/Receiver", "Reference"], rows=rows)


def n88(data: AuditData) -> AnnexTable:
    t = "N.8-8"
    inits = data.initiators
    ev = [e for i in inits for e in i.evidence[:1]]
    types = sorted(_initiator_types(inits))
    pos = sorted({int(bool(i.positive_response_requested)) for i in inits if i.user_identity_type is not None})
    note = "no association captured by dcsaudit listen"
    sup = ("Y" if types else "N") if inits else None
    rows = [
        [cells.label("User-Identity-Type"),
         cells.reconcile(data.declared, t, "User-Identity-Type | Supported", sup, ev, unobservable_note=note, observable=True),
         cells.reconcile(data.declared, t, "User-Identity-Type", ", ".join(map(str, types)) if types else None, ev,
                         unobservable_note=note, observable=True)],
        [cells.label("Positive-response-requested"),
         cells.reconcile(data.declared, t, "Positive-response-requested | Supported", sup, ev, unobservable_note=note, observable=True),
         cells.reconcile(data.declared, t, "Positive-response-requested", ", ".join(map(str, pos)) if pos else None, ev,
                         unobservable_note=note, observable=True)],
    ]
    return AnnexTable(id=t, title="User Identity Negotiation as Association Initiator",
                      columns=["User Identity Negotiation", "Supported", "Requested Value"], rows=rows)


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
    """(PS3.2 section id, table) pairs for the builder."""
    return [("N.6.1", n61(data)), *service_tables(data), ("N.7.1.1", n71(data)), ("N.8.4.1", n82(data)),
            ("N.8.5", n88(data)), ("N.8.5", n89(data))]
