"""Inventory checks on constructed evidence: one passing and one failing case each."""

from __future__ import annotations

from datetime import UTC, datetime

from dcsaudit.checks import REGISTRY, AuditData

from dcsaudit.models.core import Evidence
from dcsaudit.models.endpoint import Endpoint


def ep(port: int, service: str, plaintext: bool | None = None, state: str = "open", ev: list[str] | None = None) -> Endpoint:
    return Endpoint(host="127.0.0.1", port=port, protocol="tcp", state=state, service=service,  # type: ignore[arg-type]
                    plaintext_dicom=plaintext, evidence=ev or [])


def run(check_id: str, data: AuditData) -> dict[str, str]:
    spec = REGISTRY.get(check_id)
    assert spec is not None
    return {f.target: f.status for f in spec.run(data)}


def test_plaintext_dicom() -> None:
    data = AuditData(endpoints=[ep(104, "dicom", True), ep(2762, "dicom-tls", False)], evidence=[])
    assert run("inventory.plaintext_dicom", data) == {"127.0.0.1:104/tcp": "fail", "127.0.0.1:2762/tcp": "pass"}


def test_tls_port_also_plaintext() -> None:
    data = AuditData(endpoints=[ep(2762, "dicom-tls", True), ep(2763, "dicom-tls", False)], evidence=[])
    assert run("inventory.dicom_tls_also_plaintext", data) == {
        "127.0.0.1:2762/tcp": "fail", "127.0.0.1:2763/tcp": "pass"}


def test_http_without_tls() -> None:
    data = AuditData(endpoints=[ep(80, "http"), ep(443, "https")], evidence=[])
    assert run("inventory.http_without_tls", data) == {"127.0.0.1:80/tcp": "fail", "127.0.0.1:443/tcp": "pass"}


def test_unidentified_open_port() -> None:
    data = AuditData(endpoints=[ep(9, "unknown"), ep(104, "dicom"), ep(10, "unknown", state="closed")], evidence=[])
    assert run("inventory.unidentified_open_port", data) == {"127.0.0.1:9/tcp": "fail", "127.0.0.1:104/tcp": "pass"}


def test_dead_host_is_an_error_never_a_pass() -> None:
    dead = Endpoint(host="127.0.0.2", port=104, protocol="tcp", state="filtered")
    data = AuditData(endpoints=[ep(104, "dicom"), dead], evidence=[])
    assert run("inventory.host_reachable", data) == {"127.0.0.1": "pass", "127.0.0.2": "error"}


def test_identification_accepting_any_scp() -> None:
    now = datetime.now(UTC)
    accepted = Evidence(id="ev-1", probe="identify.dicom", target="x", at=now, ok=True, summary="",
                        data={"kind": "dicom", "called_ae": "ANY-SCP", "pdu": "A-ASSOCIATE-AC"})
    rejected = Evidence(id="ev-2", probe="identify.dicom", target="y", at=now, ok=True, summary="",
                        data={"kind": "dicom", "called_ae": "ANY-SCP", "pdu": "A-ASSOCIATE-RJ"})
    data = AuditData(endpoints=[ep(104, "dicom", ev=["ev-1"]), ep(105, "dicom", ev=["ev-2"])],
                     evidence=[accepted, rejected])
    assert run("dicom.identification_accepted_unknown_called_ae", data) == {
        "127.0.0.1:104/tcp": "fail", "127.0.0.1:105/tcp": "pass"}


def test_check_ids_are_dotted_and_unique() -> None:
    ids = [s.id for s in REGISTRY.all()]
    assert len(ids) == len(set(ids))
    assert all("." in i for i in ids)


def test_a_crashing_check_is_an_error_result() -> None:
    from dcsaudit.checks.base import Registry

    reg = Registry()

    @reg.check(id="test.boom", title="boom", severity="low")
    def boom(data: AuditData):  # type: ignore[no-untyped-def]
        raise RuntimeError("bug")

    [finding] = reg.all()[0].run(AuditData(endpoints=[], evidence=[]))
    assert finding.status == "error" and "RuntimeError" in finding.summary
