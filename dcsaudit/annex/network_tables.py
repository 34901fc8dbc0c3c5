"""Annex N tables from the network-service probes (issue 15):

- N.8.2 Table N.8-1 External Network Requirements: NTP, DNS, LDAP and DNS Service Discovery rows;
- N.11.1.1 (Basic Time Synchronization): the NTP servers observed (unnumbered table);
- N.11.1.3 Table N.11-1 LDAP Security Patterns, per LDAP endpoint;
- N.11.1.4 (DNS Service Discovery): each DICOM advert beside what the audit observed (unnumbered);
- N.8.4.2: client-certificate validation by the product as TLS server (unnumbered), and server-certificate
  validation by the product as TLS client, from ``listen --tls-cert-tests`` (unnumbered, cites ``listen.dicom``);
- N.6.3 and N.8.6: DICOMweb services and their web-security features (unnumbered).

The column headings of N.8-1 and N.11-1 are dcsaudit's (the PS3.2 text was not at hand to copy them).
What no probe could ever see (which servers the product uses as a client) is not verifiable (—); what a
probe could see but did not is not observed (∅) with the reason. Cells read the typed results on the
endpoints only; every ✔ cites the evidence it came from (probe families ``ntp.``, ``dns.``, ``ldap.``,
``dicomweb.``, ``tls.client_certs`` and, for "Client Certificate Requested", the TLS audit's ``tls.``).
"""

from __future__ import annotations

from dcsaudit.annex.cells import label, not_observed, not_verifiable, verified
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import AnnexTable, Cell
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.network import (
    ClientCertKind,
    ClientCertResult,
    ClientCertTrial,
    DicomwebAnswer,
    DicomwebResult,
    DicomwebTransaction,
    DnsResult,
    DnsSdAdvert,
    LdapResult,
    NtpResult,
    ServerCertKind,
)
from dcsaudit.rules import served_certs

N8_1 = "N.8-1"
N8_1_COLUMNS = ["Network Service", "Supported", "Details"]
# Row labels are unique so a vendor can declare each ("declared['N.8-1']['NTP client']").
LEAP = {0: "no warning", 1: "leap second pending (+1 s)", 2: "leap second pending (-1 s)", 3: "unsynchronised"}


def _ntp_endpoints(data: AuditData) -> list[tuple[Endpoint, NtpResult]]:
    return sorted(((e, e.ntp) for e in data.endpoints if e.ntp is not None), key=lambda p: (p[0].host, p[0].port))


def describe_ntp(ep: Endpoint, r: NtpResult) -> str:
    parts = [f"{ep.host}:{ep.port}/udp: NTPv{r.version}, stratum {r.stratum}, leap {LEAP.get(r.leap or 0, r.leap)}",
             f"reference {r.reference_id}", f"root delay {r.root_delay_ms} ms, dispersion {r.root_dispersion_ms} ms"]
    if r.mode6_answers is not None:
        parts.append("answers mode-6 control queries" + (f" (amplification x{r.mode6_amplification})"
                                                        if r.mode6_amplification else "")
                     if r.mode6_answers else "no answer to mode-6 control queries")
    if r.mode7_answers is not None:
        parts.append("answers mode-7 monlist" if r.mode7_answers else "no answer to mode-7 monlist")
    if r.nts_ke is not None:
        parts.append("NTS-KE (RFC 8915) offered" if r.nts_ke else "no NTS-KE")
    return "; ".join(parts)


def _ntp_rows(data: AuditData) -> list[list[Cell]]:
    answered = [(e, r) for e, r in _ntp_endpoints(data) if r.answered]
    queried = _ntp_endpoints(data)
    if answered:
        ev = [i for _, r in answered for i in r.evidence]
        server = verified("yes", ev)
        details = verified(" | ".join(describe_ntp(e, r) for e, r in answered), ev)
    elif queried:
        server = not_observed("no NTP answer to a mode-3 query on " + ", ".join(f"{e.host}:{e.port}/udp"
                                                                                 for e, _ in queried))
        details = not_observed("no NTP server answered")
    else:
        server = not_observed("no NTP query was made (scan.ntp disabled, or no host answered the inventory)")
        details = not_observed("no NTP query was made")
    return [
        [label("NTP server"), server, details],
        [label("NTP client"), not_verifiable("which time servers the product uses is not visible "
                                                        "from the network (declare it)"), not_verifiable()],
    ]


def describe_dns(ep: Endpoint, r: DnsResult) -> str:
    parts = [f"{ep.host}:{ep.port}: " + ("open resolver" if r.open_resolver else "no recursion for outside names"),
             f"TCP {'yes' if r.answers_tcp else 'no' if r.answers_tcp is False else 'not tried'}",
             f"EDNS {'yes' if r.edns else 'no' if r.edns is False else 'unknown'}",
             f"DO bit {'echoed' if r.dnssec_do else 'not echoed' if r.dnssec_do is False else 'unknown'}"]
    if r.zone:
        parts.append(f"{r.zone}: RRSIG {'returned' if r.dnssec_signatures else 'none'}, AXFR {r.axfr or 'no answer'}")
    return ", ".join(parts)


def _dns_row(data: AuditData) -> list[Cell]:
    found = [(e, e.dns) for e in sorted(data.endpoints, key=lambda e: (e.host, e.port)) if e.dns is not None]
    answered = [(e, r) for e, r in found if r.answers_udp]
    if answered:
        ev = [i for _, r in answered for i in r.evidence]
        return [label("DNS server"), verified("yes", ev),
                verified(" | ".join(describe_dns(e, r) for e, r in answered), ev)]
    why = "no DNS server answered on the audited hosts (or scan.dns was disabled)"
    return [label("DNS server"), not_observed(why), not_observed(why)]


def _ldap_endpoints(data: AuditData) -> list[tuple[Endpoint, LdapResult]]:
    return sorted(((e, e.ldap) for e in data.endpoints if e.ldap is not None), key=lambda p: (p[0].host, p[0].port))


def _ldap_row(data: AuditData) -> list[Cell]:
    found = _ldap_endpoints(data)
    answered = [(e, r) for e, r in found if r.answered]
    if answered:
        ev = [r.evidence[0] for _, r in answered]
        details = " | ".join(f"{e.host}:{e.port}: LDAP{'S' if r.ldaps else ''} v{'/'.join(map(str, r.versions)) or '?'}"
                             f", anonymous bind {r.anonymous_bind or 'not answered'}"
                             + ("" if r.ldaps else f", StartTLS {'offered' if r.starttls_offered else 'not offered'}")
                             for e, r in answered)
        return [label("LDAP server"), verified("yes", ev), verified(details, ev)]
    why = ("no LDAP answer on " + ", ".join(f"{e.host}:{e.port}" for e, _ in found)) if found else \
        "no configured LDAP port (scan.ldap) was found open"
    return [label("LDAP server"), not_observed(why), not_observed(why)]


def n11_1(data: AuditData) -> AnnexTable:
    """Table N.11-1 LDAP Security Patterns, as observed on each LDAP endpoint."""
    columns = ["Security Pattern", "Observed", "Details"]
    rows: list[list[Cell]] = []
    for ep, r in _ldap_endpoints(data):
        if not r.answered:
            continue
        at = f" ({ep.host}:{ep.port})"  # the declarations' endpoint suffix: key "<pattern> @ host:port"
        dse, anon = r.evidence[:1], r.evidence[1:2]
        rows.append([label("LDAP versions" + at), verified("/".join(map(str, r.versions)) or "none listed", dse),
                     label("supportedLDAPVersion of the root DSE")])
        rows.append([label("Anonymous bind" + at), verified(r.anonymous_bind, anon) if r.anonymous_bind
                     else not_observed("no answer to the anonymous bind"), label(r.anonymous_bind_detail or "")])
        simple_ev = [i for i in r.evidence if i not in dse + anon][:1] if r.simple_bind_plaintext else []
        if r.ldaps:
            simple = not_observed("LDAPS: every bind is inside TLS")
        elif r.simple_bind_plaintext is not None:
            simple = verified(r.simple_bind_plaintext, simple_ev)
        else:
            simple = not_observed("not tried: no test account configured (scan.ldap.bind_dn)")
        rows.append([label("Simple bind without TLS" + at), simple, label(r.simple_bind_detail or "")])
        rows.append([label("SASL mechanisms" + at),
                     verified(", ".join(r.sasl_mechanisms), dse) if r.sasl_mechanisms else verified("none listed", dse),
                     label("supportedSASLMechanisms of the root DSE")])
        tls_ev = r.evidence[-1:] if not r.ldaps else dse
        if r.tls is not None and r.tls.error is None:
            tls = verified(f"{r.tls.version} {r.tls.cipher}", tls_ev)
        elif r.tls is not None:
            tls = not_observed(f"TLS failed: {r.tls.error}")
        else:
            tls = verified("StartTLS not offered", dse)
        rows.append([label(("LDAPS" if r.ldaps else "StartTLS") + at), tls,
                     label(f"certificate {r.tls.certificate.subject}" if r.tls and r.tls.certificate else "")])
    return AnnexTable(id="N.11-1", title="LDAP Security Patterns", columns=columns, rows=rows,
                      empty_reason="" if rows else "no LDAP server answered on the configured LDAP ports")


def _adverts(data: AuditData) -> list[tuple[Endpoint, DnsSdAdvert]]:
    return [(e, a) for e in sorted(data.endpoints, key=lambda e: (e.host, e.port)) for a in e.dns_sd]


def _dns_sd_row(data: AuditData) -> list[Cell]:
    found = _adverts(data)
    if not found:
        why = "no DICOM DNS-SD advert found (configure scan.dns_sd.server and domain to look them up)"
        return [label("DNS Service Discovery"), not_observed(why), not_observed(why)]
    ev = [i for _, a in found for i in a.evidence]
    details = " | ".join(f"{a.instance} -> {a.target}:{a.port}" + (f" aet={a.ae_title}" if a.ae_title else "")
                         for _, a in found)
    return [label("DNS Service Discovery"), verified(f"yes ({len(found)} advert(s))", ev),
            verified(details, ev)]


def n11_1_4(data: AuditData) -> AnnexTable:
    """N.11.1.4 DNS Service Discovery: each advert beside what the audit observed at that host and port."""
    from dcsaudit.checks.network_services import advert_mismatches

    columns = ["Instance", "Service Type", "Advertised Host and Port", "AE Title (TXT aet)", "Compared with the Audit"]
    rows: list[list[Cell]] = []
    for ep, a in _adverts(data):
        bad = advert_mismatches(ep, a, data.application_entities)
        rows.append([label(a.instance), verified(a.service_type, a.evidence),
                     verified(f"{a.target}:{a.port}", a.evidence),
                     verified(a.ae_title, a.evidence) if a.ae_title else not_observed("no 'aet' key in the TXT record"),
                     label("; ".join(bad) if bad else f"matches {ep.host}:{ep.port} ({ep.service})")])
    return AnnexTable(id="N.11.1.4", numbered=False, title="DICOM services advertised in DNS-SD", columns=columns,
                      rows=rows, empty_reason="" if rows else "no DICOM DNS-SD advert was looked up or found")


def n8_1(data: AuditData) -> AnnexTable:
    rows = _ntp_rows(data)
    rows.append(_dns_row(data))
    rows.append(_ldap_row(data))
    rows.append(_dns_sd_row(data))
    # Declarations reconcile by (row label, column); the builders render observations only.
    return AnnexTable(id=N8_1, title="External Network Requirements", columns=N8_1_COLUMNS, rows=rows,
                      notes=["Server rows are what the audited hosts answered; which external servers the "
                             "product uses as a client is not visible from the network."])


def n11_1_1(data: AuditData) -> AnnexTable:
    """N.11.1.1 has no table in the standard: the observed NTP facts, one row per answering port."""
    columns = ["Endpoint", "Version", "Stratum", "Leap Indicator", "Reference", "Mode-6 / Mode-7 Answers", "NTS-KE"]
    rows: list[list[Cell]] = []
    for ep, r in _ntp_endpoints(data):
        if not r.answered:
            continue
        ev = r.evidence
        ctl = ("yes" if r.mode6_answers else "no") + " / " + ("yes" if r.mode7_answers else "no") \
            if r.mode6_answers is not None else None
        rows.append([label(f"{ep.host}:{ep.port}/udp"), verified(f"NTPv{r.version}", ev[:1]),
                     verified(str(r.stratum), ev[:1]), verified(LEAP.get(r.leap or 0, str(r.leap)), ev[:1]),
                     verified(r.reference_id or "", ev[:1]),
                     verified(ctl, ev[1:3]) if ctl else not_observed("control queries not made (scan.ntp)"),
                     verified("yes" if r.nts_ke else "no", ev[-1:]) if r.nts_ke is not None
                     else not_observed("NTS-KE not tried")])
    return AnnexTable(id="N.11.1.1", numbered=False, title="NTP servers observed (Basic Time Synchronization)",
                      columns=columns, rows=rows,
                      empty_reason="" if rows else "no audited host answered an NTP query")


KIND_LABEL: dict[str, str] = {"untrusted_ca": "From an unknown CA", "self_signed": "Self-signed", "expired": "Expired",
              "not_yet_valid": "Not yet valid", "wrong_key_usage": "Wrong key usage (no digitalSignature, no clientAuth)",
              "control": "Control (a certificate the product should accept)"}


def _trial_cell(r: ClientCertResult, t: ClientCertTrial | None) -> Cell:
    if t is None:
        return not_observed("not tried")
    if t.outcome == "undetermined":
        return not_observed(f"undetermined: {t.detail}")
    note = "" if t.isolated else "also from an unknown CA: a refusal does not show which defect was noticed"
    if t.outcome == "accepted" and r.requested == "unknown":
        return not_observed("the session went on, but whether the server asked for (and so received) the "
                            "certificate is not known: the TLS audit did not run")
    value = t.outcome.replace("_", " ") + (f" ({t.alert})" if t.alert else "")
    return verified(value, [t.evidence] if t.evidence else [], note=note)


def client_cert_table(data: AuditData) -> AnnexTable:
    kinds: list[ClientCertKind] = ["untrusted_ca", "self_signed", "expired", "not_yet_valid", "wrong_key_usage"]
    columns = ["Endpoint", "Client Certificate Requested", *(KIND_LABEL[k] for k in kinds), KIND_LABEL["control"]]
    rows: list[list[Cell]] = []
    for ep in sorted((e for e in data.endpoints if e.client_certs is not None), key=lambda e: (e.host, e.port)):
        r = ep.client_certs
        assert r is not None
        requested = verified(r.requested.replace("_", " "), (ep.tls.evidence[:1] if ep.tls else []) or r.evidence[:1]) \
            if r.requested != "unknown" else not_observed("the TLS audit did not say whether a certificate is requested")
        if r.requested == "not_requested":
            cells = [not_observed("not tried: the server does not ask for a client certificate")] * (len(kinds) + 1)
        else:
            cells = [_trial_cell(r, r.trial(k)) for k in kinds]
            cells.append(_trial_cell(r, r.control) if r.control else
                         not_observed("no control: configure credentials.tls_client or scan.client_certs.signing_ca_*"))
        rows.append([label(f"{ep.host}:{ep.port} ({ep.service})"), requested, *cells])
    return AnnexTable(id="N.8.4.2", numbered=False, title="Client certificate validation by the product as TLS server",
                      columns=columns, rows=rows,
                      empty_reason="" if rows else "no TLS endpoint was tried with defective client certificates",
                      notes=["One handshake per certificate, generated for this run. 'accepted': the product went on "
                             "after the handshake (answered a request, or did not refuse within the wait); "
                             "'refused': a TLS alert or a closed connection."])


SERVED_LABEL: dict[ServerCertKind, str] = {"control": "Control (the listener's good certificate)",
                                           "untrusted_ca": "From an unknown CA", "self_signed": "Self-signed",
                                           "expired": "Expired", "wrong_host_name": "Wrong host name"}


def _served_cell(r: served_certs.KindResult) -> Cell:
    first = r.first()
    if first is None:
        return not_observed("not tried: the product made too few TLS connections for this certificate to come round")
    if r.outcome == "undetermined":
        return not_observed(f"undetermined: {first.detail}")
    value = ("accepted (went on: A-ASSOCIATE-RQ)" if r.outcome == "accepted"
             else f"refused ({first.alert or 'closed'})")
    note = "" if r.isolated or r.kind in ("control", "untrusted_ca", "self_signed") else \
        "also from an unknown CA: a refusal does not show which defect was noticed"
    return verified(value, r.evidence, note=note)


def server_cert_table(data: AuditData) -> AnnexTable:
    """The product as TLS client: the server certificates ``listen --tls-cert-tests`` served it, one per
    connection, and whether it went on with the association (PS3.15 B.9/B.12, RFC 5280 §6, RFC 6125 §6)."""
    kinds: list[ServerCertKind] = ["untrusted_ca", "self_signed", "expired", "wrong_host_name", "control"]
    rows: list[list[Cell]] = []
    for peer, results in sorted(served_certs.by_peer(data.initiators).items()):
        rows.append([label(f"{peer} (as TLS client)"), *(_served_cell(results[k]) for k in kinds)])
    return AnnexTable(id="N.8.4.2-server-cert", numbered=False,
                      title="Server certificate validation by the product as TLS client",
                      columns=["Product", *(SERVED_LABEL[k] for k in kinds)], rows=rows,
                      empty_reason="" if rows else ("measured by dcsaudit listen --tls-cert-tests only (the product as "
                                                       "TLS client); no such capture in this run"),
                      notes=["dcsaudit listen served one certificate per TLS connection from the product. 'accepted': "
                             "the product completed the handshake and sent an A-ASSOCIATE-RQ; 'refused': it sent a "
                             "TLS alert or closed the connection first."])


def _web(data: AuditData) -> list[tuple[Endpoint, DicomwebResult]]:
    return sorted(((e, e.dicomweb) for e in data.endpoints if e.dicomweb is not None and e.dicomweb.base_path),
                  key=lambda p: (p[0].host, p[0].port))


def _status_cell(a: DicomwebAnswer | None, what: str) -> Cell:
    if a is None:
        return not_observed(f"{what}: not requested")
    if a.status is None:
        return not_observed(f"{what}: no HTTP answer ({a.error})")
    return verified(f"HTTP {a.status}", [a.evidence] if a.evidence else [])


def _auth_cell(r: DicomwebResult, kind: DicomwebTransaction) -> Cell:
    a = r.answer(kind)
    if a is None or a.status is None:
        return not_observed("no answer without credentials")
    ev = [a.evidence] if a.evidence else []
    if a.challenged:
        return verified(f"required (HTTP {a.status})", ev)
    if kind == "stow" and a.status in (404, 405, 501):
        return verified(f"not offered (HTTP {a.status})", ev)
    if not r.confirmed:
        return not_observed(f"HTTP {a.status} without credentials, but no DICOM JSON answer confirmed DICOMweb")
    return verified(f"not required (HTTP {a.status} without credentials)", ev)


def n6_3(data: AuditData) -> AnnexTable:
    """N.6.3: where DICOMweb answered and the status of each transaction, without and with credentials."""
    columns = ["Endpoint", "Base URL", "QIDO-RS (no credentials)", "WADO-RS (no credentials)",
               "STOW-RS (no credentials)", "QIDO-RS (configured credentials)"]
    rows: list[list[Cell]] = []
    for ep, r in _web(data):
        scheme = "https" if r.over_tls else "http"
        first = r.answer("qido")
        base = verified(f"{scheme}://{ep.host}:{ep.port}{r.base_path}", [first.evidence] if first and first.evidence
                        else r.evidence[:1], note="" if r.confirmed else "a server answered here; DICOMweb not confirmed")
        authed = _status_cell(r.answer("qido", True), "QIDO-RS") if r.authenticated else \
            not_observed("no credentials configured (scan.dicomweb.auth)")
        rows.append([label(f"{ep.host}:{ep.port}"), base, _status_cell(r.answer("qido"), "QIDO-RS"),
                     _status_cell(r.answer("wado"), "WADO-RS"), _status_cell(r.answer("stow"), "STOW-RS"), authed])
    tried = sorted({p for e in data.endpoints if e.dicomweb is not None for p in e.dicomweb.paths_tried})
    return AnnexTable(id="N.6.3", numbered=False, title="DICOMweb services observed", columns=columns, rows=rows,
                      empty_reason="" if rows else ("no HTTP(S) endpoint answered a DICOMweb request at "
                                                    + (", ".join(tried) if tried else "any base path tried")),
                      notes=["Requests that change nothing: a search for a random study UID, the metadata of that "
                             "(non-existent) study, and an upload with a content type STOW-RS must reject."])


def n8_6(data: AuditData) -> AnnexTable:
    """N.8.6 Web Services Security Features, as observed."""
    columns = ["Endpoint", "TLS", "QIDO-RS Authentication", "WADO-RS Authentication", "STOW-RS Authentication",
               "Authentication Schemes Offered", "HSTS", "CORS (foreign origin)"]
    rows: list[list[Cell]] = []
    for ep, r in _web(data):
        ev = r.evidence[:1]
        schemes = verified(", ".join(r.auth_schemes), [a.evidence for a in r.unauthenticated
                                                       if a.auth_schemes and a.evidence]) if r.auth_schemes else \
            not_observed("no WWW-Authenticate challenge in the answers")
        hsts = (verified(r.hsts, ev) if r.hsts else verified("not sent", ev)) if r.over_tls else \
            not_observed("HSTS applies to HTTPS only; this endpoint is plaintext HTTP")
        rows.append([label(f"{ep.host}:{ep.port}"), verified("HTTPS" if r.over_tls else "none (HTTP)", ev),
                     _auth_cell(r, "qido"), _auth_cell(r, "wado"), _auth_cell(r, "stow"), schemes, hsts,
                     verified(f"allowed ({r.cors_allow_origin})" if r.cors_allow_origin else "not allowed", ev)])
    return AnnexTable(id="N.8.6", numbered=False, title="Web services security observed", columns=columns, rows=rows,
                      empty_reason="" if rows else "no DICOMweb service was found on the audited HTTP(S) endpoints")


def tables(data: AuditData) -> list[tuple[str, AnnexTable]]:
    return [("N.8.2", n8_1(data)), ("N.11.1.1", n11_1_1(data)), ("N.8.4.2", client_cert_table(data)),
            ("N.8.4.2", server_cert_table(data)),
            ("N.6.3", n6_3(data)), ("N.8.6", n8_6(data)), ("N.11.1.3", n11_1(data)),
            ("N.11.1.4", n11_1_4(data))]

