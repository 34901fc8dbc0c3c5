"""Inventory checks on constructed evidence: one passing and one failing case each."""

from __future__ import annotations

from dcsaudit.checks import REGISTRY, AuditData
from dcsaudit.models.endpoint import DicomAnswer, Endpoint, Identification, PduName


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


def test_dead_host_fails_never_passes() -> None:
    # Given a host with an open port, one whose ports answered closed, and one where nothing answered
    dead = Endpoint(host="127.0.0.2", port=104, protocol="tcp", state="filtered")
    closed = Endpoint(host="127.0.0.3", port=104, protocol="tcp", state="closed")
    data = AuditData(endpoints=[ep(104, "dicom"), dead, closed], evidence=[],
                     hosts=["127.0.0.1", "127.0.0.2", "127.0.0.3"])
    # Then the silent host fails (a vanished device must not be green); a RST is an answer
    assert run("inventory.host_reachable", data) == {"127.0.0.1": "pass", "127.0.0.2": "fail", "127.0.0.3": "pass"}


def test_unreachable_and_unresolved_hosts_gate_under_the_default_policy() -> None:
    from dcsaudit.policy import load_policy
    from dcsaudit.runner import run_checks

    # Given a dead host and a name that did not resolve (--allow-unresolved)
    dead = Endpoint(host="127.0.0.2", port=104, protocol="tcp", state="filtered")
    data = AuditData(endpoints=[dead], evidence=[], hosts=["127.0.0.2"],
                     unresolved_hosts={"pacs.invalid": "Name or service not known"})
    policy = load_policy("default")
    # When the checks run under the default policy
    found = [f for f in run_checks(data, policy) if f.check_id == "inventory.host_reachable"]
    # Then both findings are high severity and fail the audit: one fail, one error
    assert {(f.target, f.status) for f in found} == {("127.0.0.2", "fail"), ("pacs.invalid", "error")}
    assert all(f.severity == "high" and policy.is_failing(f) for f in found)


def test_configured_host_with_no_endpoint_is_not_a_silent_pass() -> None:
    # Given a configured host the inventory produced nothing for (no port configured)
    data = AuditData(endpoints=[], evidence=[], hosts=["127.0.0.9"])
    assert run("inventory.host_reachable", data) == {"127.0.0.9": "not_applicable"}


def test_identification_accepting_any_scp() -> None:
    # Given two plaintext DICOM ports called 'ANY-SCP' at identification: one accepted, one rejected
    def dicom(port: int, pdu: PduName, ev: str, tls: bool = False) -> Endpoint:
        ans = DicomAnswer(kind="dicom", ok=True, called_ae="ANY-SCP", calling_ae="DCSAUDIT", pdu=pdu, evidence=ev)
        ident = Identification(dicom_in_tls=ans) if tls else Identification(dicom=ans)
        return ep(port, "dicom-tls" if tls else "dicom", ev=[ev]).model_copy(update={"identification": ident})
    # and one whose identification called a configured title (not judged) and one never identified
    named = DicomAnswer(kind="dicom", ok=True, called_ae="PACS", pdu="A-ASSOCIATE-AC", evidence="ev-4")
    data = AuditData(endpoints=[dicom(104, "A-ASSOCIATE-AC", "ev-1"), dicom(105, "A-ASSOCIATE-RJ", "ev-2"),
                                dicom(2762, "A-ASSOCIATE-AC", "ev-3", tls=True),
                                ep(106, "dicom").model_copy(update={"identification": Identification(dicom=named)}),
                                ep(107, "dicom")], evidence=[])
    # When judged, Then the accepting ports fail (plaintext or inside TLS), the rejecting one passes
    spec = REGISTRY.get("dicom.identification_accepted_unknown_called_ae")
    assert spec is not None
    got = {f.target: (f.status, f.evidence) for f in spec.run(data)}
    assert got == {"127.0.0.1:104/tcp": ("fail", ["ev-1"]), "127.0.0.1:105/tcp": ("pass", ["ev-2"]),
                   "127.0.0.1:2762/tcp": ("fail", ["ev-3"])}


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
