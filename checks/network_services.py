"""Checks on the network-service probes (issue 15): client-certificate validation by the product's TLS
servers (PS3.15 B.9/B.12, RFC 5280 §6) and NTP (RFC 5905, PS3.15 Basic Time Synchronization Profile).

Each reads the typed results on the endpoint (``Endpoint.client_certs``, ``Endpoint.ntp``) only.
"""

from __future__ import annotations

from collections.abc import Iterator

from dcsaudit.checks.base import AuditData, Verdict, check
from dcsaudit.models.core import FindingStatus
from dcsaudit.models.dicom import ApplicationEntity
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.network import (
    ClientCertKind,
    ClientCertResult,
    DicomwebAnswer,
    DicomwebResult,
    DicomwebTransaction,
    DnsResult,
    DnsSdAdvert,
    LdapResult,
)
from dcsaudit.rules import served_certs

_UNTRUSTED: tuple[ClientCertKind, ...] = ("untrusted_ca", "self_signed")
_INVALID: tuple[ClientCertKind, ...] = ("expired", "not_yet_valid", "wrong_key_usage")


_LABELS = {"untrusted_ca": "from an unknown CA", "self_signed": "self-signed", "expired": "expired",
           "not_yet_valid": "not yet valid", "wrong_key_usage": "with the wrong key usage"}


def _label(kind: str) -> str:
    return _LABELS.get(kind, kind)


def _judge(r: ClientCertResult, kinds: tuple[ClientCertKind, ...], need_isolated: bool) -> tuple[FindingStatus, str, list[str]]:
    trials = [t for k in kinds if (t := r.trial(k)) is not None]
    ev = [t.evidence for t in trials if t.evidence] or list(r.evidence)
    accepted = [t for t in trials if t.outcome == "accepted"]
    optional = " (the server asks for a client certificate but does not require one)" if r.requested == "optional" else ""
    if accepted and r.requested == "unknown":
        return "error", ("undetermined: the TLS audit did not say whether the server asks for a client certificate, "
                         f"so the sessions that went on ({', '.join(_label(t.kind) for t in accepted)}) may never have "
                         "carried one"), ev
    if accepted:
        return "fail", f"accepted client certificates that must be refused: {', '.join(_label(t.kind) for t in accepted)}{optional}", ev
    if len(trials) < len(kinds) or any(t.outcome == "undetermined" for t in trials):
        why = "; ".join(f"{_label(t.kind)}: {t.detail}" for t in trials if t.outcome == "undetermined")
        return "error", f"undetermined: not every certificate got an answer ({why or 'not tried'})", ev
    if r.control is not None and r.control.outcome != "accepted":
        return "error", (f"undetermined: the control certificate was also {r.control.outcome} "
                         f"({r.control.detail}), so refusals do not show certificate validation"), ev
    if need_isolated and not all(t.isolated for t in trials):
        return "error", ("undetermined: refused, but these certificates also came from an unknown CA, so the refusal "
                         "does not show the validity period or key usage is checked (configure "
                         "scan.client_certs.signing_ca_cert/key with a CA the product trusts)"), ev
    how = ", ".join(f"{_label(t.kind)}: {t.alert or 'closed'}" for t in trials)
    return "pass", f"refused every one ({how})", ev


def _tried(data: AuditData) -> Iterator[tuple[str, ClientCertResult]]:
    for ep in data.endpoints:
        r = ep.client_certs
        if r is not None and r.requested != "not_requested":
            yield ep.key, r


@check(id="tls.client_cert_trust_checked", title="Client certificates from an unknown CA or self-signed are refused",
       severity="high", references=["PS3.15 B.9", "PS3.15 B.12", "RFC 5280 §6.1", "RFC 8446 §4.4.2.4"])
def client_cert_trust_checked(data: AuditData) -> Iterator[Verdict]:
    """A TLS server that asks for a client certificate and accepts any certificate authenticates nobody."""
    for target, r in _tried(data):
        status, summary, ev = _judge(r, _UNTRUSTED, need_isolated=False)
        yield Verdict(status, target, summary, ev)


@check(id="tls.client_cert_validity_checked", title="Expired, not-yet-valid and wrong-purpose client certificates "
       "are refused", severity="high", references=["PS3.15 B.9", "RFC 5280 §4.1.2.5", "RFC 5280 §4.2.1.3",
                                                   "RFC 5280 §4.2.1.12", "RFC 5280 §6.1.3"])
def client_cert_validity_checked(data: AuditData) -> Iterator[Verdict]:
    for target, r in _tried(data):
        status, summary, ev = _judge(r, _INVALID, need_isolated=True)
        yield Verdict(status, target, summary, ev)



@check(id="tls.client_validates_server_cert", title="As TLS client, the product refuses server certificates from an "
       "unknown CA, self-signed, expired or for another host", severity="high",
       references=["PS3.15 B.9", "PS3.15 B.12", "RFC 5280 §6.1", "RFC 6125 §6", "RFC 8446 §4.4.2.4"])
def client_validates_server_cert(data: AuditData) -> Iterator[Verdict]:
    """From ``listen --tls-cert-tests``: a product that goes on with any server certificate can be led to send
    its images to whoever answers on the path."""
    peers = served_certs.by_peer(data.initiators)
    for peer, kinds in sorted(peers.items()):
        status, summary, ev = served_certs.judge(kinds)
        yield Verdict(status, f"initiator {peer} (TLS client)", summary, ev)
    if not peers:  # the tests were on, but the product never made a TLS connection to try one on
        for e in data.evidence:
            if e.probe == served_certs.NO_TRIALS_PROBE:
                yield Verdict("error", e.target, f"undetermined: {e.summary}", [e.id])


# DICOMweb (PS3.18; PS3.2 N.8.6): access control and transport of the web services.


def _web(data: AuditData) -> Iterator[tuple[str, DicomwebResult]]:
    for ep in data.endpoints:
        r = ep.dicomweb
        if r is not None and r.base_path is not None:
            yield ep.key, r


def _status(a: DicomwebAnswer | None) -> str:
    return "no answer" if a is None or a.status is None else f"HTTP {a.status}"


def _requires_auth(kind: DicomwebTransaction, name: str, data: AuditData) -> Iterator[Verdict]:
    for target, r in _web(data):
        a = r.answer(kind)
        ev = [a.evidence] if a is not None and a.evidence else r.evidence
        where = f"{name} at {r.base_path}"
        if a is None or a.status is None:
            yield Verdict("error", target, f"{where}: no answer without credentials", ev)
        elif a.challenged:
            yield Verdict("pass", target, f"{where} asks for authentication ({_status(a)}"
                          f"{', ' + ' / '.join(a.auth_schemes) if a.auth_schemes else ''})", ev)
        elif kind == "stow" and a.status in (404, 405, 501):
            yield Verdict("pass", target, f"{where}: no STOW-RS offered ({_status(a)})", ev)
        elif not r.confirmed:  # any web server answers something: only a DICOM JSON answer proves DICOMweb
            yield Verdict("error", target, f"undetermined: {where} answered {_status(a)} without asking for "
                          "authentication, but no DICOM JSON answer confirmed a DICOMweb service there", ev)
        elif kind == "qido" and 200 <= a.status < 300:
            yield Verdict("fail", target, f"{where} answered a search without authentication ({_status(a)})", ev)
        elif kind == "wado":
            yield Verdict("fail", target, f"{where} looked up a study without asking for authentication "
                          f"({_status(a)} for a study that does not exist)", ev)
        elif kind == "stow":
            yield Verdict("fail", target, f"{where} judged an upload's content type before asking for "
                          f"credentials ({_status(a)}): it takes uploads without authentication", ev)
        else:
            yield Verdict("error", target, f"{where}: unexpected {_status(a)} without credentials", ev)


@check(id="dicomweb.qido_requires_authentication", title="QIDO-RS search requires authentication", severity="high",
       references=["PS3.18 §10.6", "PS3.2 N.8.6", "RFC 9110 §11"])
def qido_requires_authentication(data: AuditData) -> Iterator[Verdict]:
    yield from _requires_auth("qido", "QIDO-RS", data)


@check(id="dicomweb.wado_requires_authentication", title="WADO-RS retrieve requires authentication",
       severity="high", references=["PS3.18 §10.4", "PS3.2 N.8.6", "RFC 9110 §11"])
def wado_requires_authentication(data: AuditData) -> Iterator[Verdict]:
    yield from _requires_auth("wado", "WADO-RS", data)


@check(id="dicomweb.stow_requires_authentication", title="STOW-RS store requires authentication",
       severity="high", references=["PS3.18 §10.5", "PS3.2 N.8.6", "RFC 9110 §11"])
def stow_requires_authentication(data: AuditData) -> Iterator[Verdict]:
    yield from _requires_auth("stow", "STOW-RS", data)


@check(id="dicomweb.over_tls", title="DICOMweb is served over TLS", severity="medium",
       references=["PS3.18 §6.1", "PS3.15 B.12", "PS3.2 N.8.6"])
def dicomweb_over_tls(data: AuditData) -> Iterator[Verdict]:
    for target, r in _web(data):
        if r.over_tls:
            yield Verdict("pass", target, f"DICOMweb at {r.base_path} over HTTPS", r.evidence[:1])
        elif r.confirmed:
            yield Verdict("fail", target, f"DICOMweb at {r.base_path} over plaintext HTTP", r.evidence[:1])


@check(id="dicomweb.hsts", title="HTTPS DICOMweb sends Strict-Transport-Security", severity="low",
       references=["RFC 6797 §6.1", "PS3.2 N.8.6"])
def dicomweb_hsts(data: AuditData) -> Iterator[Verdict]:
    for target, r in _web(data):
        if not r.over_tls:
            continue
        age = _max_age(r.hsts)
        if age:
            yield Verdict("pass", target, f"Strict-Transport-Security: {r.hsts}", r.evidence[:1])
        else:
            yield Verdict("fail", target, "no Strict-Transport-Security with a max-age above 0"
                          + (f" ({r.hsts})" if r.hsts else ""), r.evidence[:1])


def _max_age(hsts: str | None) -> int:
    for part in (hsts or "").split(";"):
        k, _, v = part.strip().partition("=")
        if k.lower() == "max-age" and v.strip().strip('"').isdigit():
            return int(v.strip().strip('"'))
    return 0


@check(id="dicomweb.cors_restricted", title="DICOMweb does not allow any web origin (CORS)", severity="medium",
       references=["Fetch Standard §3.2 (CORS protocol)", "PS3.18 §6.1.2", "PS3.2 N.8.6"])
def dicomweb_cors_restricted(data: AuditData) -> Iterator[Verdict]:
    for target, r in _web(data):
        origin = r.cors_allow_origin
        if origin is None:
            yield Verdict("pass", target, "no Access-Control-Allow-Origin for a foreign origin", r.evidence[:1])
        elif origin.strip() == "*" or "dcsaudit-cors-check.invalid" in origin:
            creds = " with credentials" if (r.cors_allow_credentials or "").strip().lower() == "true" else ""
            yield Verdict("fail", target, f"allows any web origin{creds} (Access-Control-Allow-Origin: {origin})",
                          r.evidence[:1])
        else:
            yield Verdict("pass", target, f"allows only {origin}", r.evidence[:1])


# LDAP (RFC 4511-4513; PS3.2 N.11.1.3, Table N.11-1).

CONFIDENTIALITY_REQUIRED = 13


def _ldap(data: AuditData) -> Iterator[tuple[str, str, LdapResult]]:
    for ep in data.endpoints:
        if ep.ldap is not None and ep.ldap.answered:
            yield ep.key, ep.host, ep.ldap


@check(id="ldap.anonymous_bind_refused", title="LDAP refuses anonymous binds", severity="medium",
       references=["RFC 4513 §5.1.1", "RFC 4513 §6.3.1", "PS3.2 N.11.1.3"])
def ldap_anonymous_bind_refused(data: AuditData) -> Iterator[Verdict]:
    for target, _, r in _ldap(data):
        ev = r.evidence[1:2] or r.evidence
        if r.anonymous_bind == "accepted":
            yield Verdict("fail", target, f"anonymous bind accepted ({r.anonymous_bind_detail})", ev)
        elif r.anonymous_bind == "refused":
            yield Verdict("pass", target, f"anonymous bind refused ({r.anonymous_bind_detail})", ev)
        else:
            yield Verdict("error", target, f"anonymous bind got no LDAP answer ({r.anonymous_bind_detail})", ev)


@check(id="ldap.no_plaintext_simple_bind", title="LDAP refuses simple binds (passwords) without TLS",
       severity="high", references=["RFC 4513 §5.1.2", "RFC 4513 §6.3.1", "PS3.2 N.11.1.3"])
def ldap_no_plaintext_simple_bind(data: AuditData) -> Iterator[Verdict]:
    """Judged only with the configured test account (never guessed credentials)."""
    for target, _, r in _ldap(data):
        if r.ldaps or (r.simple_bind_plaintext is None and r.simple_bind_detail is None):
            continue
        ev = r.evidence
        if r.simple_bind_plaintext == "accepted":
            yield Verdict("fail", target, "the test account's password was accepted in a simple bind without TLS", ev)
        elif r.simple_bind_result == CONFIDENTIALITY_REQUIRED:
            yield Verdict("pass", target, f"simple bind without TLS refused: {r.simple_bind_detail}", ev)
        else:
            yield Verdict("error", target, f"undetermined: the simple bind was refused for another reason "
                          f"({r.simple_bind_detail}); the password still crossed the network in clear", ev)


@check(id="ldap.tls_available", title="LDAP offers TLS (StartTLS or LDAPS)", severity="high",
       references=["RFC 4513 §3", "RFC 8314 (implicit TLS)", "PS3.2 N.11.1.3"])
def ldap_tls_available(data: AuditData) -> Iterator[Verdict]:
    found = list(_ldap(data))
    ldaps_hosts = {host for _, host, r in found if r.ldaps and r.tls is not None and r.tls.error is None}
    for target, host, r in found:
        if r.ldaps:
            if r.tls is not None and r.tls.error is None:
                yield Verdict("pass", target, f"LDAPS: {r.tls.version} {r.tls.cipher}", r.evidence[:1])
            continue
        if r.tls is not None and r.tls.error is None:
            yield Verdict("pass", target, f"StartTLS negotiated {r.tls.version} {r.tls.cipher}", r.evidence[-1:])
        elif host in ldaps_hosts:
            yield Verdict("pass", target, "no StartTLS here, but the host answers LDAPS", r.evidence[:1])
        elif r.starttls_offered:
            yield Verdict("fail", target, f"StartTLS offered but failed: {r.tls.error if r.tls else 'not tried'}",
                          r.evidence[-1:])
        else:
            yield Verdict("fail", target, "no StartTLS in the root DSE and no LDAPS on the host", r.evidence[:1])


# DNS (RFC 1035; RFC 5358 open resolvers; RFC 5936 AXFR; RFC 4035 DNSSEC).


def _dns(data: AuditData) -> Iterator[tuple[str, DnsResult]]:
    for ep in data.endpoints:
        if ep.dns is not None and ep.dns.answers_udp:
            yield ep.key, ep.dns


@check(id="dns.not_open_resolver", title="The product's DNS server does not recurse for anyone", severity="high",
       references=["RFC 5358 §4", "RFC 1035 §4.3.1", "PS3.2 N.8.2"])
def dns_not_open_resolver(data: AuditData) -> Iterator[Verdict]:
    for target, r in _dns(data):
        if r.open_resolver:
            yield Verdict("fail", target, f"recursed for a name outside its zones: {r.recursion_detail}",
                          r.evidence[:1])
        else:
            yield Verdict("pass", target, f"no recursion for a name outside its zones: {r.recursion_detail}",
                          r.evidence[:1])


@check(id="dns.zone_transfer_refused", title="Zone transfers (AXFR) are refused", severity="high",
       references=["RFC 5936 §5", "PS3.2 N.8.2"])
def dns_zone_transfer_refused(data: AuditData) -> Iterator[Verdict]:
    for target, r in _dns(data):
        if r.zone is None:
            continue
        ev = r.evidence[-1:]
        if r.axfr == "allowed":
            yield Verdict("fail", target, f"AXFR of {r.zone} allowed: {r.axfr_detail}", ev)
        elif r.axfr == "refused":
            yield Verdict("pass", target, f"AXFR of {r.zone} refused ({r.axfr_detail})", ev)
        else:
            yield Verdict("error", target, f"AXFR of {r.zone}: no answer ({r.axfr_detail})", ev)


# DNS-SD (RFC 6763; "_dicom._tcp" / "_dicom-tls._tcp"): what is advertised must be what answers.


def advert_mismatches(ep: Endpoint, a: DnsSdAdvert, aes: list[ApplicationEntity]) -> list[str]:
    """Why an advert does not describe what was observed (empty: it matches)."""
    if not a.port_observed_open:
        return [f"port {a.port} is not open on {', '.join(a.addresses) or a.target}"]
    out = []
    tls = a.service_type == "_dicom-tls._tcp"
    if tls and ep.service != "dicom-tls":
        out.append(f"advertised as DICOM over TLS, observed {ep.service}")
    if not tls and ep.service not in ("dicom", "unknown"):
        out.append(f"advertised as plaintext DICOM, observed {ep.service}")
    here = [ae for ae in aes if ae.host == ep.host and ae.port == ep.port]
    # Titles the port is known to answer to: measured (a random title refused), or configured where not asked,
    # and any other title the audit called and had accepted. A port that accepts any Called AE Title accepts
    # the advertised one too: no mismatch can be shown there, and a guessed title names nothing.
    titles = {ae.ae_title for ae in here if ae.title_measured() or (ae.configured and ae.accepts_any_called_ae is None)}
    accepted = titles | {t for ae in here for t in ae.default_called_aes_accepted}
    if a.ae_title is not None and titles and not any(ae.accepts_any_called_ae for ae in here) \
            and a.ae_title not in accepted:
        out.append(f"TXT aet={a.ae_title}, but the AE at {ep.host}:{ep.port} is {', '.join(sorted(titles))}")
    return out


@check(id="dns_sd.matches_observed", title="DNS-SD adverts describe the DICOM services that answer", severity="medium",
       references=["RFC 6763 §4-6", "PS3.15 (DNS-SD of DICOM services)", "PS3.2 N.11.1.4"])
def dns_sd_matches_observed(data: AuditData) -> Iterator[Verdict]:
    for ep in data.endpoints:
        for a in ep.dns_sd:
            target = f"{a.target}:{a.port}/tcp" if not a.port_observed_open else ep.key
            bad = advert_mismatches(ep, a, data.application_entities)
            if bad:
                yield Verdict("fail", target, f"{a.instance}: {'; '.join(bad)}", a.evidence)
            else:
                yield Verdict("pass", target, f"{a.instance} ({a.service_type}, aet={a.ae_title}) matches {ep.key}",
                              a.evidence + ep.evidence[:1])
