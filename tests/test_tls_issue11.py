"""Issue 11 against real peers: TLS 1.2 groups on ECDSA servers, DICOM inside legacy TLS, TLS_FALLBACK_SCSV,
profile rules at their source's level.

Expected values come from how each peer is configured (its -groups list, -serverpref, its versions,
DCMTK's documented profile suites) and, where a second opinion is cheap, from ``openssl s_client``
talking to the same peer — never from a previous run of the audit.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from dcsaudit.annex.tls_tables import tables
from dcsaudit.checks.base import REGISTRY, AuditData
from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TlsResult
from dcsaudit.probes import dicom_ul
from dcsaudit.probes.dicom_client import Target, connect, session_of
from dcsaudit.probes.tls import TlsAuditOptions, audit_tls, wire
from dcsaudit.probes.tls.engine import Outcome
from dcsaudit.probes.tls.enumerate import Enumerator, VersionResult
from dcsaudit.rules import tls_profiles
from tests.peers.common import LOOPBACK, TestPKI, require_program
from tests.peers.tls_peers import RsaPKI, jsse_server, openssl_server, storescp_tls
from tests.test_dicom_assoc import audit, make_ctx

B12 = "BCP 195 RFC 8996 TLS"
FAST = TlsAuditOptions(vulnerabilities=False)
# Debian's openssl.cnf sets MinProtocol TLSv1.2 and SECLEVEL 2; these switches bring TLS 1.0/1.1 back.
OLD_VERSIONS = ("-no_tls1_3", "-min_protocol", "TLSv1", "-cipher", "DEFAULT@SECLEVEL=0")


@pytest.fixture(scope="module")
def ec_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(Path(tmp_path_factory.mktemp("ec-pki")))  # ECDSA P-256 (trustme's default curve)


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> RsaPKI:
    return RsaPKI(Path(tmp_path_factory.mktemp("rsa-pki")))


def tls_audit(port: int, opts: TlsAuditOptions = FAST) -> TlsResult:
    cfg = parse_config({"deployment": "test", "hosts": [{"address": LOOPBACK}],
                        "scan": {"timeouts": {"read": 1.5, "tls_handshake": 1.5}}})
    ep = Endpoint(host=LOOPBACK, port=port, protocol="tcp", state="open", service="tls")
    return asyncio.run(audit_tls(AuditContext.create(cfg), ep, opts))


def s_client(port: int, *args: str) -> str:
    """What openssl s_client reports for one handshake (stdout and stderr)."""
    exe = require_program("openssl")
    p = subprocess.run([exe, "s_client", "-connect", f"{LOOPBACK}:{port}", *args], input=b"",
                       capture_output=True, timeout=10)
    return (p.stdout + p.stderr).decode(errors="replace")


def findings(check_id: str, r: TlsResult) -> list[tuple[str, str]]:
    spec = REGISTRY.get(check_id)
    assert spec is not None
    ep = Endpoint(host=LOOPBACK, port=2762, protocol="tcp", state="open", service="dicom-tls", tls=r)
    return [(f.status, f.summary) for f in spec.run(AuditData(endpoints=[ep], evidence=[]))]


# --- 1. TLS 1.2 groups on an ECDSA server ------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("versions", [("-tls1_2",), ()], ids=["tls1.2-only", "tls1.2+1.3"])
@pytest.mark.parametrize("serverpref", [True, False], ids=["serverpref", "client-order"])
def test_ecdsa_server_tls12_groups_and_order(ec_pki: TestPKI, versions: tuple[str, ...], serverpref: bool) -> None:
    # Given s_server with an ECDSA P-256 certificate and -groups X25519:P-256
    with openssl_server(ec_pki, versions=versions, serverpref=serverpref, extra=("-groups", "X25519:P-256")) as port:
        # (second opinion: s_client offering P-256 first gets X25519 only when the server orders)
        temp_key = s_client(port, "-tls1_2", "-curves", "P-256:X25519")
        # When audited
        r = tls_audit(port)
    assert ("X25519" in temp_key) is serverpref
    # Then both groups are found in TLS 1.2 although the certificate's curve is P-256
    assert r.certificate is not None and r.certificate.curve == "secp256r1"
    assert set(r.groups_tls12) == {"x25519", "secp256r1"}
    if serverpref:
        # And with server preference they come out in the server's order; groups it might rank below
        # P-256 cannot be seen in TLS 1.2 (each hello must offer P-256, which it would then take): said so
        assert r.groups_tls12 == ["x25519", "secp256r1"] and r.groups_tls12_preference == "server"
        assert [w for w in r.warnings if "cannot be told from unsupported" in w], r.warnings
    else:
        # With client preference a hello offering [group, P-256] gets the group whenever it is supported
        assert r.groups_tls12_preference == "client" and not r.warnings
    if not versions:
        assert r.groups_tls13 == ["x25519", "secp256r1"]


@pytest.mark.timeout(60)
def test_ecdsa_server_preferring_its_certificate_curve_is_undetermined_not_absent(ec_pki: TestPKI) -> None:
    # Given a TLS 1.2 ECDSA server that prefers P-256 (its certificate's curve) over X25519
    with openssl_server(ec_pki, versions=("-tls1_2",), serverpref=True, extra=("-groups", "P-256:X25519")) as port:
        r = tls_audit(port)
    # Then P-256 is listed, and the audit says that groups ranked below it cannot be observed in TLS 1.2
    # (the server needs P-256 offered and then always takes it): incomplete, said so, never a silent list
    assert r.groups_tls12 == ["secp256r1"]
    assert any("ECDSA certificate needs secp256r1" in w and "cannot be told from unsupported" in w
               for w in r.warnings), r.warnings


# --- 3. TLS_FALLBACK_SCSV (RFC 7507) ---------------------------------------------------------------

def test_fallback_scsv_codec() -> None:
    # Given a TLS 1.1 ClientHello built with the SCSV, When parsed back, Then 0x5600 is its last suite
    hello = wire.build_client_hello(wire.HelloSpec(version=0x0302, suites=[0x002F], fallback_scsv=True))
    info = wire.parse_client_hello(hello)
    assert info.cipher_suite_codes[-1] == 0x5600 and info.legacy_version == "TLSv1.1"
    # And without it the suite is absent
    plain = wire.parse_client_hello(wire.build_client_hello(wire.HelloSpec(version=0x0302, suites=[0x002F])))
    assert 0x5600 not in plain.cipher_suite_codes


@pytest.mark.timeout(60)
def test_openssl_accepting_tls10_to_12_refuses_the_fallback(rsa_pki: RsaPKI) -> None:
    # Given s_server accepting TLS 1.0-1.2 (OpenSSL implements RFC 7507)
    with openssl_server(rsa_pki, versions=OLD_VERSIONS) as port:
        r = tls_audit(port)
    # Then the fallback hello (TLS 1.1 with the SCSV) got inappropriate_fallback
    assert r.accepted_versions() == ["TLSv1.0", "TLSv1.1", "TLSv1.2"]
    assert r.features.fallback_scsv is True and r.features.fallback_scsv_status == "supported"
    assert r.features.fallback_scsv_detail is not None and "TLSv1.1" in r.features.fallback_scsv_detail
    # And the check passes, naming the legacy versions it still accepts
    [(status, summary)] = findings("tls.fallback_scsv", r)
    assert status == "pass" and "TLSv1.0, TLSv1.1" in summary


@pytest.mark.timeout(90)
def test_jsse_server_without_scsv_is_a_finding(rsa_pki: RsaPKI) -> None:
    # Given a Java (JSSE) server accepting TLS 1.0-1.2: JSSE does not implement RFC 7507
    with jsse_server(rsa_pki) as port:
        # (second opinion: s_client -fallback_scsv on TLS 1.1 completes a handshake)
        second = s_client(port, "-tls1_1", "-fallback_scsv", "-cipher", "DEFAULT@SECLEVEL=0")
        r = tls_audit(port)
    assert re.search(r"Protocol\s*:\s*TLSv1\.1", second), second[-500:]
    # Then the SCSV fact is "not supported" and tls.fallback_scsv fails on it
    assert r.accepted_versions() == ["TLSv1.0", "TLSv1.1", "TLSv1.2"]
    assert r.features.fallback_scsv is False and r.features.fallback_scsv_status == "not_supported"
    [(status, summary)] = findings("tls.fallback_scsv", r)
    assert status == "fail" and "without downgrade protection" in summary


@pytest.mark.timeout(60)
def test_single_version_server_has_no_fallback_to_test(rsa_pki: RsaPKI) -> None:
    # Given a TLS 1.2-only server, Then SCSV is not applicable (nothing to fall back to), said with why
    with openssl_server(rsa_pki, versions=("-tls1_2",)) as port:
        r = tls_audit(port)
    assert r.features.fallback_scsv is None and r.features.fallback_scsv_status == "not_applicable"
    assert findings("tls.fallback_scsv", r)[0][0] == "not_applicable"


@pytest.mark.parametrize(("answer", "status"), [
    (Outcome("timeout", detail="no complete answer before the read timeout"), "undetermined"),
    (Outcome("alert", alert=wire.Alert(2, 40)), "undetermined"),
    (Outcome("alert", alert=wire.Alert(2, 86)), "supported"),
])
def test_fallback_answers_other_than_the_alert_or_a_hello_are_undetermined(answer: Outcome, status: str) -> None:
    # Given an enumerator whose fallback hello gets ``answer`` (the decision, without a network)
    async def probe(hello: bytes, **_kw: object) -> Outcome:
        assert 0x5600 in wire.parse_client_hello(hello).cipher_suite_codes
        return answer

    en = Enumerator(probe, None)
    en.f.versions = {"TLSv1.2": VersionResult(True, [0xC02F]), "TLSv1.0": VersionResult(True, [0x002F])}
    asyncio.run(en.fallback(["TLSv1.0", "TLSv1.2"]))
    # Then only inappropriate_fallback is "supported"; anything else is undetermined with the answer named
    assert en.f.fallback_scsv_status == status
    assert en.f.fallback_scsv_detail is not None and "TLSv1.0 hello" in en.f.fallback_scsv_detail
    if status == "undetermined":
        assert en.f.fallback_scsv is None
        r = TlsResult(protocols={"TLSv1.0": ["TLS_RSA_WITH_AES_128_CBC_SHA"],
                                 "TLSv1.2": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]})
        r = r.model_copy(update={"features": r.features.model_copy(update={
            "fallback_scsv_status": status, "fallback_scsv_detail": en.f.fallback_scsv_detail})})
        assert findings("tls.fallback_scsv", r)[0][0] == "error"


# --- 5. Profile rules at the level of their source -------------------------------------------------

@pytest.mark.timeout(60)
def test_default_openssl_server_conforms_with_should_level_deviations(rsa_pki: RsaPKI) -> None:
    # Given a default s_server (RSA 2048, default suites: CBC suites with SHA-1 MACs among them)
    with openssl_server(rsa_pki) as port:
        r = tls_audit(port)
    cbc_sha1 = [s for s in r.protocols["TLSv1.2"] if s.endswith("_CBC_SHA")]
    assert cbc_sha1, r.protocols["TLSv1.2"]
    # When B.12 judges it
    v = tls_profiles.evaluate(r)[B12]
    # Then it conforms with SHOULD-level deviations, and every SHA-1-MAC CBC suite is listed among them
    assert v.verdict == "conforms_with_should_deviations" and v.conforms, v.reasons
    for s in cbc_sha1:
        assert any(w.startswith(f"{s} accepted: SHA-1 MAC") for w in v.warnings), (s, v.warnings)
    assert not any("SHA-1 MAC" in x for x in v.reasons)
    assert any("DCMTK" in src for src in v.warning_sources)
    # And the check passes naming the deviations, and the annex N.8-3 note says which verdict it is
    [(status, summary)] = findings("tls.profile_bcp195_rfc8996", r)
    assert status == "pass" and "with SHOULD-level deviations" in summary
    ep = Endpoint(host=LOOPBACK, port=port, protocol="tcp", state="open", service="dicom-tls", tls=r)
    n83 = dict((t.id, t) for _s, t in tables(AuditData(endpoints=[ep], evidence=[])))["N.8-3"]
    receiver = n83.rows[0][3]
    assert receiver.value == "Y" and "conforms with SHOULD-level deviations" in receiver.note
    assert any("SHOULD-level" in n and "RFC 9325 §4.2" in n for n in n83.notes)


# --- 2. DICOM inside legacy TLS --------------------------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize(("profile", "widened"), [("+pa", True), ("+px", False)])
def test_association_audit_over_dcmtk_tls_profiles(rsa_pki: RsaPKI, profile: str, widened: bool) -> None:
    # Given storescp +tls with the retired AES profile (+pa: TLS_RSA_WITH_AES_128_CBC_SHA only) or +px
    with storescp_tls(rsa_pki, profile) as port:
        # When its AE is audited over TLS, and its TLS port by the TLS audit
        ae = audit(make_ctx(port, "STORESCP", tls=True))
        r = tls_audit(port)
    # Then the AE facts are filled over TLS
    assert ae.error is None and ae.verification is True, ae.error
    assert ae.implementation == "DCMTK" and (ae.implementation_class_uid or "").startswith("1.2.276.0.7230010.3")
    assert ae.max_pdu_length and any(c.accepted for c in ae.presentation_contexts)
    # And every association records the TLS version and suite it ran over, one the TLS audit found accepted
    base = ae.attempts[0]
    assert base.purpose == "baseline" and base.tls is not None
    assert base.tls.cipher_suite in r.protocols[base.tls.version], (base.tls, r.protocols)
    assert base.tls.widened is widened
    if profile == "+pa":
        assert base.tls.cipher_suite == "TLS_RSA_WITH_AES_128_CBC_SHA"
    assert all(a.tls == base.tls for a in ae.attempts if a.outcome == "accepted")


@pytest.mark.timeout(30)
def test_widened_context_speaks_tls10(rsa_pki: RsaPKI) -> None:
    # Given s_server accepting only TLS 1.0 (below Python's and Debian's defaults)
    cfg = parse_config({"deployment": "test", "hosts": [{"address": LOOPBACK}]})
    ctx = AuditContext.create(cfg)
    with openssl_server(rsa_pki, versions=("-tls1",), ciphers="ALL:@SECLEVEL=0") as port:
        async def run() -> tuple[str, bool]:
            import ssl

            sc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            sc.check_hostname, sc.verify_mode = False, ssl.CERT_NONE
            target = Target(ctx, LOOPBACK, port, sc, dicom_ul.Timeouts(connect=2, tls=2, acse=2, dimse=2))
            _reader, writer = await connect(target)
            session = session_of(writer, target.widened)
            await dicom_ul.close_quietly(writer)
            assert session is not None
            return session.version, session.widened
        # When the association client connects, Then the default context fails and the widened one gets TLS 1.0
        assert asyncio.run(run()) == ("TLSv1.0", True)
