"""DICOMweb capability and access control (PS3.18, PS3.2 N.6.3 / N.8.6) against Orthanc with its DICOMweb
plugin on loopback: authentication off (unauthenticated QIDO-RS found), on with a registered user (not
found; the configured credentials confirm the service); an HTTPS server that is not DICOMweb."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dcsaudit.annex.network_tables import n6_3, n8_6
from dcsaudit.checks import REGISTRY
from dcsaudit.checks.base import AuditData
from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Provenance
from dcsaudit.models.endpoint import Endpoint, Service
from dcsaudit.models.network import DicomwebAnswer, DicomwebResult
from dcsaudit.runner import STAGES, Collected, run_stage
from tests.network_cells import cell_problems
from tests.peers.common import LOOPBACK, TestPKI
from tests.peers.network_peers import orthanc_dicomweb
from tests.peers.tls_peers import openssl_server

CHECKS = ("dicomweb.qido_requires_authentication", "dicomweb.wado_requires_authentication",
          "dicomweb.stow_requires_authentication", "dicomweb.over_tls", "dicomweb.hsts", "dicomweb.cors_restricted")


def _stage(port: int, service: Service = "http", auth: dict[str, Any] | None = None,
           base_paths: list[str] | None = None) -> tuple[Endpoint, AuditContext]:
    dw: dict[str, Any] = {"auth": auth} if auth else {}
    if base_paths:
        dw["base_paths"] = base_paths
    cfg = parse_config({"deployment": "t", "hosts": [{"address": LOOPBACK}],
                        "scan": {"timeouts": {"read": 2.0, "connect": 1.0}, "dicomweb": dw}})
    ctx = AuditContext.create(cfg)
    got = Collected(endpoints=[Endpoint(host=LOOPBACK, port=port, protocol="tcp", state="open", service=service)])
    asyncio.run(run_stage(ctx, next(s for s in STAGES if s.name == "dicomweb"), got))
    return got.endpoints[0], ctx


def _statuses(ep: Endpoint, ctx: AuditContext) -> dict[str, str]:
    data = AuditData(endpoints=[ep], evidence=ctx.evidence.items())
    out: dict[str, str] = {}
    for cid in CHECKS:
        spec = REGISTRY.get(cid)
        assert spec is not None
        found = spec.run(data)
        out[cid] = found[0].status if found else "-"
    return out


def test_orthanc_without_authentication_serves_qido_to_anyone() -> None:
    # Given Orthanc + DICOMweb with AuthenticationEnabled false
    with orthanc_dicomweb() as port:
        # When the DICOMweb stage runs (base paths tried in order: /dicom-web first)
        ep, ctx = _stage(port)
    r = ep.dicomweb
    assert r is not None and r.base_path == "/dicom-web" and r.confirmed and not r.over_tls
    # Then the search answered 200 in DICOM JSON, the study lookup 404 and the bad upload 415, all unchallenged
    assert [(a.transaction, a.status) for a in r.unauthenticated] == [("qido", 200), ("wado", 404), ("stow", 415)]
    assert r.auth_schemes == [] and r.authenticated == []
    # And each access-control check fails, plaintext fails, HSTS does not apply
    s = _statuses(ep, ctx)
    assert s["dicomweb.qido_requires_authentication"] == "fail"
    assert s["dicomweb.wado_requires_authentication"] == "fail"
    assert s["dicomweb.stow_requires_authentication"] == "fail"
    assert s["dicomweb.over_tls"] == "fail" and s["dicomweb.hsts"] == "-"
    # And N.6.3 / N.8.6 are filled from dicomweb.* evidence
    data = AuditData(endpoints=[ep], evidence=ctx.evidence.items())
    t63, t86 = n6_3(data), n8_6(data)
    assert t63.rows[0][1].value == f"http://{LOOPBACK}:{port}/dicom-web"
    assert [c.value for c in t63.rows[0][2:5]] == ["HTTP 200", "HTTP 404", "HTTP 415"]
    assert t86.rows[0][2].value.startswith("not required")
    assert t86.rows[0][5].provenance == Provenance.NOT_OBSERVED
    assert not cell_problems(ctx.evidence.items(), [t63, t86], ("dicomweb.",))


def test_orthanc_with_authentication_challenges_and_credentials_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Orthanc + DICOMweb with AuthenticationEnabled and one registered user
    monkeypatch.setenv("DCSAUDIT_TEST_DICOMWEB_PASSWORD", "s3cret-web")
    with orthanc_dicomweb(users={"auditor": "s3cret-web"}) as port:
        # When the stage runs with the configured basic-auth credentials (a reference, never the value)
        ep, ctx = _stage(port, auth={"username": "auditor", "password": {"env": "DCSAUDIT_TEST_DICOMWEB_PASSWORD"}})
    r = ep.dicomweb
    assert r is not None and r.base_path == "/dicom-web"
    # Then every unauthenticated request is challenged with Basic, and the credentials confirm DICOMweb
    assert [a.status for a in r.unauthenticated] == [401, 401, 401]
    assert r.auth_schemes == ["Basic"]
    assert [(a.transaction, a.status) for a in r.authenticated] == [("qido", 200), ("wado", 404), ("stow", 415)]
    assert r.confirmed
    s = _statuses(ep, ctx)
    assert s["dicomweb.qido_requires_authentication"] == "pass"
    assert s["dicomweb.wado_requires_authentication"] == "pass"
    assert s["dicomweb.stow_requires_authentication"] == "pass"
    # And the secret appears nowhere in the evidence
    assert "s3cret-web" not in repr(ctx.evidence.items())
    t86 = n8_6(AuditData(endpoints=[ep], evidence=ctx.evidence.items()))
    assert t86.rows[0][5].value == "Basic" and t86.rows[0][2].value == "required (HTTP 401)"


def test_orthanc_with_authentication_and_no_credentials_is_not_confirmed_but_passes() -> None:
    # Given the same server and no credentials: a 401 everywhere cannot confirm DICOMweb, but nothing is open
    with orthanc_dicomweb(users={"auditor": "x"}) as port:
        ep, ctx = _stage(port)
    r = ep.dicomweb
    assert r is not None and r.base_path == "/dicom-web" and not r.confirmed
    assert _statuses(ep, ctx)["dicomweb.qido_requires_authentication"] == "pass"
    t63 = n6_3(AuditData(endpoints=[ep], evidence=ctx.evidence.items()))
    assert "not confirmed" in t63.rows[0][1].note
    assert t63.rows[0][5].provenance == Provenance.NOT_OBSERVED  # no credentials configured


def test_an_https_web_server_that_is_not_dicomweb_is_not_judged_as_one(pki: TestPKI) -> None:
    # Given openssl s_server -www: HTTPS, answers 200 text/html to every GET
    # (Orthanc 1.10's HTTPS crashes on the first request here, so it cannot be the HTTPS peer)
    with openssl_server(pki) as port:
        ep, ctx = _stage(port, service="https")
    r = ep.dicomweb
    # Then no base path is taken for DICOMweb (a 200 text/html is no search answer) and nothing is judged
    assert r is not None and r.base_path is None and r.paths_tried == ["/dicom-web", "/dicomweb", "/wado-rs", "/rs"]
    assert all(v == "-" for v in _statuses(ep, ctx).values())


def _web_result(over_tls: bool, hsts: str | None, cors: str | None, creds: str | None = None) -> Endpoint:
    qido = DicomwebAnswer(transaction="qido", status=401, auth_schemes=["Bearer"], evidence="ev-1")
    r = DicomwebResult(base_path="/dicom-web", confirmed=True, over_tls=over_tls, unauthenticated=[qido],
                       hsts=hsts, cors_allow_origin=cors, cors_allow_credentials=creds, evidence=["ev-1"])
    return Endpoint(host=LOOPBACK, port=443, protocol="tcp", state="open", service="https", dicomweb=r)


@pytest.mark.parametrize(("over_tls", "hsts", "cors", "creds", "want_hsts", "want_cors"), [
    (True, "max-age=31536000; includeSubDomains", None, None, "pass", "pass"),
    (True, "max-age=0", "*", None, "fail", "fail"),
    (True, None, "https://dcsaudit-cors-check.invalid", "true", "fail", "fail"),
    (True, None, "https://viewer.hospital.example", None, "fail", "pass"),
    (False, None, None, None, "-", "pass"),
])
def test_hsts_and_cors_checks_on_constructed_results(over_tls: bool, hsts: str | None, cors: str | None,
                                                     creds: str | None, want_hsts: str, want_cors: str) -> None:
    ep = _web_result(over_tls, hsts, cors, creds)
    s = _statuses(ep, AuditContext.create(parse_config({"deployment": "t", "hosts": [{"address": LOOPBACK}]})))
    assert (s["dicomweb.hsts"], s["dicomweb.cors_restricted"]) == (want_hsts, want_cors)
    assert s["dicomweb.qido_requires_authentication"] == "pass"


def test_a_plain_web_server_without_dicomweb_is_no_dicomweb() -> None:
    # Given an HTTP server whose every path answers 404 (Orthanc without the plugin's root on these paths)
    with orthanc_dicomweb() as port:
        ep, ctx = _stage(port, base_paths=["/no-such-root", "/also-not"])
    r = ep.dicomweb
    assert r is not None and r.base_path is None and r.paths_tried == ["/no-such-root", "/also-not"]
    assert all(v == "-" for v in _statuses(ep, ctx).values())
    assert "no HTTP(S) endpoint answered" in n6_3(AuditData(endpoints=[ep], evidence=ctx.evidence.items())).empty_reason
