"""PS3.2 N.8.4.2 (Table N.8-3) and N.11.2.5 (Tables N.11.2.5-1/-2/-3, N.11-4, N.11-5) from the TLS audit.

Corrections to the PS3.2 2024d template (checked against the five TLS 1.3 suites of RFC 8446 §B.4 and DCMTK's B.13 list): Table N.11.2.5-1 prints
TLS_AES_128_GCM_SHA256 twice, the second is TLS_AES_128_CCM_SHA256; Table N.11-4 repeats
TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 and TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256 and lacks
TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 and TLS_ECDHE_ECDSA_WITH_AES_128_CCM. The tables here are
built from observation, so they list what the server accepted (each suite once) and say so in notes.

Receiver columns come from the endpoints' TLS facts, Sender columns from the ClientHellos the product
sent to ``dcsaudit listen`` (``data.initiators[].tls_offer``); both are judged here by the one TLS rule
book (``dcsaudit.rules.tls_profiles``), the same the checks use.
"""

from __future__ import annotations

from dcsaudit.annex.cells import label, not_observed, not_verifiable, reconcile, verified
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import AnnexTable, Cell
from dcsaudit.models.dicom import Initiator, TlsOffer
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TLS_VERSIONS, ProfileVerdict, TlsResult
from dcsaudit.rules import tls_profiles, tls_suites

SUFFIX = " Secure Transport Connection Profile"
TYPO_NOTE_13 = ("PS3.2 2024d prints TLS_AES_128_GCM_SHA256 twice in this table; the second is "
                "TLS_AES_128_CCM_SHA256 (corrected). Rows list the suites observed.")
TYPO_NOTE_12 = ("PS3.2 2024d repeats TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 and TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256 "
                "and omits TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 and TLS_ECDHE_ECDSA_WITH_AES_128_CCM (corrected per "
                "PS3.15 B.13 / DCMTK). Rows list the suites observed.")


def _tls_endpoints(data: AuditData) -> list[tuple[Endpoint, TlsResult]]:
    eps = [(e, e.tls) for e in data.endpoints if e.tls is not None and e.tls.error is None and e.tls.accepted_versions()]
    return sorted(eps, key=lambda p: (p[0].service != "dicom-tls", p[0].host, p[0].port))


def _secured_aes(data: AuditData, eps: list[Endpoint]) -> str:
    keys = {(e.host, e.port) for e in eps}
    aes = [ae.label() for ae in data.application_entities if (ae.host, ae.port) in keys]
    return ", ".join(sorted(set(aes))) or ", ".join(f"{e.host}:{e.port}" for e in eps)


# Rules that bind a TLS server only, skipped when the product is judged as a TLS client from its
# ClientHello: a server shall prefer TLS 1.3 (PS3.15 B.12) and TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (RFC 9325
# §4.2.1), and servers shall support all TLS 1.3 suites while clients need at least one (PS3.15 B.13).
SERVER_ONLY_RULES = frozenset({"prefer_tls13", "preferred_suite", "tls13_all_suites"})


def _client_book() -> tls_profiles.ProfileBook:
    book = tls_profiles.load_profiles()
    return book.model_copy(update={"profiles": [
        p.model_copy(update={"rules": [r for r in p.rules if r.kind not in SERVER_ONLY_RULES]})
        for p in book.profiles]})


def _offer_as_result(offer: TlsOffer) -> TlsResult | None:
    """The ClientHello's offer as facts the rule book judges: per offered version, the offered suites that
    version can negotiate, in the client's order (the rule book's registry decides which suite is TLS 1.3,
    RFC 8446 §B.4; signalling values and GREASE are no suites). A client that offers TLS 1.2 and SHA-1
    signature schemes is judged on them (RFC 9155 §2: clients MUST NOT include them)."""
    known = tls_suites.suites_by_name()
    versions = [v for v in offer.versions if v in TLS_VERSIONS]
    suites = [known[s] for s in offer.cipher_suites if s in known and not known[s].sslv2]
    if not versions or not suites:
        return None
    rank = {v: i for i, v in enumerate(TLS_VERSIONS)}
    rank["TLSv1"] = rank["TLSv1.0"]  # the registry's name for suites TLS 1.0 defines
    protocols = {v: [c.iana for c in suites if (c.tls13 if v == "TLSv1.3"
                                                 else not c.tls13 and rank.get(c.protocol, 0) <= rank[v])]
                 for v in versions}
    sigalgs = list(offer.signature_algorithms)
    if versions == ["TLSv1.3"]:
        # A TLS 1.3-only client may list the legacy SHA-1 schemes last, for certificates (RFC 8446 §4.2.3);
        # RFC 9155 §2 forbids them to clients that offer TLS 1.2.
        sigalgs = [a for a in sigalgs if not a.endswith("_sha1")]
    return TlsResult(protocols={v: s for v, s in protocols.items() if s}, groups=list(offer.groups),
                     signature_algorithms=sigalgs)


def _client_offers(data: AuditData) -> list[tuple[list[Initiator], TlsOffer, TlsResult]]:
    """Distinct ClientHello offers the product sent to dcsaudit listen (same peer and same offer: one),
    with the captured connections that carried each."""
    groups: dict[tuple[object, ...], list[Initiator]] = {}
    for i in data.initiators:
        o = i.tls_offer
        if o is not None and o.cipher_suites:
            key = (i.peer, tuple(o.versions), tuple(o.cipher_suites), tuple(o.groups), tuple(o.signature_algorithms))
            groups.setdefault(key, []).append(i)
    out = []
    for inits in groups.values():
        offer = inits[0].tls_offer
        assert offer is not None
        r = _offer_as_result(offer)
        if r is not None:
            out.append((inits, offer, r))
    return out


def n8_3(data: AuditData) -> AnnexTable:
    eps = _tls_endpoints(data)
    book = tls_profiles.load_profiles()
    verdicts = [tls_profiles.evaluate(r, book) for _e, r in eps]
    client_book = _client_book()
    judged_offers = [(i, tls_profiles.evaluate(r, client_book)) for inits, _o, r in _client_offers(data)
                     for i in inits]
    rows: list[list[Cell]] = []
    for p in book.profiles:
        name = p.name + SUFFIX
        conf = [e for (e, _r), v in zip(eps, verdicts, strict=True) if p.name in v and v[p.name].conforms]
        ev = [x for _e, r in eps for x in r.evidence]
        if eps:
            receiver = reconcile(data.declared, "N.8-3", f"{name} | Receiver", "Y" if conf else "N", ev)
            if not conf:
                first = verdicts[0].get(p.name)
                why = f"does not conform (MUST-level): {'; '.join(first.reasons[:3])}" if first else ""
                receiver = receiver.model_copy(update={"note": (receiver.note + " " + why).strip()})
            else:
                dev = [w for (e, _r), v in zip(eps, verdicts, strict=True) if e in conf for w in v[p.name].warnings]
                if dev:
                    why = f"conforms with SHOULD-level deviations: {'; '.join(dict.fromkeys(dev[:3]))}"
                    receiver = receiver.model_copy(update={"note": (receiver.note + " " + why).strip()})
        else:
            receiver = reconcile(data.declared, "N.8-3", f"{name} | Receiver", None,
                                 unobservable_note="no TLS endpoint audited", observable=True)
        judged = [(i, v[p.name]) for i, v in judged_offers]
        if judged:
            ok = [i for i, v in judged if v.conforms]
            # Y cites the connections whose offer conforms; N every judged one.
            sender = reconcile(data.declared, "N.8-3", f"{name} | Sender", "Y" if ok else "N",
                               [x for i in (ok or [i for i, _v in judged]) for x in i.evidence])
            found = [r for _i, v in judged if not v.conforms for r in v.reasons] if not ok else \
                [w for _i, v in judged if v.conforms for w in v.warnings]
            if found:
                why = "does not conform (MUST-level) as TLS client" if not ok else \
                    "conforms with SHOULD-level deviations as TLS client"
                sender = sender.model_copy(update={"note": f"{why}: {'; '.join(list(dict.fromkeys(found))[:3])}"})
        else:
            claim = reconcile(data.declared, "N.8-3", f"{name} | Sender", None)
            sender = claim if claim.declared else not_observed(
                "no TLS association from the product was captured (dcsaudit listen)")
        if conf:
            secured = verified(_secured_aes(data, conf), ev)
        elif eps:  # the Receiver "N" is the measurement; no AE is secured by this profile
            secured = verified("none", ev, note="no audited TLS endpoint conforms")
        else:
            secured = not_observed("no TLS endpoint audited")
        rows.append([label(name), secured, sender, receiver, label("N.11.2.5")])
    recognised = [tls_profiles.retired_profiles(r, book) for _e, r in eps]
    retired = sorted({x for found in recognised for x in found})
    if retired:
        for rname in retired:
            holders = [e for (e, _r), found in zip(eps, recognised, strict=True) if rname in found]
            ev = [x for e, r in eps if e in holders for x in r.evidence]
            rows.append([label(rname), verified(_secured_aes(data, holders), ev), not_observed(),
                         verified("Y", ev, note="recognised by fingerprint (retired profile)"), label("N.11.2.5")])
    else:
        rows.append([label("[Any additional or retired TLS Profile]"), not_observed("none recognised"),
                     not_observed(), not_observed("none recognised") if eps else not_verifiable(), label("N.11.2.5")])
    return AnnexTable(id="N.8-3", title="Secure Transport Connection Profiles",
                      columns=["Profile", "Secured AE", "Sender", "Receiver", "Reference"], rows=rows,
                      notes=["Receiver: judged from handshakes with each TLS port; Sender: from ClientHellos the "
                             "product sent to dcsaudit listen. Reasons for N are in the cell notes.",
                             "Y means no MUST-level rule of the profile fails; SHOULD-level deviations (e.g. CBC "
                             "suites with a SHA-1 MAC, which RFC 9325 §4.2 says SHOULD NOT be used unless "
                             "encrypt_then_mac is negotiated, and which DCMTK, the reference implementation, "
                             "refuses outright) leave it Y as \"conforms with SHOULD-level deviations\" and are "
                             "listed in the cell note."])


def _profile_label(verdicts: dict[str, ProfileVerdict], ep: Endpoint, many: bool) -> str:
    names = [n for n, v in verdicts.items() if v.conforms]
    base = " / ".join(n + SUFFIX for n in names) if names else "No conforming profile (observed)"
    return f"{base} — {ep.host}:{ep.port}" if many else base


def _order_cell(i: int, pref: str, ev: list[str]) -> Cell:
    if pref == "server":
        return verified(str(i + 1), ev)
    if pref == "client":
        return verified("client order", ev, note="the server follows the client's preference")
    return not_observed("order could not be determined (single item or inconsistent answers)")


def _client_items(offer: TlsOffer, r: TlsResult, pick: str) -> list[str]:
    """What the ClientHello offered for one table, in the product's order (TLS 1.3 lists only when the
    product offered TLS 1.3)."""
    if pick == "tls12":
        return r.protocols.get("TLSv1.2", [])
    if "TLSv1.3" not in r.protocols:
        return []
    if pick == "tls13":
        return r.protocols["TLSv1.3"]
    if pick == "kx13":
        return [_kx_name(g) for g in offer.groups]
    return [_sig_name(s) for s in offer.signature_algorithms]


def _client_rows(data: AuditData, pick: str) -> list[list[Cell]]:
    """Rows for the product as TLS client: its ClientHello to dcsaudit listen, judged by the client rules,
    in the order it offered them (a ClientHello lists them by preference, RFC 8446 §4.1.2, §4.2.3, §4.2.7)."""
    rows: list[list[Cell]] = []
    book = _client_book()
    for inits, offer, r in _client_offers(data):
        items = _client_items(offer, r, pick)
        ev = list(dict.fromkeys(x for i in inits for x in i.evidence))
        names = [n for n, v in tls_profiles.evaluate(r, book).items() if v.conforms]
        base = " / ".join(n + SUFFIX for n in names) if names else "No conforming profile (observed)"
        who = ", ".join(sorted({i.calling_ae for i in inits if i.calling_ae})) or "the product"
        profile = f"{base} — as TLS client ({who} from {inits[0].peer})"
        for n, item in enumerate(items):
            rows.append([label(profile), verified(item, ev),
                         verified(str(n + 1), ev, note="the order of the product's ClientHello")])
    return rows


def _list_table(data: AuditData, table_id: str, title: str, col: str, pick: str, empty: str,
                notes: list[str]) -> AnnexTable:
    eps = _tls_endpoints(data)
    rows: list[list[Cell]] = []
    for ep, r in eps:
        items, pref = _items(r, pick)
        profile = _profile_label(tls_profiles.evaluate(r), ep, len(eps) > 1) if items else ""
        for i, item in enumerate(items):
            rows.append([label(profile), verified(item, r.evidence),
                         _order_cell(i, pref, r.evidence)])
    client = _client_rows(data, pick)
    if client:
        notes = [*notes, "Rows marked \"as TLS client\" list what the product offered in its ClientHello to "
                 "dcsaudit listen, in its own order of preference, judged by the profiles' client rules."]
    offered = any(i.tls_offer and i.tls_offer.cipher_suites for i in data.initiators)
    why = [empty if eps else "no TLS endpoint was audited",
           "none in the product's ClientHello" if offered else "no ClientHello captured by dcsaudit listen"]
    return AnnexTable(id=table_id, title=title, columns=["Profile", col,
                      "Default Preference Order (from 1=preferred to n=less preferred)"], rows=rows + client,
                      empty_reason="" if rows or client else "; ".join(x for x in why if x), notes=notes)


def _kx_name(g: str) -> str:
    if g.startswith("ffdhe") or g.startswith("DHE-"):
        return f"DHE ({g})"
    if "MLKEM" in g or "Kyber" in g:
        return f"Hybrid ECDHE+ML-KEM ({g})"
    return f"ECDHE ({g})"


def _sig_name(s: str) -> str:
    if s.startswith("ecdsa_"):
        return f"ECDSA ({s})"
    if s.startswith("rsa_pss_"):
        return f"RSASSA-PSS ({s})"
    if s.startswith("rsa_pkcs1_"):
        return f"RSASSA PKCS#1 v1.5 (RSA) ({s})"
    if s in ("ed25519", "ed448"):
        return f"EdDSA ({s})"
    return s


def _items(r: TlsResult, pick: str) -> tuple[list[str], str]:
    if pick == "tls13":
        return r.protocols.get("TLSv1.3", []), r.preference_by_version.get("TLSv1.3", "unknown")
    if pick == "tls12":
        return r.protocols.get("TLSv1.2", []), r.preference_by_version.get("TLSv1.2", "unknown")
    if pick == "kx13":
        return [_kx_name(g) for g in r.groups_tls13], r.groups_tls13_preference
    return [_sig_name(s) for s in r.signature_algorithms_tls13], r.signature_algorithms_tls13_preference


def n11_5(data: AuditData) -> AnnexTable:
    eps = _tls_endpoints(data)
    ev = [x for _e, r in eps for x in r.evidence]
    d = data.declared
    T = "N.11-5"
    rows: list[list[Cell]] = [[label("Local Secure Transport Connection Configuration"), label(""), label(""), label("")],
                              [label("Common Secure Transport Connection parameters"), label(""), label(""), label("")]]
    ports = ", ".join(f"{e.host}:{e.port}" for e, _r in eps)
    rows.append([label("Port"), reconcile(d, T, "Port Configurable", None),
                 verified(ports, ev) if eps else not_observed("no TLS port found"), label("See Section N.6 Configuration")])
    rows.append([label("A-P-ABORT provider reason in case of integrity check failure"),
                 reconcile(d, T, "A-P-ABORT Configurable", None),
                 reconcile(d, T, "A-P-ABORT provider reason in case of integrity check failure", None,
                           unobservable_note="needs a corrupted record inside an association; not tested"),
                 label("")])
    for e, r in eps:
        where = f"{e.host}:{e.port}"
        rows.append([label(f"TLS versions accepted ({where})"), reconcile(d, T, "TLS versions Configurable", None),
                     verified(", ".join(r.accepted_versions()), r.evidence), label("")])
        rows.append([label(f"Client certificate ({where})"), reconcile(d, T, "Client certificate Configurable", None),
                     verified(r.client_certificate, r.evidence), label("required / optional / not_requested")])
        rows.append([label(f"Cipher suite preference ({where})"), reconcile(d, T, "Cipher order Configurable", None),
                     verified(r.preference, r.evidence), label("server or client order")])
        if r.certificate is not None:
            c = r.certificate
            rows.append([label(f"Server certificate ({where})"), reconcile(d, T, "Certificate Configurable", None),
                         verified(f"{c.key_type} {c.key_bits} bits, {c.signature_hash}, expires {c.not_after[:10]}",
                                  r.evidence),
                         label("chain validated" if c.chain_valid else (c.chain_error or "chain not validated"))])
    for p in tls_profiles.load_profiles().profiles:
        rows.append([label(p.name + " Secure Transport Connection parameters"), label(""), label(""), label("")])
        rows.append([label("[List specific configurable parameters for the local system]"),
                     reconcile(d, T, f"{p.name} Configurable", None), reconcile(d, T, f"{p.name} Default", None),
                     label("")])
    rows.append([label("Remote Secure Transport Connection Configuration Parameters"), label(""), label(""), label("")])
    rows.append([label("Port"), reconcile(d, T, "Remote Port Configurable", None),
                 reconcile(d, T, "Remote Port", None, unobservable_note="configuration of the product as TLS client"),
                 label("See Section N.6 Configuration")])
    rows.append([label("A-P-ABORT provider reason in case of integrity check failure"),
                 reconcile(d, T, "Remote A-P-ABORT Configurable", None),
                 reconcile(d, T, "Remote A-P-ABORT provider reason", None), label("")])
    return AnnexTable(id=T, title="Secure Transport Connection Configuration",
                      columns=["Parameter/Behavior", "Configurable", "Default Value", "Comments"], rows=rows)


def tables(data: AuditData) -> list[tuple[str, AnnexTable]]:
    return [
        ("N.8.4.2", n8_3(data)),
        ("N.11.2.5", _list_table(data, "N.11.2.5-1", "Secure Transport Connection Profiles and Cipher Suites",
                                 "Cipher Suite", "tls13", "no TLS 1.3 suite accepted", [TYPO_NOTE_13])),
        ("N.11.2.5", _list_table(data, "N.11.2.5-2",
                                 "Secure Transport Connection Profiles and TLS 1.3 Key Exchange Algorithms",
                                 "Key Exchange Algorithms", "kx13", "TLS 1.3 not accepted", [])),
        ("N.11.2.5", _list_table(data, "N.11.2.5-3",
                                 "Secure Transport Connection Profiles and TLS 1.3 Signature Algorithms",
                                 "Signature Algorithms", "sig13", "TLS 1.3 not accepted", [])),
        ("N.11.2.5", _list_table(data, "N.11-4", "Secure Transport Connection Profiles and Cipher Suites",
                                 "Cipher Suite", "tls12", "no TLS 1.2 suite accepted", [TYPO_NOTE_12])),
        ("N.11.2.5", n11_5(data)),
    ]
