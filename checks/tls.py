"""Checks on the TLS audit of each TLS endpoint (PS3.15 B.12/B.13, RFC 9325, RFC 8996).

Each check reads the facts in ``Endpoint.tls`` (a ``TlsResult``) only; endpoints without a TLS audit are
skipped, and an audit that failed is an ``error`` finding of ``tls.audit_completed`` rather than a
silent pass. What is legacy, weak or not forward-secret, and the profile verdicts, come from the one
TLS rule book (``dcsaudit.rules.tls_profiles``: ``configs/tls_profiles.yaml`` over the suite registry),
so these checks and the profile verdicts judge every suite the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

from dcsaudit.checks.base import AuditData, Verdict, check
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TlsResult
from dcsaudit.rules import tls_profiles

EXPIRY_WARNING_DAYS = 30


def _audited(data: AuditData) -> Iterator[tuple[Endpoint, TlsResult]]:
    for ep in data.endpoints:
        if ep.tls is not None and ep.tls.error is None and ep.tls.accepted_versions():
            yield ep, ep.tls


@check(id="tls.audit_completed", title="TLS audit completed", severity="medium", references=["PS3.2 N.11.2.5"])
def audit_completed(data: AuditData) -> Iterator[Verdict]:
    """A TLS port that could not be audited is reported, never passed over."""
    for ep in data.endpoints:
        if ep.tls is None:
            continue
        if ep.tls.error:
            yield Verdict("error", ep.key, f"TLS audit failed: {ep.tls.error}", ep.tls.evidence)
        else:
            yield Verdict("pass", ep.key, f"{ep.tls.handshakes} handshakes", ep.tls.evidence)


@check(id="tls.no_legacy_protocols", title="No SSL 2.0/3.0, TLS 1.0 or TLS 1.1", severity="high",
       references=["RFC 8996", "RFC 9325 §3.1.1", "PS3.15 B.12", "PS3.15 B.13"])
def no_legacy_protocols(data: AuditData) -> Iterator[Verdict]:
    for ep, r in _audited(data):
        old = tls_profiles.legacy_versions(r)
        if old:
            yield Verdict("fail", ep.key, f"accepts {', '.join(old)}", r.evidence)
        else:
            yield Verdict("pass", ep.key, f"accepts only {', '.join(r.accepted_versions())}", r.evidence)


def _profile(data: AuditData, name: str) -> Iterator[Verdict]:
    """Pass when no MUST-level rule fails; SHOULD-level deviations are named in the passing summary."""
    for ep, r in _audited(data):
        v = tls_profiles.evaluate(r).get(name)
        if v is None:
            continue
        if v.verdict == "conforms":
            yield Verdict("pass", ep.key, f"conforms to {name}", r.evidence)
        elif v.verdict == "conforms_with_should_deviations":
            shown = "; ".join(v.warnings[:6]) + (f"; … {len(v.warnings) - 6} more" if len(v.warnings) > 6 else "")
            yield Verdict("pass", ep.key, f"conforms to {name} with SHOULD-level deviations: {shown}", r.evidence)
        else:
            yield Verdict("fail", ep.key, f"does not conform (MUST-level): {'; '.join(v.reasons)}", r.evidence)


@check(id="tls.profile_bcp195_rfc8996", title="Conforms to BCP 195 RFC 8996 TLS profile", severity="high",
       references=["PS3.15 B.12", "RFC 9325", "PS3.2 N.8.4.2"])
def profile_bcp195(data: AuditData) -> Iterator[Verdict]:
    yield from _profile(data, "BCP 195 RFC 8996 TLS")


@check(id="tls.profile_modified_bcp195_rfc8996", title="Conforms to Modified BCP 195 RFC 8996 TLS profile",
       severity="low", references=["PS3.15 B.13", "PS3.2 N.8.4.2", "PS3.2 N.11.2.5"])
def profile_modified_bcp195(data: AuditData) -> Iterator[Verdict]:
    yield from _profile(data, "Modified BCP 195 RFC 8996 TLS")


@check(id="tls.fallback_scsv", title="Downgrade to TLS 1.1 or older refused (TLS_FALLBACK_SCSV)", severity="medium",
       references=["RFC 7507", "RFC 8996", "RFC 9325 §3.1.1"])
def fallback_scsv(data: AuditData) -> Iterator[Verdict]:
    """A server that still accepts TLS 1.1 or older must at least refuse a fallback to it (RFC 7507 §3).

    Applies to servers accepting a legacy version and another one; an unanswered probe is an error
    finding with the probe's reason, never a pass.
    """
    for ep, r in _audited(data):
        old = tls_profiles.legacy_versions(r)
        f = r.features
        detail = f.fallback_scsv_detail or "not probed"
        if not old:
            yield Verdict("not_applicable", ep.key, "no TLS 1.1 or older version accepted", r.evidence)
        elif f.fallback_scsv_status == "supported":
            yield Verdict("pass", ep.key, f"accepts {', '.join(old)} but refuses a fallback: {detail}", r.evidence)
        elif f.fallback_scsv_status == "not_supported":
            yield Verdict("fail", ep.key, f"accepts {', '.join(old)} without downgrade protection: {detail}",
                          r.evidence)
        elif f.fallback_scsv_status == "not_applicable":
            yield Verdict("not_applicable", ep.key, detail, r.evidence)
        else:
            yield Verdict("error", ep.key, f"TLS_FALLBACK_SCSV undetermined: {detail}", r.evidence)


@check(id="tls.weak_ciphers", title="No NULL, anonymous, export, RC4, DES or 3DES suites", severity="high",
       references=["RFC 9325 §4.1", "RFC 7465"])
def weak_ciphers(data: AuditData) -> Iterator[Verdict]:
    for ep, r in _audited(data):
        weak = tls_profiles.weak_suites(r)
        if weak:
            yield Verdict("fail", ep.key, f"accepts {', '.join(weak)}", r.evidence)
        else:
            yield Verdict("pass", ep.key, "no weak suite accepted", r.evidence)


@check(id="tls.forward_secrecy", title="Only forward-secret key exchange", severity="medium",
       references=["RFC 9325 §4.1"])
def forward_secrecy(data: AuditData) -> Iterator[Verdict]:
    for ep, r in _audited(data):
        static = tls_profiles.non_forward_secret_suites(r)
        if static:
            yield Verdict("fail", ep.key, f"static key exchange accepted: {', '.join(static)}", r.evidence)
        else:
            yield Verdict("pass", ep.key, "every accepted suite is (EC)DHE or TLS 1.3", r.evidence)


@check(id="tls.certificate_key_size", title="Certificate key at least RSA 2048 / EC 256 bits", severity="high",
       references=["RFC 9325 §4.5", "PS3.15 B.13"])
def certificate_key_size(data: AuditData) -> Iterator[Verdict]:
    for ep, r in _audited(data):
        c = r.certificate
        if c is None:
            yield Verdict("not_applicable", ep.key, "no certificate observed", r.evidence)
        elif c.key_type in ("RSA", "DSA") and c.key_bits < 2048:
            yield Verdict("fail", ep.key, f"{c.key_type} key {c.key_bits} bits below 2048", r.evidence)
        elif c.key_type == "EC" and c.key_bits < 256:
            yield Verdict("fail", ep.key, f"EC key {c.key_bits} bits below 256", r.evidence)
        else:
            yield Verdict("pass", ep.key, f"{c.key_type} {c.key_bits} bits", r.evidence)


@check(id="tls.certificate_expiry", title="Certificate valid and not about to expire", severity="high",
       references=["RFC 5280 §4.1.2.5"])
def certificate_expiry(data: AuditData) -> Iterator[Verdict]:
    for ep, r in _audited(data):
        c = r.certificate
        if c is None:
            yield Verdict("not_applicable", ep.key, "no certificate observed", r.evidence)
        elif c.expired:
            yield Verdict("fail", ep.key, f"expired on {c.not_after}", r.evidence)
        elif c.not_yet_valid:
            yield Verdict("fail", ep.key, f"not valid before {c.not_before}", r.evidence)
        elif c.days_to_expiry < EXPIRY_WARNING_DAYS:
            yield Verdict("fail", ep.key, f"expires in {c.days_to_expiry} days ({c.not_after})", r.evidence)
        else:
            yield Verdict("pass", ep.key, f"valid for {c.days_to_expiry} more days", r.evidence)


@check(id="tls.certificate_chain", title="Certificate chain validates against the configured CA", severity="medium",
       references=["RFC 5280 §6", "PS3.2 N.11.2.5 (certificate validation)"])
def certificate_chain(data: AuditData) -> Iterator[Verdict]:
    for ep, r in _audited(data):
        c = r.certificate
        if c is None or c.chain_valid is None:
            yield Verdict("not_applicable", ep.key, "no CA configured or no certificate observed", r.evidence)
        elif c.chain_valid:
            yield Verdict("pass", ep.key, f"chain of {c.chain_length} validates", r.evidence)
        else:
            yield Verdict("fail", ep.key, f"chain does not validate: {c.chain_error}", r.evidence)


@check(id="tls.certificate_signature_hash", title="Certificates signed with SHA-256 or stronger", severity="high",
       references=["RFC 9325 §4.5", "RFC 9155", "PS3.15 B.13"])
def certificate_signature_hash(data: AuditData) -> Iterator[Verdict]:
    for ep, r in _audited(data):
        c = r.certificate
        if c is None:
            continue
        weak = [link["subject"] for link in c.chain
                if link.get("signature_hash") in ("md5", "sha1") and link.get("self_signed") != "yes"]
        if c.signature_hash in ("md5", "sha1") or weak:
            yield Verdict("fail", ep.key, f"signed with {c.signature_hash}: {', '.join(weak) or c.subject}", r.evidence)
        else:
            yield Verdict("pass", ep.key, f"signature hash {c.signature_hash}", r.evidence)


@check(id="tls.secure_renegotiation", title="renegotiation_info and extended_master_secret in TLS 1.2",
       severity="medium", references=["RFC 9325 §3.5", "RFC 5746", "RFC 7627"])
def secure_renegotiation(data: AuditData) -> Iterator[Verdict]:
    for ep, r in _audited(data):
        if not r.protocols.get("TLSv1.2"):
            continue
        missing = [n for n in ("renegotiation_info", "extended_master_secret") if getattr(r.features, n) is False]
        if missing:
            yield Verdict("fail", ep.key, f"TLS 1.2 without {', '.join(missing)}", r.evidence)
        else:
            yield Verdict("pass", ep.key, "renegotiation_info and extended_master_secret acknowledged", r.evidence)


@check(id="tls.vulnerabilities", title="No Heartbleed, CCS injection or ROBOT", severity="critical",
       references=["CVE-2014-0160", "CVE-2014-0224", "ROBOT (CVE-2017-13099 family)"])
def vulnerabilities(data: AuditData) -> Iterator[Verdict]:
    """Vulnerable if any test says so; a test that ran without a verdict is undetermined (error), never a pass."""
    for ep, r in _audited(data):
        v = r.vulnerabilities
        ev = v.evidence or r.evidence
        tested = [n for n, value in (("Heartbleed", v.heartbleed), ("CCS injection", v.ccs_injection),
                                     ("ROBOT", v.robot)) if value is not None]
        if not tested and not v.undetermined:
            yield Verdict("not_applicable", ep.key, "; ".join(v.notes) or "not tested", ev)
            continue
        found = [n for n, bad in (("Heartbleed", v.heartbleed), ("CCS injection", v.ccs_injection),
                                  ("ROBOT", v.robot is not None and v.robot.startswith("VULNERABLE"))) if bad]
        if found:
            yield Verdict("fail", ep.key, f"vulnerable: {', '.join(found)}", ev)
        elif v.undetermined:
            why = "; ".join(n for n in v.notes if n.startswith(tuple(v.undetermined))) or ", ".join(v.undetermined)
            clean = f"; not vulnerable to: {', '.join(tested)}" if tested else ""
            yield Verdict("error", ep.key, f"undetermined: {why}{clean}", ev)
        else:
            yield Verdict("pass", ep.key, f"not vulnerable to the tests run ({', '.join(tested)})", ev)
