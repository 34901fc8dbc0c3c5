"""The issue-15 stages inside a whole ``run_audit`` (inventory → identification → TLS audit → …): the
client-certificate stage reads the TLS audit's CertificateRequest fact, the NTP stage adds the UDP
endpoint the raw-socket inventory did not see, and their findings reach the report."""

from __future__ import annotations

import asyncio

from dcsaudit.config import parse_config
from dcsaudit.policy import load_policy
from dcsaudit.runner import run_audit
from tests.peers.common import LOOPBACK, TestPKI
from tests.peers.network_peers import chrony
from tests.peers.tls_peers import openssl_server


def test_run_audit_carries_client_cert_and_ntp_facts_to_the_report(pki: TestPKI) -> None:
    # Given s_server -verify (asks for a client certificate, accepts any) and chronyd, on loopback
    with openssl_server(pki, client_auth="optional") as tls_port, chrony() as ntp:
        cfg = parse_config({"deployment": "t", "hosts": [{"address": LOOPBACK, "tcp_ports": [tls_port]}],
                            "scan": {"use_nmap": False, "udp": False, "dicom_audit": False,
                                     "tls": {"vulnerabilities": False}, "ntp": {"ports": [ntp.ntp_port]},
                                     "timeouts": {"read": 1.5}}})
        # When the whole audit runs
        report = asyncio.run(run_audit(cfg, load_policy("default")))
    tls_ep = next(e for e in report.endpoints if e.port == tls_port)
    # Then the TLS audit's "optional" reached the client-certificate stage, which saw every defect accepted
    assert tls_ep.tls is not None and tls_ep.tls.client_certificate == "optional"
    assert tls_ep.client_certs is not None and tls_ep.client_certs.requested == "optional"
    assert {t.outcome for t in tls_ep.client_certs.trials} == {"accepted"}
    status = {f.check_id: f.status for f in report.findings if f.target == tls_ep.key}
    assert status["tls.client_cert_trust_checked"] == "fail"
    # And the NTP server is an endpoint of the report with its facts
    ntp_ep = next(e for e in report.endpoints if e.protocol == "udp" and e.port == ntp.ntp_port)
    assert ntp_ep.service == "ntp" and ntp_ep.ntp is not None and ntp_ep.ntp.stratum == 8
    assert {e.probe for e in report.evidence} >= {"tls.client_certs", "ntp.query", "ntp.control"}
