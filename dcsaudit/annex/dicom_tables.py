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
from dcsaudit.models.dicom import ApplicationEntity, Initiator
from dcsaudit.probes.dicom_sop import service_of

CONFIG_COLS = ["Parameter", "Configurable", "Default Value", "Comments"]
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


def _ok(data: AuditData) -> list[ApplicationEntity]:
    return [a for a in data.application_entities if a.error is None]


def _per_ae(aes: list[ApplicationEntity], value: Callable[[ApplicationEntity], str | None]) -> tuple[str | None, list[str]]:
    """One value if every AE agrees, else 'AE: value' lines; with the evidence of the AEs that gave one."""
    pairs = [(a, v) for a in aes if (v := value(a)) is not None]
    if not pairs:
        return None, []
    values = {v for _, v in pairs}
    ev = [e for a, _ in pairs for e in a.evidence[:2]]
    if len(values) == 1:
        return values.pop(), ev
    return "; ".join(f"{a.ae_title}@{a.port}: {v}" for a, v in pairs), ev


def _config_row(data: AuditData, table: str, row: str, observed: str | None, ev: list[str], comment: str = "",
                note: str = "not verifiable from the network") -> list[Cell]:
    return [
        cells.label(row),
        cells.reconcile(data.declared, table, f"{row} | Configurable", None),
        cells.reconcile(data.declared, table, row, observed, ev, unobservable_note=note),
        cells.reconcile(data.declared, table, f"{row} | Comments", comment or None, ev if comment else []),
    ]


def _timer(a: ApplicationEntity, name: str) -> str | None:
    t = a.timeouts.get(name)
    if t is None:
        return None
    if t.seconds is not None:
        return f"{t.seconds:g} s"
    return f"> {t.cap_seconds:g} s" if t.exceeded_cap else None


def n61(data: AuditData) -> AnnexTable:
    aes = _ok(data)
    t = "N.6-1"
    max_assoc, max_ev = _per_ae(aes, lambda a: None if a.max_associations is None else
                                (f"≥ {a.max_associations}" if a.max_associations_reached_cap else str(a.max_associations)))
    idle, idle_ev = _per_ae(aes, lambda a: _timer(a, "idle_association"))
    artim, artim_ev = _per_ae(aes, lambda a: _timer(a, "artim"))
    request, req_ev = _per_ae(aes, lambda a: _timer(a, "association_request"))
    intrusive_note = "not measured (scan.intrusive is off)" if aes else "no DICOM AE audited"
    rows = [
        [cells.label("General Parameters"), cells.label(""), cells.label(""), cells.label("")],
        _config_row(data, t, "Timeout waiting for acceptance or rejection Response to an Association Open Request. "
                    "(Application-Level timeout)", None, [], note="a requestor-side timer; not observable as acceptor"),
        _config_row(data, t, "Timeout waiting for a response to an Association release request (Application Level Timeout)",
                    None, [], note="a requestor-side timer; not observable as acceptor"),
        _config_row(data, t, "General DIMSE level timeout Values", idle, idle_ev,
                    "observed: an idle association is ended by the acceptor after this time" if idle else "",
                    note=intrusive_note),
        [cells.label("DICOM Services Parameters"), cells.label(""), cells.label(""), cells.label("")],
        _config_row(data, t, "Maximum number of simultaneous Associations accepted", max_assoc, max_ev,
                    "opened until the first refusal or the configured cap" if max_assoc else "", note=intrusive_note),
        [cells.label("Other parameters"), cells.label(""), cells.label(""), cells.label("")],
        _config_row(data, t, "ARTIM timeout (no A-ASSOCIATE-RQ after TCP connect)", artim, artim_ev,
                    "PS3.8 §9.1.5; measured" if artim else "", note=intrusive_note),
        _config_row(data, t, "Timeout for an incomplete A-ASSOCIATE-RQ", request, req_ev,
                    "measured with half a PDU" if request else "", note=intrusive_note),
    ]
    return AnnexTable(id=t, title="General Configuration Parameters", columns=CONFIG_COLS, rows=rows)


def n71(data: AuditData) -> AnnexTable:
    aes = _ok(data)
    t = "N.7-1"
    accepted = [a for a in aes if any(x.outcome == "accepted" for x in a.attempts)]
    ctx_val = APPLICATION_CONTEXT if accepted else None
    ctx_ev = [e for a in accepted for e in a.evidence[:1]]
    uid, uid_ev = _per_ae(aes, lambda a: a.implementation_class_uid)
    ver, ver_ev = _per_ae(aes, lambda a: a.implementation_version_name)
    pdu, pdu_ev = _per_ae(aes, lambda a: None if a.max_pdu_length is None else
                          ("unlimited (0)" if a.max_pdu_length == 0 else str(a.max_pdu_length)))
    artim, artim_ev = _per_ae(aes, lambda a: _timer(a, "artim"))
    acc, acc_ev = _per_ae(aes, lambda a: None if a.max_associations is None else
                          (f"≥ {a.max_associations}" if a.max_associations_reached_cap else str(a.max_associations)))
    impl = _per_ae(aes, lambda a: a.implementation)[0]

    def row(name: str, observed: str | None, ev: list[str], note: str = "not verifiable from the network",
            comment: str = "") -> list[Cell]:
        c = cells.reconcile(data.declared, t, name, observed, ev, unobservable_note=note)
        if comment:
            c = c.model_copy(update={"note": (c.note + "; " if c.note else "") + comment})
        return [cells.label(name), c]

    not_measured = "not measured (scan.intrusive is off)"
    rows = [
        [cells.label("Networking Services"), cells.label("")],
        row("Application Context Name", ctx_val, ctx_ev),
        row("Implementation Class UID", uid, uid_ev, comment=f"recognised as {impl}" if impl else ""),
        row("Implementation Version Name", ver, ver_ev),
        row("Maximum PDU Length", pdu, pdu_ev, comment="as announced in A-ASSOCIATE-AC" if pdu else ""),
        row("ARTIM Timeout", artim, artim_ev, not_measured),
        row("Maximum number of simultaneous Associations as Association Initiator", None, [],
            "the number of associations a product opens is not observable"),
        row("Maximum number of simultaneous Associations as Association Acceptor", acc, acc_ev, not_measured),
        row("Maximum number of outstanding asynchronous Transactions", None, [],
            "not probed: dcsaudit does not propose Asynchronous Operations Window"),
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
            ev = a.evidence[:1]
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


def _acceptor_support(aes: list[ApplicationEntity], identity_type: int) -> tuple[str | None, list[str], str]:
    """Does some AE take this identity type? (value or None, evidence, note when None).

    Y when an identity of the type was accepted (valid credentials, or a positive response); N when
    every AE ignored it (accepted the association without looking). A rejected *invalid* identity
    proves support only when the AE let another type through; an acceptor that refuses every type
    looks the same on the wire whether it knows this one or not, so that stays not verifiable until
    valid credentials of the type are given.
    """
    outcomes = [(a, a.user_identity.types.get(str(identity_type), "not_tested")) for a in aes]
    tested = [(a, o) for a, o in outcomes if o != "not_tested"]
    if not tested:
        return None, [], "user identity not probed"
    ev = [e for a, _ in tested for e in a.evidence[:2]]
    if any(o == "accepted" for _, o in tested):
        return "Y", ev, ""
    # A rejection does prove support when the same AE let another identity type through: it tells
    # this type apart from the others.
    if any(o == "rejected" and any(v in ("ignored", "accepted") for k, v in a.user_identity.types.items()
                                   if k != str(identity_type)) for a, o in tested):
        return "Y", ev, ""
    if all(o == "ignored" for _, o in tested):
        return "N", ev, ""
    return None, ev, (f"type {identity_type} with invalid credentials was rejected; support cannot be told "
                      "from refusal without valid credentials of this type")


def n82(data: AuditData) -> AnnexTable:
    t = "N.8-2"
    aes = _ok(data)
    inits = data.initiators
    sent = _initiator_types(inits)
    init_ev = [e for i in inits for e in i.evidence[:1]]
    rows = []
    for name, types in (("Basic User Identity Association", (1, 2)), ("User Identity Plus Passcode Association", (2,)),
                        ("Kerberos Identity Negotiation Association", (3,)),
                        ("Generic SAML Assertion Identity Negotiation Association", (4,))):
        sender = ("Y" if sent & set(types) else "N") if inits else None
        probed = [_acceptor_support(aes, ty) for ty in types]
        support = [s for s in probed if s[0] is not None]
        receiver = ("Y" if any(s[0] == "Y" for s in support) else "N") if support else None
        recv_ev = [e for s in probed for e in s[1]]
        recv_note = "; ".join(s[2] for s in probed if s[2]) or "user identity not probed"
        rows.append([
            cells.label(name),
            cells.reconcile(data.declared, t, f"{name} | Creator/Sender", sender, init_ev,
                            unobservable_note="no association captured by dcsaudit listen"),
            cells.reconcile(data.declared, t, f"{name} | Consumer/Receiver", receiver, recv_ev,
                            unobservable_note=recv_note),
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
         cells.reconcile(data.declared, t, "User-Identity-Type | Supported", sup, ev, unobservable_note=note),
         cells.reconcile(data.declared, t, "User-Identity-Type", ", ".join(map(str, types)) if types else None, ev,
                         unobservable_note=note)],
        [cells.label("Positive-response-requested"),
         cells.reconcile(data.declared, t, "Positive-response-requested | Supported", sup, ev, unobservable_note=note),
         cells.reconcile(data.declared, t, "Positive-response-requested", ", ".join(map(str, pos)) if pos else None, ev,
                         unobservable_note=note)],
    ]
    return AnnexTable(id=t, title="User Identity Negotiation as Association Initiator",
                      columns=["User Identity Negotiation", "Supported", "Requested Value"], rows=rows)


def n89(data: AuditData) -> AnnexTable:
    t = "N.8-9"
    aes = _ok(data)
    per_type = {ty: _acceptor_support(aes, ty) for ty in range(1, 6)}
    tested = {ty: s for ty, s in per_type.items() if s[0] is not None}
    supported = [str(ty) for ty, s in tested.items() if s[0] == "Y"]
    ev = [e for s in tested.values() for e in s[1]]
    sup = ("Y" if supported else "N") if tested else None
    notes = []
    for a in aes:
        u = a.user_identity
        if u.support != "unknown":
            notes.append(f"{a.ae_title}@{a.host}:{a.port}: {u.support.replace('_', ' ')}"
                         + (f", reject coding {u.reject_coding}" if u.reject_coding != "none" else ""))
    rows = [[
        cells.label("User-Identity-Type"),
        cells.reconcile(data.declared, t, "User-Identity-Type | Supported", sup, ev,
                        unobservable_note="user identity not probed"),
        cells.reconcile(data.declared, t, "User-Identity-Type", ", ".join(supported) if supported else None, ev,
                        unobservable_note="user identity not probed" if not tested else "no type is processed"),
    ]]
    return AnnexTable(id=t, title="User Identity Negotiation as Association Acceptor",
                      columns=["User Identity Negotiation", "Supported", "Supported Value"], rows=rows, notes=notes)


def tables(data: AuditData) -> list[tuple[str, AnnexTable]]:
    """(PS3.2 section id, table) pairs for the builder."""
    return [("N.6.1", n61(data)), *service_tables(data), ("N.7.1.1", n71(data)), ("N.8.4.1", n82(data)),
            ("N.8.5", n88(data)), ("N.8.5", n89(data))]
