"""TLS checks and profile verdicts on constructed results: one passing and one failing case each, and
the agreement of the checks with the profile rules (one rule book)."""

from __future__ import annotations

import pytest

from dcsaudit.checks.base import REGISTRY, AuditData
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TLS_VERSIONS, CertificateInfo, TlsFeatures, TlsResult, Vulnerabilities
from dcsaudit.rules import tls_profiles as profiles
from dcsaudit.rules.tls_suites import cipher_suites

import dcsaudit.checks  # noqa: F401  (registers the checks)  # isort: skip

B12 = "BCP 195 RFC 8996 TLS"
B13 = "Modified BCP 195 RFC 8996 TLS"


def cert(**kw: object) -> CertificateInfo:
    base: dict[str, object] = dict(
        subject="CN=pacs", issuer="CN=ca", serial="1", sha256="00", key_type="RSA", key_bits=2048,
        signature_algorithm="sha256WithRSAEncryption", signature_hash="sha256", not_before="2025-01-01",
        not_after="2030-01-01", days_to_expiry=900, expired=False, not_yet_valid=False, self_signed=False,
        chain=[{"subject": "CN=pacs", "issuer": "CN=ca", "signature_hash": "sha256", "self_signed": "no"}],
        chain_valid=True,
    )
    base.update(kw)
    return CertificateInfo.model_validate(base)


def good() -> TlsResult:
    """A B.12- and B.13-conformant server: TLS 1.2 + 1.3, ECDHE AEAD only, RSA 2048, SHA-256."""
    return TlsResult(
        protocols={"SSLv2": [], "SSLv3": [], "TLSv1.0": [], "TLSv1.1": [],
                   "TLSv1.2": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"],
                   "TLSv1.3": ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256",
                               "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]},
        preference="server", preference_by_version={"TLSv1.2": "server", "TLSv1.3": "server"},
        client_certificate="required", groups=["x25519", "secp256r1"],
        signature_algorithms=["rsa_pss_rsae_sha256", "rsa_pkcs1_sha256"], certificate=cert(),
        groups_tls13=["x25519", "secp256r1"], groups_tls13_preference="server",
        signature_algorithms_tls13=["rsa_pss_rsae_sha256"],
        features=TlsFeatures(compression=False, renegotiation_info=True, extended_master_secret=True,
                             prefers_tls13=True),
        vulnerabilities=Vulnerabilities(heartbleed=False, ccs_injection=False, robot="NOT_VULNERABLE_NO_ORACLE"),
        evidence=["ev-1"], handshakes=50,
    )


def bad() -> TlsResult:
    r = good()
    protocols = dict(r.protocols)
    protocols["TLSv1.0"] = ["TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA"]
    protocols["TLSv1.2"] = [*protocols["TLSv1.2"], "TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA"]
    return r.model_copy(update={
        "protocols": protocols,
        "certificate": cert(key_bits=1024, signature_hash="sha1", days_to_expiry=-3, expired=True, chain_valid=False,
                            chain_error="unable to get local issuer certificate",
                            chain=[{"subject": "CN=pacs", "issuer": "CN=ca", "signature_hash": "sha1",
                                    "self_signed": "no"}]),
        "features": TlsFeatures(compression=True, renegotiation_info=False, extended_master_secret=False),
        "vulnerabilities": Vulnerabilities(heartbleed=True, ccs_injection=False, robot="VULNERABLE_STRONG_ORACLE"),
    })


def data_for(r: TlsResult) -> AuditData:
    # Facts only, as the probe records them: the checks judge them with the rule book themselves.
    ep = Endpoint(host="127.0.0.5", port=2762, protocol="tcp", state="open", service="dicom-tls", tls=r)
    return AuditData(endpoints=[ep], evidence=[])


CHECKS = ["tls.audit_completed", "tls.no_legacy_protocols", "tls.profile_bcp195_rfc8996",
          "tls.profile_modified_bcp195_rfc8996", "tls.weak_ciphers", "tls.forward_secrecy",
          "tls.certificate_key_size", "tls.certificate_expiry", "tls.certificate_chain",
          "tls.certificate_signature_hash", "tls.secure_renegotiation", "tls.vulnerabilities"]


@pytest.mark.parametrize("check_id", CHECKS)
def test_check_passes_on_a_conformant_server(check_id: str) -> None:
    # Given a conformant TLS result, When the check runs, Then it passes
    spec = REGISTRY.get(check_id)
    assert spec is not None
    findings = spec.run(data_for(good()))
    assert [f.status for f in findings] == ["pass"], findings


@pytest.mark.parametrize("check_id", [c for c in CHECKS if c != "tls.audit_completed"])
def test_check_fails_on_a_weak_server(check_id: str) -> None:
    # Given a weak TLS result, When the check runs, Then it fails
    spec = REGISTRY.get(check_id)
    assert spec is not None
    findings = spec.run(data_for(bad()))
    assert [f.status for f in findings] == ["fail"], findings


def test_failed_audit_is_an_error_finding() -> None:
    # Given a TLS audit that failed (silent port), When checked, Then audit_completed reports an error
    ep = Endpoint(host="127.0.0.5", port=2762, protocol="tcp", state="open", service="dicom-tls",
                  tls=TlsResult(error="no answer to ClientHello before the read timeout", evidence=["ev-9"]))
    spec = REGISTRY.get("tls.audit_completed")
    assert spec is not None
    assert [f.status for f in spec.run(AuditData(endpoints=[ep], evidence=[]))] == ["error"]


def test_profile_reasons_are_precise() -> None:
    # Given the weak result, When evaluated, Then each reason names the offending item
    v = profiles.evaluate(bad())
    reasons = v[B12].reasons
    assert "TLS 1.0 accepted" in reasons
    assert "RSA key 1024 bits below 2048" in reasons
    assert "certificate signed with SHA1" in reasons
    assert v[B12].verdict == "does_not_conform"
    # And 3DES is at its source's level: RFC 9325 §4.1 says SHOULD NOT (112 bits), so a deviation, not a reason
    assert "TLS_RSA_WITH_3DES_EDE_CBC_SHA accepted: 3DES (112-bit)" in v[B12].warnings
    assert not any("3DES" in x for x in reasons)
    assert ("TLS_RSA_WITH_AES_128_CBC_SHA accepted: static RSA/DH, PSK, KRB5 or GOST key exchange "
            "(no forward secrecy)") in v[B12].warnings
    assert "TLS_RSA_WITH_AES_128_CBC_SHA accepted: not in the profile's permitted list" in v[B13].reasons
    # And the conformant result conforms to both
    ok = profiles.evaluate(good())
    assert ok[B12].conforms and ok[B13].conforms, (ok[B12].reasons, ok[B13].reasons)


def test_profile_names_accept_both_spellings() -> None:
    book = profiles.load_profiles()
    assert book.find("BCP 195 RFC 8996, 9325 TLS Secure Transport Connection Profile") is not None
    assert book.find("Modified BCP 195 RFC 8996 TLS") is not None
    assert book.find("Basic TLS") is None


def test_retired_profile_fingerprints() -> None:
    # Given a server with TLS 1.0 and TLS_RSA_WITH_3DES_EDE_CBC_SHA, Then Basic TLS (B.1) is recognised
    found = profiles.retired_profiles(bad())
    assert any(f.startswith("Basic TLS") for f in found) and any(f.startswith("AES TLS") for f in found)
    # And the modern server matches no retired profile
    assert profiles.retired_profiles(good()) == []


def test_rules_file_rejects_unknown_suite(tmp_path: object) -> None:
    # Given a rules file naming a suite that does not exist, Then loading fails validation
    from pathlib import Path

    p = Path(str(tmp_path)) / "bad.yaml"
    p.write_text(BOOK_HEAD + "profiles:\n  - name: X\n    section: Y\n    rules:\n"
                 "      - {kind: allowed_suites_only, level: must, source: test, suites: [TLS_NOT_A_SUITE]}\n")
    with pytest.raises(ValueError, match="TLS_NOT_A_SUITE"):
        profiles.load_profiles(str(p))


BOOK_HEAD = ("legacy_versions: {versions: [SSLv3], source: test}\n"
             "suite_classes:\n  no_forward_secrecy: {why: static, kx: [RSA], source: test}\n"
             "weak_suite_classes: [no_forward_secrecy]\n")


@pytest.mark.parametrize(("classes", "message"), [
    ("  no_forward_secrecy: {why: static, kx: [RSA], source: test}\n  typo: {why: typo, kx: [RSAA], source: test}\n",
     "RSAA"),
    ("  other: {why: other, kx: [RSA], source: test}\n", "no_forward_secrecy"),
])
def test_rules_file_rejects_unknown_attribute_or_class(tmp_path: object, classes: str, message: str) -> None:
    # Given a suite class selecting on a value the registry does not have, or a missing class the checks
    # need, Then loading fails validation naming it
    from pathlib import Path

    p = Path(str(tmp_path)) / "bad.yaml"
    p.write_text("legacy_versions: {versions: [SSLv3], source: test}\nsuite_classes:\n" + classes +
                 "weak_suite_classes: [other]\nprofiles:\n  - name: X\n    section: Y\n    rules:\n"
                 "      - {kind: no_compression, level: must, source: test}\n")
    with pytest.raises(ValueError, match=message):
        profiles.load_profiles(str(p))


# One rule book: the checks and the profile rules judge every suite of the registry the same way.

def everything() -> TlsResult:
    """A server that accepts every suite of the registry in the versions that define it (and later ones)."""
    by_version: dict[str, list[str]] = {v: [] for v in TLS_VERSIONS}
    order = {"SSLv2": 0, "SSLv3": 1, "TLSv1": 2, "TLSv1.0": 2, "TLSv1.2": 4, "TLSv1.3": 5}
    for s in cipher_suites().values():
        if s.iana == "-":  # private GOST code points without an IANA name
            continue
        if s.tls13:
            by_version["TLSv1.3"].append(s.iana)
        elif s.sslv2:
            by_version["SSLv2"].append(s.iana)
        else:
            for v in TLS_VERSIONS[max(order[s.protocol], 1):5]:
                by_version[v].append(s.iana)
    return good().model_copy(update={"protocols": {v: list(dict.fromkeys(ss)) for v, ss in by_version.items()}})


def _suites_in(findings_summary: str) -> set[str]:
    return {w.strip(",") for w in findings_summary.split() if w.startswith(("TLS_", "SSL_"))}


def _flagged(check_id: str, r: TlsResult) -> set[str]:
    spec = REGISTRY.get(check_id)
    assert spec is not None
    [finding] = spec.run(data_for(r))
    return _suites_in(finding.summary) if finding.status == "fail" else set()


def _forbidden_by_b12(r: TlsResult, why: str, level: str) -> set[str]:
    v = profiles.evaluate(r)[B12]
    return {x.split(" accepted: ")[0] for x in (v.reasons if level == "must" else v.warnings)
            if x.endswith(" accepted: " + why)}


def test_forward_secrecy_check_agrees_with_the_profile_rules() -> None:
    # Given a server accepting every suite in the registry
    r = everything()
    book = profiles.load_profiles()
    why = book.suite_classes["no_forward_secrecy"].why
    # When the forward-secrecy check and the B.12 profile rules judge it
    check = _flagged("tls.forward_secrecy", r)
    rules = _forbidden_by_b12(r, why, "should")
    # Then both flag exactly the same suites, PSK and RSA_PSK included, and no TLS 1.3 or (EC)DHE suite
    assert check == rules
    assert {"TLS_PSK_WITH_AES_128_GCM_SHA256", "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_DH_RSA_WITH_AES_128_GCM_SHA256"} <= check
    assert not check & ({"TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                         "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"} | set(r.protocols["TLSv1.3"]))
    # And no suite the profile counts as forward-secret AEAD is called non-forward-secret
    assert not {s for s in check if book.in_class(s, "forward_secret_aead")}


def test_weak_cipher_check_agrees_with_the_profile_rules() -> None:
    # Given a server accepting every suite in the registry
    r = everything()
    book = profiles.load_profiles()
    # When the weak-cipher check and the B.12 rules of the same classes (at their sources' levels) judge it
    check = _flagged("tls.weak_ciphers", r)
    rules: set[str] = set()
    for name in book.weak_suite_classes:
        why = book.suite_classes[name].why
        rules |= _forbidden_by_b12(r, why, "must") | _forbidden_by_b12(r, why, "should")
    # Then they flag the same suites, every SSL 2.0 suite among them, and no modern AEAD suite
    assert check == rules
    # And 3DES alone is a SHOULD-level deviation (RFC 9325 §4.1: 112 bits is SHOULD NOT, below 112 MUST NOT)
    assert "TLS_RSA_WITH_3DES_EDE_CBC_SHA" in _forbidden_by_b12(r, book.suite_classes["triple_des"].why, "should")
    assert set(r.protocols["SSLv2"]) <= check
    assert "TLS_RSA_WITH_RC4_128_SHA" in check and "TLS_RSA_EXPORT_WITH_RC4_40_MD5" in check
    assert "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" not in check and not check & set(r.protocols["TLSv1.3"])


def test_legacy_protocol_check_agrees_with_the_profile_rules() -> None:
    # Given a server accepting every version, Then the check fails on exactly the versions both profiles forbid
    r = everything()
    spec = REGISTRY.get("tls.no_legacy_protocols")
    assert spec is not None
    [finding] = spec.run(data_for(r))
    for name in (B12, B13):
        forbidden = [x.removesuffix(" accepted") for x in profiles.evaluate(r)[name].reasons
                     if x.endswith(" accepted") and x.startswith(("SSL ", "TLS 1."))]
        labels = [profiles.VERSION_LABEL[v] for v in profiles.legacy_versions(r)]
        assert forbidden == labels == ["SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1"]
    assert finding.summary == "accepts SSLv2, SSLv3, TLSv1.0, TLSv1.1"
