"""Association audit against real acceptors on loopback: pynetdicom, DCMTK storescp, Orthanc, hostile peers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.dicom import ApplicationEntity, AssociationAttempt, AttemptPurpose, Credentials
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.probes.dicom_assoc import audit_application_entities
from tests.peers.common import TestPKI, free_port
from tests.peers.dicom_peers import hostile_acceptor, orthanc, pynetdicom_scp, storescp


def make_ctx(port: int, ae_title: str = "TESTSCP", *, tls: bool = False, scan: dict[str, Any] | None = None,
             credentials: dict[str, Any] | None = None, aes: bool = True) -> AuditContext:
    scan = {"timeouts": {"connect": 2, "dicom": 3}, **(scan or {})}
    cfg = parse_config({
        "deployment": "test", "hosts": [{"address": "127.0.0.1"}],
        "application_entities": [{"ae_title": ae_title, "host": "127.0.0.1", "port": port, "tls": tls}] if aes else [],
        "scan": scan, "credentials": credentials or {},
    })
    return AuditContext.create(cfg)


def audit(ctx: AuditContext, endpoints: list[Endpoint] | None = None) -> ApplicationEntity:
    result = asyncio.run(audit_application_entities(ctx, endpoints or []))
    assert len(result) == 1
    return result[0]


def classes(ae: ApplicationEntity) -> dict[str, str]:
    return {t: r.classification for t, r in ae.user_identity.types.items()}


def purposes(ae: ApplicationEntity, purpose: AttemptPurpose, identity_type: int | None = None,
             credentials: Credentials | None = None) -> list[AssociationAttempt]:
    """The attempts of one purpose (and identity type / credentials, when given)."""
    return [a for a in ae.attempts if a.purpose == purpose
            and identity_type in (None, a.user_identity_type) and credentials in (None, a.credentials)]


@pytest.mark.timeout(30)
def test_pynetdicom_checking_titles_is_classified_with_reject_triples() -> None:
    # Given a pynetdicom SCP that checks the Called AE and only knows Calling AE DCSAUDIT
    with pynetdicom_scp("TESTSCP", require_called=True, require_calling=["DCSAUDIT"]) as port:
        # When its AE is audited
        ae = audit(make_ctx(port))
    # Then verification works, random titles are refused with (1, 1, 7) and (1, 1, 3)
    assert ae.error is None and ae.verification is True
    assert ae.accepts_any_called_ae is False and ae.accepts_any_calling_ae is False
    assert ae.called_ae_reject is not None
    assert (ae.called_ae_reject.result, ae.called_ae_reject.source, ae.called_ae_reject.reason) == (1, 1, 7)
    assert ae.calling_ae_reject is not None
    assert (ae.calling_ae_reject.result, ae.calling_ae_reject.source, ae.calling_ae_reject.reason) == (1, 1, 3)
    assert ae.default_called_aes_accepted == [] and ae.default_calling_aes_accepted == []
    # And the implementation is recognised from its Implementation Class UID
    assert ae.implementation == "pynetdicom"
    assert ae.implementation_class_uid and ae.implementation_class_uid.startswith("1.2.826.0.1.3680043.9.3811")
    assert ae.implementation_version_name and ae.implementation_version_name.startswith("PYNETDICOM")
    assert ae.max_pdu_length == 16382
    # And every attempt left evidence
    assert len(ae.evidence) >= ae.associations_used > 5


@pytest.mark.timeout(30)
def test_promiscuous_pynetdicom_with_query_retrieve() -> None:
    # Given a pynetdicom SCP that accepts any title and offers Q/R FIND and MWL
    with pynetdicom_scp("TESTSCP", query_retrieve=True) as port:
        ae = audit(make_ctx(port))
    # Then any Called and Calling AE is accepted, and Q/R without identity is recorded
    assert ae.accepts_any_called_ae is True and ae.accepts_any_calling_ae is True
    assert "StudyRootQueryRetrieveInformationModelFind" in ae.unauthenticated_query_retrieve
    assert "ModalityWorklistInformationModelFind" in ae.unauthenticated_query_retrieve
    accepted = {c.name for c in ae.presentation_contexts if c.accepted}
    assert "Verification" in accepted and "PatientRootQueryRetrieveInformationModelGet" not in accepted
    # And user identity is ignored by an SCP without an EVT_USER_ID handler
    assert ae.user_identity.enforced is False
    assert classes(ae) == {"1": "not_checked", "2": "not_tested", "3": "not_checked", "4": "not_checked",
                           "5": "not_checked"}


def _jwt_handler(seen: list[int]) -> Any:
    def handler(event: Any) -> tuple[bool, bytes | None]:
        seen.append(event.user_id_type)
        if event.user_id_type == 5 and event.primary_field == b"good.jwt.token":
            return True, b"server-jwt"
        if event.user_id_type == 2 and event.primary_field == b"alice" and event.secondary_field == b"pw-ok":
            return True, None
        return False, None
    return handler


@pytest.mark.timeout(30)
def test_user_identity_supported_not_enforced_and_transient_coding(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a pynetdicom SCP with an EVT_USER_ID handler (it rejects bad identities, but not their absence)
    seen: list[int] = []
    monkeypatch.setenv("DCS_TEST_JWT", "good.jwt.token")
    with pynetdicom_scp("TESTSCP", user_id=_jwt_handler(seen)) as port:
        ae = audit(make_ctx(port, credentials={"user_identity": {"jwt": {"env": "DCS_TEST_JWT"}}}))
    uid = ae.user_identity
    # Then invalid identities are rejected with pynetdicom's transient triple (2, 2, 1), retried once
    t = uid.reject_triples["1"]
    assert (t.result, t.source, t.reason) == (2, 2, 1)
    assert uid.reject_coding == "transient"
    invalid_1 = purposes(ae, "user_identity", 1, "invalid")
    assert len(invalid_1) == 1 and all(a.retries == 1 and not a.busy for a in invalid_1)
    # And types whose invalid credentials were refused, with no valid ones configured, are undetermined
    assert classes(ae) == {"1": "undetermined", "2": "not_tested", "3": "undetermined", "4": "undetermined",
                           "5": "supported"}
    assert "no valid credentials" in uid.types["3"].reason
    # And the valid JWT got a positive response (User Identity AC)
    assert uid.types["5"].valid == "accepted_with_response" and uid.types["5"].invalid == "refused"
    # And, as the baseline without identity was accepted, identity is not enforced
    assert uid.enforced is False
    # And no type 2 passcode travelled over plaintext
    assert 2 not in seen
    # And the secret is in no evidence
    assert "good.jwt.token" not in ae.model_dump_json()


@pytest.mark.timeout(30)
def test_user_identity_enforced_when_associations_without_identity_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an acceptor that rejects associations without an identity with the PS3.7 coding (1, 2, 1)
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    def requested(event: Any) -> None:
        if event.assoc.requestor.primitive.user_information and not any(
                type(i).__name__ == "UserIdentityNegotiation" for i in event.assoc.requestor.primitive.user_information):
            event.assoc.acse.send_reject(0x01, 0x02, 0x01)
            event.assoc.is_rejected = True
            time.sleep(0.1)  # let the DUL thread send the RJ before pynetdicom closes the socket

    def user_id(event: Any) -> tuple[bool, bytes | None]:
        return (event.primary_field == b"alice" and event.secondary_field == b"pw-ok"), None

    scp = AE(ae_title="TESTSCP")
    scp.add_supported_context(Verification)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False,
                              evt_handlers=[(evt.EVT_REQUESTED, requested), (evt.EVT_USER_ID, user_id)])
    assert server is not None
    monkeypatch.setenv("DCS_TEST_PW", "pw-ok")
    try:
        ae = audit(make_ctx(port, scan={"intrusive": {"passcode_over_plaintext": True}},
                            credentials={"user_identity": {"username": "alice", "passcode": {"env": "DCS_TEST_PW"}}}))
    finally:
        server.shutdown()
        server.server_close()
    # Then the audit authenticates with the valid passcode for the title probes and finds enforcement
    assert ae.verification is True
    assert [a.purpose for a in ae.attempts[:2]] == ["baseline", "baseline_with_identity"]
    uid = ae.user_identity
    assert uid.enforced is True
    # And type 2 is supported: a wrong passcode refused, the right one accepted (pynetdicom never sends 0x59
    # for type 2, which is its own low-severity finding, never a reason to call the type unsupported)
    assert uid.types["2"].classification == "supported" and uid.types["2"].positive_response_missing is True
    # And type 1 with the configured user name alone is refused
    assert uid.types["1"].classification == "refused"
    assert uid.reject_coding == "transient"  # pynetdicom refuses a bad identity with (2, 2, 1)
    assert ae.accepts_any_called_ae is True
    assert "pw-ok" not in ae.model_dump_json()


@pytest.mark.timeout(30)
def test_dcmtk_storescp_plain(tmp_path: Path) -> None:
    # Given DCMTK storescp (plain)
    with storescp(tmp_path) as port:
        t0 = time.perf_counter()
        ae = audit(make_ctx(port, "STORESCP"))
        elapsed = time.perf_counter() - t0
    # Then it is verified, recognised as DCMTK, and takes any Called AE title
    assert ae.verification is True and ae.implementation == "DCMTK"
    assert ae.implementation_version_name == "OFFIS_DCMTK_367"
    assert ae.accepts_any_called_ae is True and ae.accepts_any_calling_ae is True
    assert elapsed < 5, f"audit of one AE took {elapsed:.2f} s"


@pytest.mark.timeout(30)
def test_dcmtk_storescp_tls(tmp_path: Path, pki: TestPKI, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given DCMTK storescp with TLS (server certificate from the test CA)
    with storescp(tmp_path, tls=(pki.server_key, pki.server_chain)) as port:
        ae = audit(make_ctx(port, "STORESCP", tls=True, credentials={"ca_file": str(pki.ca_file)}))
    # Then the association over TLS works and user identity type 2 may be probed (TLS protects it)
    assert ae.tls is True and ae.verification is True and ae.implementation == "DCMTK"
    assert ae.user_identity.types["2"].classification == "not_checked"


@pytest.mark.timeout(30)
def test_tls_endpoint_without_tls_server_is_an_error_result(tmp_path: Path) -> None:
    # Given a plain storescp audited as if it were TLS
    with storescp(tmp_path) as port:
        ae = audit(make_ctx(port, "STORESCP", tls=True))
    # Then the AE carries an error, no crash
    assert ae.error is not None and ae.verification is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("check_called", [True, False])
def test_orthanc_called_aet_check(tmp_path: Path, check_called: bool) -> None:
    # Given Orthanc with DicomCheckCalledAet true or false
    with orthanc(tmp_path, check_called_aet=check_called) as port:
        ae = audit(make_ctx(port, "ORTHANC"))
    # Then the Called AE policy is read correctly, with the reject triple when it checks
    assert ae.verification is True and ae.implementation == "DCMTK"
    assert ae.accepts_any_called_ae is (not check_called)
    if check_called:
        assert ae.called_ae_reject is not None and ae.called_ae_reject.reason == 7


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind,outcome", [
    ("silent", "timeout"), ("garbage", "protocol_error"), ("absurd_length", "protocol_error"),
    ("close", "closed"), ("abort", "aborted"),
])
def test_hostile_acceptors_end_in_an_error_result(kind: str, outcome: str) -> None:
    # Given an acceptor that misbehaves
    with hostile_acceptor(kind) as port:  # type: ignore[arg-type]
        t0 = time.perf_counter()
        ae = audit(make_ctx(port, scan={"timeouts": {"connect": 1, "dicom": 1}}))
        elapsed = time.perf_counter() - t0
    # Then the baseline attempt records the failure and the audit stops quickly, without raising;
    # an abort that persists through the retries is "product busy", never a verdict
    assert ae.attempts[0].outcome == outcome
    assert elapsed < 6
    assert ae.error is not None and ae.verification is None
    if outcome == "aborted":
        assert ae.attempts[0].busy and ae.attempts[0].retries >= 1 and "busy" in ae.error


@pytest.mark.timeout(30)
def test_abort_mid_association_is_recorded() -> None:
    # Given an acceptor that accepts, then aborts when the C-ECHO arrives
    with hostile_acceptor("abort_after_accept") as port:
        ae = audit(make_ctx(port, scan={"timeouts": {"connect": 1, "dicom": 1}}))
    # Then the association counts as accepted but verification failed, with the error recorded
    base = ae.attempts[0]
    assert base.outcome == "accepted" and base.echo_status is None and "after acceptance" in base.error
    assert ae.verification is False


@pytest.mark.timeout(15)
def test_closed_port_is_refused_and_discovered_endpoints_use_any_scp() -> None:
    # Given nothing listening on a port that identification called DICOM
    port = free_port()
    ep = Endpoint(host="127.0.0.1", port=port, protocol="tcp", state="open", service="dicom")
    ae = audit(make_ctx(port, aes=False), [ep])
    # Then the AE is audited as ANY-SCP and the refusal is an error result
    assert ae.ae_title == "ANY-SCP" and ae.configured is False
    assert ae.attempts[0].outcome == "refused" and ae.error is not None


@pytest.mark.timeout(30)
def test_timers_are_measured() -> None:
    # Given a pynetdicom SCP with a 1 s ARTIM (acse_timeout) and a 2 s idle timeout (network_timeout)
    with pynetdicom_scp("TESTSCP", acse_timeout=1, network_timeout=2) as port:
        ae = audit(make_ctx(port, scan={"intrusive": {"measure_timeouts": True},
                                        "dicom": {"timer_cap_seconds": 4, "user_identity": False}}))
    # Then ARTIM and the idle timeout are measured; the half-sent request outlasts the cap
    assert ae.artim_seconds is not None and 0.5 < ae.artim_seconds < 3
    idle = ae.timeouts["idle_association"]
    assert idle.seconds is not None and 1 < idle.seconds < 4 and idle.ended_by in ("abort", "close", "release")
    request = ae.timeouts["association_request"]
    assert request.exceeded_cap is True and request.seconds is None


@pytest.mark.timeout(30)
def test_max_associations_stops_at_the_first_refusal() -> None:
    # Given a pynetdicom SCP limited to 3 simultaneous associations
    with pynetdicom_scp("TESTSCP", max_associations=3) as port:
        ae = audit(make_ctx(port, scan={"intrusive": {"max_associations": True, "max_associations_cap": 6},
                                        "dicom": {"user_identity": False}}))
    # Then the fourth is refused with (2, 3, 2) local-limit-exceeded
    assert ae.max_associations == 3 and ae.max_associations_reached_cap is False
    r = ae.max_associations_reject
    assert r is not None and (r.result, r.source, r.reason) == (2, 3, 2)
    # counted twice: two runs of three accepted and one refused
    assert len(purposes(ae, "max_associations")) == 8 and len(ae.max_associations_evidence) == 8


@pytest.mark.timeout(30)
def test_max_associations_reports_reaching_the_cap() -> None:
    with pynetdicom_scp("TESTSCP", max_associations=10) as port:
        ae = audit(make_ctx(port, scan={"intrusive": {"max_associations": True, "max_associations_cap": 3},
                                        "dicom": {"user_identity": False}}))
    assert ae.max_associations == 3 and ae.max_associations_reached_cap is True


@pytest.mark.timeout(30)
def test_intrusive_measurements_are_off_by_default() -> None:
    with pynetdicom_scp("TESTSCP") as port:
        ae = audit(make_ctx(port))
    assert ae.timeouts == {} and ae.max_associations is None and ae.artim_seconds is None
    assert not purposes(ae, "max_associations")


@pytest.mark.timeout(30)
def test_associate_echo_release_latency_against_pynetdicom() -> None:
    # Given a local pynetdicom SCP; When 20 baseline associations (associate, C-ECHO, release) run
    from dcsaudit.probes.dicom_client import Spec, Target, run_attempt
    from dcsaudit.probes.dicom_ul import Timeouts
    from dcsaudit.rules.sop_classes import resolve

    with pynetdicom_scp("TESTSCP") as port:
        ctx = make_ctx(port)
        target = Target(ctx, "127.0.0.1", port, None, Timeouts(2, 2, 3, 3))
        sop = tuple(resolve([])[0])

        async def run() -> list[float]:
            out = []
            for _ in range(20):
                a, _h = await run_attempt(target, Spec("baseline", "TESTSCP", "DCSAUDIT", sop))
                assert a.outcome == "accepted" and a.echo_status == 0 and a.released
                out.append(a.duration_ms)
            return out

        times = sorted(asyncio.run(run()))
    # Then the median is in the tens of milliseconds (~16 ms measured on 2 cores)
    median = times[len(times) // 2]
    print(f"associate+C-ECHO+release median {median:.1f} ms, max {times[-1]:.1f} ms")
    assert median < 60
