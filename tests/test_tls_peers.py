"""The TLS audit against real peers on 127.0.0.1: openssl s_server, DCMTK storescp, Orthanc, rsyslog, bad peers.

Expected values come from how each peer is configured (its suite list, DCMTK's documented profile
suites), never from a previous run of the audit.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import pytest

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TlsResult
from dcsaudit.probes.tls import audit_tls
from dcsaudit.rules import tls_profiles
from dcsaudit.rules.tls_suites import cipher_suites
from tests.peers.common import require_program
from tests.peers.tls_peers import RsaPKI, bad_server, openssl_server, orthanc_tls, rsyslog_gtls, storescp_tls

B12 = "BCP 195 RFC 8996 TLS"
B13 = "Modified BCP 195 RFC 8996 TLS"
OPENSSL_TO_IANA = {s.openssl: s.iana for s in cipher_suites().values() if s.openssl}


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> RsaPKI:
    return RsaPKI(Path(tmp_path_factory.mktemp("rsa-pki")))


def run_audit(port: int, pki: RsaPKI | None = None, with_client_cert: bool = False) -> tuple[TlsResult, AuditContext]:
    creds: dict[str, object] = {}
    if pki is not None:
        creds["ca_file"] = str(pki.ca_file)
        if with_client_cert:
            creds["tls_client"] = {"cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    cfg = parse_config({"deployment": "test", "hosts": [{"address": "127.0.0.1"}], "credentials": creds,
                        "scan": {"timeouts": {"read": 1.5, "tls_handshake": 1.5}}})
    ctx = AuditContext.create(cfg)
    ep = Endpoint(host="127.0.0.1", port=port, protocol="tcp", state="open", service="tls")
    return asyncio.run(audit_tls(ctx, ep)), ctx


ORDER = ["ECDHE-RSA-AES256-GCM-SHA384", "AES128-SHA", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256"]


def test_openssl_server_order_is_reported_exactly(rsa_pki: RsaPKI) -> None:
    # Given s_server with a chosen TLS 1.2 order and -serverpref, TLS 1.3 with two suites in a chosen order
    with openssl_server(rsa_pki, ciphers=":".join(ORDER), serverpref=True,
                        tls13_suites="TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256") as port:
        # When audited
        r, _ = run_audit(port, rsa_pki)
    # Then suites come out as IANA names in exactly the server's order
    assert r.error is None
    assert r.protocols["TLSv1.2"] == [OPENSSL_TO_IANA[o] for o in ORDER]
    assert r.protocols["TLSv1.3"] == ["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"]
    assert r.preference == "server" and r.preference_by_version["TLSv1.3"] == "server"
    assert not r.protocols["TLSv1.0"]  # Debian's openssl.cnf sets MinProtocol = TLSv1.2
    assert not r.protocols["SSLv3"] and not r.protocols["SSLv2"]
    # And the certificate, groups and signature schemes are measured
    assert r.certificate is not None and r.certificate.key_type == "RSA" and r.certificate.key_bits == 2048
    assert r.certificate.chain_valid is True and r.certificate.matches_address is True
    assert "x25519" in r.groups_tls13 and "secp256r1" in r.groups_tls12
    assert "rsa_pss_rsae_sha256" in r.signature_algorithms_tls13
    assert "rsa_pkcs1_sha256" in r.signature_algorithms_tls12
    assert r.client_certificate == "not_requested"
    assert r.features.renegotiation_info is True and r.features.compression is False
    # And sslyze's vulnerability plugins ran (OpenSSL 3 is not vulnerable)
    assert r.vulnerabilities.heartbleed is False and r.vulnerabilities.ccs_injection is False
    # And the probe recorded facts only; the rule book's verdicts on them give precise reasons
    assert r.profiles == {} and r.retired_profiles == []
    verdicts = tls_profiles.evaluate(r)
    # (the server prefers static-RSA CBC over TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: RFC 9325 §4.2.1 MUST)
    assert not verdicts[B12].conforms and verdicts[B12].verdict == "does_not_conform"
    assert ("server prefers TLS_RSA_WITH_AES_128_CBC_SHA over TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            in verdicts[B12].reasons)
    # And the SHA-1 MAC is DCMTK's stricter practice, a SHOULD-level note, not a MUST-level reason
    assert any(w.startswith("TLS_RSA_WITH_AES_128_CBC_SHA accepted: SHA-1 MAC") for w in verdicts[B12].warnings)
    assert not any("SHA-1 MAC" in x for x in verdicts[B12].reasons)
    assert any(w.startswith("TLS_RSA_WITH_AES_128_CBC_SHA accepted: static RSA") for w in verdicts[B12].warnings)


def test_openssl_server_without_serverpref_follows_client_order(rsa_pki: RsaPKI) -> None:
    # Given the same suites without -serverpref
    with openssl_server(rsa_pki, ciphers=":".join(ORDER), versions=("-no_tls1_3",)) as port:
        r, _ = run_audit(port, rsa_pki)
    # Then the accepted set is the same and the order is marked as the client's
    assert sorted(r.protocols["TLSv1.2"]) == sorted(OPENSSL_TO_IANA[o] for o in ORDER)
    assert r.preference == "client"
    assert not r.protocols["TLSv1.3"]


@pytest.mark.parametrize("tls13", [True, False], ids=["tls13", "tls12-only"])
def test_required_client_certificate(rsa_pki: RsaPKI, tls13: bool) -> None:
    versions = () if tls13 else ("-no_tls1_3",)
    with openssl_server(rsa_pki, client_auth="required", versions=versions,
                        ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384") as port:
        # Given a server that requires a client certificate, When audited without credentials
        r, _ = run_audit(port, rsa_pki)
        # Then it is reported required, and still enumerated (raw hellos need no certificate)
        assert r.client_certificate == "required"
        assert set(r.protocols["TLSv1.2"]) == {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                               "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}
        # When audited with the configured client certificate
        r2, ctx = run_audit(port, rsa_pki, with_client_cert=True)
    # Then the enumeration is the same and the mutual-TLS handshake is recorded as completed
    assert r2.protocols == r.protocols and r2.client_certificate == "required"
    mtls = [e for e in ctx.evidence.items() if "configured client certificate" in e.summary]
    assert mtls and mtls[0].data["completed"] is True


def test_optional_client_certificate(rsa_pki: RsaPKI) -> None:
    # Given a server that asks for but does not require a certificate (s_server -verify)
    with openssl_server(rsa_pki, client_auth="optional") as port:
        r, _ = run_audit(port, rsa_pki)
    # Then it is optional
    assert r.client_certificate == "optional"


# DCMTK 3.6.7 dcmtls/docs/ciphers.txt: the suites each profile offers (RSA certificate).
B10_SUITES = {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
              "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"}


@pytest.mark.parametrize(("profile", "tls12", "retired", "old_versions"), [
    ("+py", B10_SUITES, "Non-downgrading BCP 195 TLS", False),
    ("+px", B10_SUITES | {"TLS_RSA_WITH_AES_128_CBC_SHA"}, "BCP 195 TLS", True),
    ("+pz", B10_SUITES, "Extended BCP 195 TLS", False),
    ("+pa", {"TLS_RSA_WITH_AES_128_CBC_SHA"}, "AES TLS", True),
    ("+pn", {"TLS_RSA_WITH_NULL_SHA"}, "IHE ATNA unencrypted (NULL) TLS", True),
])
def test_storescp_profiles(rsa_pki: RsaPKI, profile: str, tls12: set[str], retired: str, old_versions: bool) -> None:
    # Given storescp +tls with one of DCMTK 3.6.7's profiles
    with storescp_tls(rsa_pki, profile) as port:
        r, _ = run_audit(port, rsa_pki)
    # Then the TLS 1.2 suite set, the old-version acceptance and the retired profile are recognised
    assert set(r.protocols["TLSv1.2"]) == tls12
    assert bool(r.protocols["TLSv1.0"]) == old_versions
    found = tls_profiles.retired_profiles(r)
    assert any(p.startswith(retired + " (") for p in found), found
    # And none of DCMTK 3.6.7's profiles conforms to B.13 (TLS 1.3 CCM suites missing at best)
    assert not tls_profiles.evaluate(r)[B13].conforms


@pytest.mark.parametrize("required", [True, False])
def test_orthanc_dicom_tls(rsa_pki: RsaPKI, required: bool) -> None:
    # Given Orthanc with DicomTlsEnabled and DicomTlsRemoteCertificateRequired on/off
    with orthanc_tls(rsa_pki, remote_certificate_required=required) as port:
        start = time.perf_counter()
        r, _ = run_audit(port, rsa_pki)
        elapsed = time.perf_counter() - start
    # Then client authentication is classified without waiting out a timeout
    assert r.client_certificate == ("required" if required else "optional")
    assert r.protocols["TLSv1.2"] and r.protocols["TLSv1.3"]
    assert elapsed < 3.0


def test_rsyslog_gtls_input(rsa_pki: RsaPKI) -> None:
    # Given rsyslogd with an imtcp gtls input (GnuTLS)
    with rsyslog_gtls(rsa_pki) as port:
        r, _ = run_audit(port, rsa_pki)
    # Then TLS 1.2 is enumerated with GnuTLS's suites and its anonymous suites are named in the verdict
    assert r.error is None and r.protocols["TLSv1.2"]
    assert "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in r.protocols["TLSv1.2"]
    assert r.certificate is not None and r.certificate.chain_valid is True
    assert "TLS_DH_anon_WITH_AES_128_GCM_SHA256 accepted: anonymous key exchange" in tls_profiles.evaluate(r)[B12].reasons


def test_psk_suites_are_judged_alike_by_checks_and_profiles(rsa_pki: RsaPKI) -> None:
    # Given s_server with a pre-shared key: PSK, RSA_PSK (no forward secrecy) and DHE_PSK (ephemeral) suites
    ciphers = "PSK-AES128-GCM-SHA256:RSA-PSK-AES128-GCM-SHA256:DHE-PSK-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
    with openssl_server(rsa_pki, ciphers=ciphers + ":@SECLEVEL=0", versions=("-no_tls1_3",),
                        extra=("-psk", "0102030405060708")) as port:
        r, _ = run_audit(port, rsa_pki)
    static = {"TLS_PSK_WITH_AES_128_GCM_SHA256", "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256"}
    assert static | {"TLS_DHE_PSK_WITH_AES_128_GCM_SHA256"} <= set(r.protocols["TLSv1.2"])
    # Then the forward-secrecy check and the B.12 profile rules name the same suites: PSK and RSA_PSK only
    assert set(tls_profiles.non_forward_secret_suites(r)) == static
    warned = {w.split(" accepted: ")[0] for w in tls_profiles.evaluate(r)[B12].warnings if "no forward secrecy" in w}
    assert warned == static


def _nmap_suites(port: int) -> dict[str, set[str]]:
    exe = require_program("nmap")
    out = subprocess.run([exe, "-Pn", "-n", "--script", "ssl-enum-ciphers", "-p", str(port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=120).stdout
    found: dict[str, set[str]] = {}
    version = ""
    for line in out.splitlines():
        m = re.match(r"^\|\s+(TLSv1\.[0-3]|SSLv3):", line)
        if m:
            version = m.group(1).replace("TLSv1:", "TLSv1.0")
            found.setdefault(version, set())
            continue
        m = re.match(r"^\|\s+(TLS_[A-Z0-9_]+)", line)
        if m and version:
            found[version].add(m.group(1))
    return found


@pytest.mark.parametrize("peer", ["openssl", "storescp"])
def test_accepted_suites_match_nmap(rsa_pki: RsaPKI, peer: str) -> None:
    # Given a peer, When both dcsaudit and nmap ssl-enum-ciphers (an independent implementation) scan it
    cm = (openssl_server(rsa_pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA:DHE-RSA-AES128-SHA256")
          if peer == "openssl" else storescp_tls(rsa_pki, "+px"))
    with cm as port:
        r, _ = run_audit(port, rsa_pki)
        nm = _nmap_suites(port)
    # Then the accepted suite sets agree per version (nmap names suites without "_WITH_" variants alike)
    assert nm, "nmap produced no ssl-enum-ciphers output"
    for version in ("TLSv1.0", "TLSv1.1", "TLSv1.2"):
        ours = {s for s in r.protocols[version]}
        theirs = nm.get(version.replace("TLSv1.0", "TLSv1.0"), set())
        assert ours == theirs, (version, ours ^ theirs)


@pytest.mark.parametrize("kind", ["garbage", "reset", "silent", "http"])
def test_bad_peers_give_an_error_with_a_reason(kind: str) -> None:
    # Given a hostile or broken port
    with bad_server(kind) as port:  # type: ignore[arg-type]
        start = time.perf_counter()
        r, ctx = run_audit(port)
        elapsed = time.perf_counter() - start
    # Then the audit returns an error result with evidence carrying a reason, quickly
    assert r.error
    ev = ctx.evidence.get(r.evidence[0])
    assert ev is not None and not ev.ok and ev.reason is not None
    assert elapsed < 5
