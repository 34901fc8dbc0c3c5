"""``dcsaudit listen --tls-cert-tests`` (issue 15 item 6, the product as TLS client): DCMTK ``storescu +tls``
connects once per certificate, with and without ``--ignore-peer-cert``; each served certificate's fate is
recorded, judged by ``tls.client_validates_server_cert`` and shown in the N.8.4.2 server-certificate table.

DCMTK 3.6.x verifies the chain and the validity period but never the host name, so with a CA file it
still goes on with a certificate for another host that a trusted CA signed: that is a true finding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcsaudit.models.core import Provenance
from dcsaudit.models.network import SERVER_CERT_KINDS
from dcsaudit.models.report import Report
from tests.annex_invariants import evidence_violations, mark_violations
from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, stop, wait_for_port
from tests.test_listen_dicom import synthetic_instance

ROUNDS = 1 + len(SERVER_CERT_KINDS)  # the control, then one connection per defective certificate


def _listen_with_storescu(pki: TestPKI, tmp: Path, peer_auth: list[str], *, signing_ca: bool) -> Report:
    storescu = require_program("storescu")
    port, out = free_port(), tmp / "out"
    extra: list[str] = []
    if signing_ca:
        key = tmp / "ca.key"
        pki.ca.private_key_pem.write_to_path(str(key))
        extra = ["--tls-cert-signing-ca", str(pki.ca_file), "--tls-cert-signing-key", str(key)]
    # Given dcsaudit listen serving the good certificate, then one defective certificate per TLS connection
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcsaudit.cli", "listen", "--dicom-tls-port", str(port), "--tls-cert",
         str(pki.server_chain), "--tls-key", str(pki.server_key), "--tls-cert-tests", *extra, "--duration", "6",
         "--out", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    codes = []
    try:
        wait_for_port(port)  # a bare connect sends no ClientHello: it uses up no certificate
        sc = synthetic_instance(tmp / "sc.dcm")
        # When storescu (anonymous TLS, no client certificate) stores once per certificate (bounded: ROUNDS)
        for _ in range(ROUNDS):
            r = subprocess.run([storescu, "+tla", *peer_auth, "-aet", "MODALITY1", "-aec", "DCSAUDIT", LOOPBACK,
                                str(port), str(sc)], capture_output=True, text=True, timeout=20,
                               env={**os.environ, "TCP_NODELAY": "1"})
            codes.append(r.returncode)
        _stdout, stderr = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode in (0, 1), stderr.decode()
    report = Report.model_validate(json.loads((out / "report.json").read_text()))
    served = [i for i in report.initiators if i.served_certificate is not None]
    # storescu's exit status agrees with what listen recorded, connection by connection
    assert [i.served_certificate.outcome == "accepted" for i in served if i.served_certificate] == \
        [c == 0 for c in codes], (codes, [i.served_certificate for i in served])
    return report


def _finding(report: Report) -> tuple[str, str]:
    [f] = [f for f in report.findings if f.check_id == "tls.client_validates_server_cert"]
    return f.status, f.summary


def _table_values(report: Report) -> dict[str, tuple[Provenance, str]]:
    [t] = [t for s in report.annex.sections for t in s.tables if t.id == "N.8.4.2-server-cert"]
    [row] = t.rows
    assert row[0].value == f"{LOOPBACK} (as TLS client)"
    return {col: (c.provenance, c.value) for col, c in zip(t.columns[1:], row[1:], strict=True)}


@pytest.mark.timeout(90)
def test_storescu_ignoring_peer_cert_accepts_every_bad_certificate(pki: TestPKI, tmp_path: Path) -> None:
    report = _listen_with_storescu(pki, tmp_path, ["-ic"], signing_ca=True)
    # Then every certificate, defective or not, was followed by an A-ASSOCIATE-RQ: a finding
    kinds = [i.served_certificate.kind for i in report.initiators if i.served_certificate]
    assert kinds == ["control", *SERVER_CERT_KINDS]
    assert all(i.served_certificate.outcome == "accepted" and i.served_certificate.associate_rq
               for i in report.initiators if i.served_certificate)
    status, summary = _finding(report)
    assert status == "fail"
    for what in ("unknown CA", "self-signed", "expired", "another host name"):
        assert what in summary, summary
    # And the annex shows each one accepted, citing the listen capture
    values = _table_values(report)
    assert all(v == (Provenance.VERIFIED, "accepted (went on: A-ASSOCIATE-RQ)") for v in values.values()), values
    assert not mark_violations(report) and not evidence_violations(report)


@pytest.mark.timeout(90)
def test_storescu_with_ca_file_refuses_bad_chains_but_not_a_wrong_host(pki: TestPKI, tmp_path: Path) -> None:
    report = _listen_with_storescu(pki, tmp_path, ["+cf", str(pki.ca_file)], signing_ca=True)
    served = {i.served_certificate.kind: i.served_certificate for i in report.initiators if i.served_certificate}
    # Then the control went on, the unknown CA, self-signed and expired certificates were refused with an alert
    assert served["control"].outcome == "accepted"
    assert served["untrusted_ca"].outcome == "refused" and served["untrusted_ca"].alert == "TLSV1_ALERT_UNKNOWN_CA"
    assert served["self_signed"].outcome == "refused" and served["self_signed"].alert
    assert served["expired"].outcome == "refused" and served["expired"].alert == "SSLV3_ALERT_CERTIFICATE_EXPIRED"
    assert served["expired"].isolated  # signed by the CA storescu trusts: expiry is its only defect
    # And the wrong-host certificate (trusted CA, CN wrong-host.invalid) was accepted: DCMTK checks no host name
    assert served["wrong_host_name"].outcome == "accepted" and served["wrong_host_name"].isolated
    status, summary = _finding(report)
    assert status == "fail" and summary.endswith("for another host name"), summary
    values = _table_values(report)
    assert values["From an unknown CA"] == (Provenance.VERIFIED, "refused (TLSV1_ALERT_UNKNOWN_CA)")
    assert values["Expired"] == (Provenance.VERIFIED, "refused (SSLV3_ALERT_CERTIFICATE_EXPIRED)")
    assert values["Wrong host name"] == (Provenance.VERIFIED, "accepted (went on: A-ASSOCIATE-RQ)")
    assert not mark_violations(report) and not evidence_violations(report)


@pytest.mark.timeout(60)
def test_a_client_that_checks_the_host_name_refuses_all_four(pki: TestPKI, tmp_path: Path) -> None:
    import ssl

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from dcsaudit.checks.base import AuditData
    from dcsaudit.checks.network_services import client_validates_server_cert
    from dcsaudit.evidence import EvidenceLog
    from dcsaudit.listeners.bad_server_certs import SigningCa
    from dcsaudit.listeners.dicom_scp import DicomListener

    key = tmp_path / "ca.key"
    pki.ca.private_key_pem.write_to_path(str(key))
    log = EvidenceLog()
    lst = DicomListener(LOOPBACK, None, 0, log, tls_cert=pki.server_chain, tls_key=pki.server_key, tls_ca=None,
                        store_dir=None, cert_tests=True, signing_ca=SigningCa(pki.ca_file, key))
    lst.start()
    answered = []
    try:
        # Given a pynetdicom SCU whose TLS context trusts only the test CA and checks the host name (RFC 6125)
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = 10
        # When it associates once per certificate
        assert lst.dicom_tls_port is not None
        for _ in range(ROUNDS):
            assoc = ae.associate(LOOPBACK, lst.dicom_tls_port, tls_args=(ctx, LOOPBACK))
            answered.append(assoc.is_established)
            if assoc.is_established:
                assoc.release()
    finally:
        inits = lst.stop()
    # Then only the control went on; every defective certificate was refused during the handshake
    assert answered == [True, False, False, False, False]
    served = {i.served_certificate.kind: i.served_certificate for i in inits if i.served_certificate}
    assert set(served) == {"control", *SERVER_CERT_KINDS}
    assert all(s.outcome == "refused" and s.handshake == "failed" for k, s in served.items() if k != "control")
    # And the check passes, naming each refusal
    [v] = list(client_validates_server_cert(AuditData(endpoints=[], evidence=log.items(), initiators=inits)))
    assert v.status == "pass" and "for another host name" in v.summary, v


def _initiator(kind: str, outcome: str, *, isolated: bool = True) -> object:
    from dcsaudit.models.dicom import Initiator
    from dcsaudit.models.network import ServedCertificate

    served = ServedCertificate(kind=kind, isolated=isolated, subject="CN=x", sha256="0" * 64,
                               handshake="completed" if outcome == "accepted" else "failed",
                               associate_rq=outcome == "accepted", outcome=outcome, detail=f"{kind} {outcome}")
    return Initiator(calling_ae="", called_ae="", peer="192.0.2.7", tls=True, served_certificate=served,
                     evidence=[f"ev-{kind}"])


@pytest.mark.parametrize(("records", "status", "words"), [
    # every defective certificate refused, the control accepted, each defect alone: pass
    ([("control", "accepted", True), *((k, "refused", True) for k in SERVER_CERT_KINDS)], "pass", "refused every"),
    # too few connections: the last two certificates never came round
    ([("control", "accepted", True), ("untrusted_ca", "refused", True), ("self_signed", "refused", True)], "error",
     "expired: not tried"),
    # the control refused too: refusals prove nothing
    ([("control", "refused", True), *((k, "refused", True) for k in SERVER_CERT_KINDS)], "error", "control"),
    # no signing CA: expired / wrong host also came from the unknown CA
    ([("control", "accepted", True), ("untrusted_ca", "refused", True), ("self_signed", "refused", True),
      ("expired", "refused", False), ("wrong_host_name", "refused", False)], "error", "signing-ca"),
    # one accepted is a finding even when others were never tried
    ([("control", "accepted", True), ("untrusted_ca", "accepted", True)], "fail", "unknown CA"),
])
def test_judgement_on_recorded_connections(records: list[tuple[str, str, bool]], status: str, words: str) -> None:
    from dcsaudit.checks.base import AuditData
    from dcsaudit.checks.network_services import client_validates_server_cert

    inits = [_initiator(k, o, isolated=i) for k, o, i in records]
    [v] = list(client_validates_server_cert(AuditData(endpoints=[], evidence=[], initiators=inits)))  # type: ignore[arg-type]
    assert v.status == status and words in v.summary, v
    assert v.target == "initiator 192.0.2.7 (TLS client)" and v.evidence


@pytest.mark.timeout(30)
def test_port_checks_and_junk_use_up_no_certificate(pki: TestPKI) -> None:
    import socket

    from dcsaudit.evidence import EvidenceLog
    from dcsaudit.listeners.dicom_scp import DicomListener

    lst = DicomListener(LOOPBACK, None, 0, EvidenceLog(), tls_cert=pki.server_chain, tls_key=pki.server_key,
                        tls_ca=None, store_dir=None, cert_tests=True, handshake_timeout=2.0)
    lst.start()
    try:
        # Given a bare connect and a connection that sends bytes that are no ClientHello
        with socket.create_connection((LOOPBACK, lst.dicom_tls_port), timeout=5):
            pass
        with socket.create_connection((LOOPBACK, lst.dicom_tls_port), timeout=5) as junk:
            junk.sendall(b"\x16\x03\x01\x00\x05hello")
            junk.settimeout(5)
            try:
                junk.recv(64)
            except OSError:
                pass
        # When a real TLS client then connects (no validation: it goes on with anything)
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((LOOPBACK, lst.dicom_tls_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=LOOPBACK):
            pass
    finally:
        inits = lst.stop()
    # Then only the real client got a certificate from the cycle, and it was the first one: the control
    served = [i.served_certificate for i in inits if i.served_certificate is not None]
    assert [s.kind for s in served] == ["control"], inits
    assert served[0].outcome == "refused" and "closed without an A-ASSOCIATE-RQ" in served[0].detail


def test_no_tls_connection_at_all_is_undetermined_not_silence(pki: TestPKI) -> None:
    from dcsaudit.checks import REGISTRY, AuditData
    from dcsaudit.evidence import EvidenceLog
    from dcsaudit.listeners.dicom_scp import DicomListener

    # Given the certificate tests are on and the product never connects
    log = EvidenceLog()
    lst = DicomListener(LOOPBACK, None, 0, log, tls_cert=pki.server_chain, tls_key=pki.server_key,
                        tls_ca=None, store_dir=None, cert_tests=True, handshake_timeout=2.0)
    lst.start()
    inits = lst.stop()
    # Then the check says it could not tell (error), citing the listener's evidence, and never passes
    spec = next(s for s in REGISTRY.all() if s.id == "tls.client_validates_server_cert")
    findings = spec.run(AuditData(endpoints=[], evidence=log.items(), initiators=inits), severity="high", gating=True)
    assert [f.status for f in findings] == ["error"]
    assert "no TLS connection" in findings[0].summary and findings[0].evidence
