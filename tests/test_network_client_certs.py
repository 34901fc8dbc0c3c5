"""Defective client certificates presented to real TLS servers on loopback (issue 15 item 6, server side):
``openssl s_server -verify`` accepts anything, ``-Verify -verify_return_error`` refuses each defect,
DCMTK ``storescp +tls --require-peer-cert`` refuses them on DICOM; the checks and the N.8.4.2 table follow."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dcsaudit.annex.network_tables import client_cert_table
from dcsaudit.checks import REGISTRY
from dcsaudit.checks.base import AuditData, CheckSpec
from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Provenance
from dcsaudit.models.endpoint import Endpoint, Service
from dcsaudit.models.network import ClientCertRequest, ClientCertResult, ClientCertTrial
from dcsaudit.models.tls import TlsResult
from dcsaudit.runner import STAGES, Collected, run_stage
from tests.network_cells import cell_problems
from tests.peers.common import LOOPBACK, TestPKI
from tests.peers.tls_peers import openssl_server, storescp_tls

DEFECTS = ["untrusted_ca", "self_signed", "expired", "not_yet_valid", "wrong_key_usage"]


@pytest.fixture(scope="module")
def signing_ca(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The test CA the peers trust, as the deployment's signing CA (its key never leaves the test dir)."""
    d = Path(tmp_path_factory.mktemp("signing-ca"))
    pki.ca.private_key_pem.write_to_path(str(d / "ca.key"))
    return {"signing_ca_cert": str(pki.ca_file), "signing_ca_key": str(d / "ca.key")}


def _stage(port: int, service: Service, requested: str, *, client_certs: dict[str, Any] | None = None,
           creds: dict[str, Any] | None = None) -> tuple[Endpoint, AuditContext]:
    cfg = parse_config({"deployment": "t", "hosts": [{"address": LOOPBACK}], "credentials": creds or {},
                        "scan": {"timeouts": {"read": 1.5, "tls_handshake": 2.0, "connect": 1.0},
                                 "client_certs": client_certs or {}}})
    ctx = AuditContext.create(cfg)
    # What the TLS audit said about client certificates (its own tests cover that fact).
    ep = Endpoint(host=LOOPBACK, port=port, protocol="tcp", state="open", service=service,
                  tls=TlsResult(client_certificate=requested, protocols={"TLSv1.3": ["TLS_AES_128_GCM_SHA256"]}))
    got = Collected(endpoints=[ep])
    stage = next(s for s in STAGES if s.name == "tls.client_certs")
    asyncio.run(run_stage(ctx, stage, got))
    return got.endpoints[0], ctx


def _check(cid: str) -> CheckSpec:
    spec = REGISTRY.get(cid)
    assert spec is not None, cid
    return spec


def _findings(ep: Endpoint, ctx: AuditContext) -> dict[str, str]:
    data = AuditData(endpoints=[ep], evidence=ctx.evidence.items())
    out: dict[str, str] = {}
    for cid in ("tls.client_cert_trust_checked", "tls.client_cert_validity_checked"):
        (f,) = _check(cid).run(data)
        out[cid] = f.status
    return out


def _outcomes(r: ClientCertResult) -> dict[str, str]:
    return {t.kind: t.outcome for t in r.trials}


def test_s_server_verify_accepts_every_defective_certificate(pki: TestPKI, signing_ca: dict[str, str]) -> None:
    # Given openssl s_server -verify (asks for a certificate, continues whatever the verification says)
    with openssl_server(pki, client_auth="optional") as port:
        # When the defective certificates are presented
        ep, ctx = _stage(port, "https", "optional", client_certs=signing_ca)
    r = ep.client_certs
    assert r is not None and r.signing_ca
    # Then each one is accepted (the server answered the HTTP request) and both checks fail
    assert _outcomes(r) == dict.fromkeys(DEFECTS, "accepted")
    assert all(t.answer and t.answer.startswith("HTTP/1.0 200") for t in r.trials)
    assert r.control is not None and r.control.outcome == "accepted"
    assert _findings(ep, ctx) == {"tls.client_cert_trust_checked": "fail", "tls.client_cert_validity_checked": "fail"}
    # And the table shows it with tls.client_certs evidence
    t = client_cert_table(AuditData(endpoints=[ep], evidence=ctx.evidence.items()))
    assert [c.value for c in t.rows[0][2:7]] == ["accepted"] * 5
    assert not cell_problems(ctx.evidence.items(), [t], ("tls.",))


@pytest.mark.parametrize("versions", [(), ("-no_tls1_3",)], ids=["tls13", "tls12"])
def test_s_server_verify_return_error_refuses_each_defect(pki: TestPKI, signing_ca: dict[str, str],
                                                          versions: tuple[str, ...]) -> None:
    # Given s_server -Verify 2 -verify_return_error with the test CA (TLS 1.3: it refuses after our Finished)
    with openssl_server(pki, client_auth="required", extra=("-verify_return_error",), versions=versions) as port:
        ep, ctx = _stage(port, "https", "required", client_certs=signing_ca)
    r = ep.client_certs
    assert r is not None
    # Then every defect is refused with the alert that names it, and the good control is accepted
    assert _outcomes(r) == dict.fromkeys(DEFECTS, "refused")
    alerts = {t.kind: t.alert or "" for t in r.trials}
    assert "unknown ca" in alerts["untrusted_ca"] and "unknown ca" in alerts["self_signed"]
    assert "certificate expired" in alerts["expired"]
    assert "unsupported certificate" in alerts["wrong_key_usage"]
    assert all(t.isolated for t in r.trials)
    assert r.control is not None and r.control.outcome == "accepted"
    assert _findings(ep, ctx) == {"tls.client_cert_trust_checked": "pass", "tls.client_cert_validity_checked": "pass"}


def test_without_a_signing_ca_validity_refusals_are_undetermined(pki: TestPKI) -> None:
    # Given the refusing server, but no CA the product trusts to sign the expired/not-yet-valid/wrong-KU ones
    with openssl_server(pki, client_auth="required", extra=("-verify_return_error",)) as port:
        ep, ctx = _stage(port, "https", "required")
    r = ep.client_certs
    assert r is not None and not r.signing_ca and r.control is None
    assert _outcomes(r) == dict.fromkeys(DEFECTS, "refused")
    expired = r.trial("expired")
    assert expired is not None and not expired.isolated
    # Then the trust check passes, but the validity check cannot tell (they also came from an unknown CA)
    assert _findings(ep, ctx) == {"tls.client_cert_trust_checked": "pass", "tls.client_cert_validity_checked": "error"}
    t = client_cert_table(AuditData(endpoints=[ep], evidence=ctx.evidence.items()))
    assert t.rows[0][7].provenance == Provenance.NOT_OBSERVED  # no control
    assert "unknown CA" in t.rows[0][4].note


def test_storescp_require_peer_cert_refuses_defects_and_accepts_the_configured_client(pki: TestPKI) -> None:
    # Given DCMTK storescp +tls with the test CA and --require-peer-cert, and the deployment's client certificate
    creds = {"tls_client": {"cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}}
    with storescp_tls(pki, peer_cert="require") as port:
        ep, ctx = _stage(port, "dicom-tls", "required", creds=creds)
    r = ep.client_certs
    assert r is not None
    # Then the defective ones are refused and the configured one gets an A-ASSOCIATE-AC
    assert {k: v for k, v in _outcomes(r).items() if k in ("untrusted_ca", "self_signed")} == \
        {"untrusted_ca": "refused", "self_signed": "refused"}
    assert all(o == "refused" for o in _outcomes(r).values())
    assert r.control is not None and r.control.outcome == "accepted" and r.control.answer == "A-ASSOCIATE-AC"
    assert _findings(ep, ctx)["tls.client_cert_trust_checked"] == "pass"


def test_storescp_ignore_peer_cert_is_not_asked(pki: TestPKI) -> None:
    # Given a server that does not ask for a client certificate (the TLS audit said so)
    with storescp_tls(pki, peer_cert="ignore") as port:
        ep, ctx = _stage(port, "dicom-tls", "not_requested")
    # Then nothing is sent, and the checks have nothing to judge
    r = ep.client_certs
    assert r is not None and r.trials == [] and r.requested == "not_requested"
    data = AuditData(endpoints=[ep], evidence=ctx.evidence.items())
    assert _check("tls.client_cert_trust_checked").run(data) == []


def _result(outcomes: dict[str, str], isolated: bool = True, control: str | None = "accepted",
            requested: ClientCertRequest = "required") -> ClientCertResult:
    return ClientCertResult(
        requested=requested, signing_ca=isolated,
        control=ClientCertTrial(kind="control", outcome=control, isolated=True, evidence="ev-9") if control else None,
        trials=[ClientCertTrial(kind=k, outcome=o, isolated=isolated or k in ("untrusted_ca", "self_signed"),
                                evidence=f"ev-{i}") for i, (k, o) in enumerate(outcomes.items())])


@pytest.mark.parametrize(("outcomes", "isolated", "control", "trust", "validity"), [
    (dict.fromkeys(DEFECTS, "refused"), True, "accepted", "pass", "pass"),
    ({**dict.fromkeys(DEFECTS, "refused"), "expired": "accepted"}, True, "accepted", "pass", "fail"),
    ({**dict.fromkeys(DEFECTS, "refused"), "self_signed": "accepted"}, True, "accepted", "fail", "pass"),
    (dict.fromkeys(DEFECTS, "refused"), True, "refused", "error", "error"),  # even the good one refused
    ({**dict.fromkeys(DEFECTS, "refused"), "untrusted_ca": "undetermined"}, True, None, "error", "pass"),
    ({**dict.fromkeys(DEFECTS, "refused"), "expired": "association_rejected"}, True, None, "pass", "pass"),
])
def test_checks_on_constructed_results(outcomes: dict[str, str], isolated: bool, control: str | None, trust: str,
                                       validity: str) -> None:
    ep = Endpoint(host=LOOPBACK, port=2762, protocol="tcp", state="open", service="dicom-tls",
                  client_certs=_result(outcomes, isolated, control))
    data = AuditData(endpoints=[ep], evidence=[])
    assert _check("tls.client_cert_trust_checked").run(data)[0].status == trust
    assert _check("tls.client_cert_validity_checked").run(data)[0].status == validity


def test_accepted_without_knowing_whether_a_certificate_was_asked_is_undetermined() -> None:
    # Given sessions that went on, but no TLS audit said whether the server sends a CertificateRequest
    ep = Endpoint(host=LOOPBACK, port=2762, protocol="tcp", state="open", service="dicom-tls",
                  client_certs=_result(dict.fromkeys(DEFECTS, "accepted"), requested="unknown"))
    data = AuditData(endpoints=[ep], evidence=[])
    # Then neither check claims the product accepted a bad certificate
    assert _check("tls.client_cert_trust_checked").run(data)[0].status == "error"
    assert _check("tls.client_cert_validity_checked").run(data)[0].status == "error"
    assert client_cert_table(data).rows[0][2].provenance == Provenance.NOT_OBSERVED
