"""DICOM facts of whole scans against acceptors with a known configuration, report.json and annex cells.

Each acceptor is started here with the configuration the assertions state (PS3.7 D.3.3.7 identity,
PS3.8 §9.3.4 AE titles and limits). The whole pipeline runs (inventory, identification, association
audit, checks, annex) as ``dcsaudit scan`` does, on 127.0.0.1 only. The fragile acceptors (one or two
associations) are scanned ten times in a row: a fact that holds only sometimes is not a fact.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from dcsaudit.annex.builder import build_annex
from dcsaudit.checks import AuditData
from dcsaudit.config import parse_config
from dcsaudit.models.core import Cell, Provenance
from dcsaudit.models.dicom import ApplicationEntity, AssociationAttempt
from dcsaudit.models.report import Report
from dcsaudit.policy import load_policy
from dcsaudit.runner import run_audit
from tests.annex_invariants import assert_annex_honest
from tests.peers.common import LOOPBACK
from tests.peers.dicom_peers import orthanc, pynetdicom_scp, storescp

PYNETDICOM_ROOT = "1.2.826.0.1.3680043.9.3811."


def scan(port: int, ae_title: str, *, scan_opts: dict[str, Any] | None = None,
         credentials: dict[str, Any] | None = None) -> Report:
    """The whole audit of one host port with one configured AE, as ``dcsaudit scan`` runs it."""
    scan_cfg = {"timeouts": {"connect": 2, "dicom": 3, "read": 2, "tls_handshake": 2}, "tls_audit": False,
                "udp": False, **(scan_opts or {})}
    cfg = parse_config({
        "deployment": "facts", "hosts": [{"address": LOOPBACK, "tcp_ports": [port]}],
        "application_entities": [{"ae_title": ae_title, "host": LOOPBACK, "port": port}],
        "scan": scan_cfg, "credentials": credentials or {},
    })
    report = asyncio.run(run_audit(cfg, load_policy("report-only")))
    # Every report of these acceptors also keeps the annex rules (marks, evidence that fits the cell).
    assert_annex_honest(report)
    return report


def the_ae(report: Report) -> ApplicationEntity:
    [ae] = report.application_entities
    return ae


def classes(ae: ApplicationEntity) -> dict[str, str]:
    return {t: r.classification for t, r in ae.user_identity.types.items()}


def cell(report: Report, table_id: str, row: str, column: int) -> Cell:
    for section in report.annex.sections:
        for table in section.tables:
            if table.id == table_id:
                for r in table.rows:
                    if r[0].value.startswith(row):
                        return r[column]
    raise AssertionError(f"no row {row!r} in {table_id}")


def evidence_of(report: Report, c: Cell) -> list[Any]:
    by_id = {e.id: e for e in report.evidence}
    return [by_id[i] for i in c.evidence]


def attempts_of(report: Report, c: Cell) -> list[AssociationAttempt]:
    """The association attempts a cell cites (every cited evidence id must be one, or one of its retried tries)."""
    by_ev = {e: a for ae in report.application_entities for a in ae.attempts
             for e in (a.evidence, *a.retry_evidence) if e}
    assert all(i in by_ev for i in c.evidence), c.evidence
    return [by_ev[i] for i in c.evidence]


def assert_identity_cells(report: Report, expected: dict[str, tuple[str, Provenance]]) -> None:
    for row, (value, provenance) in expected.items():
        c = cell(report, "N.8-2", row, 2)
        assert (c.value, c.provenance) == (value, provenance), (row, c)
        if provenance == Provenance.VERIFIED:
            # Each verified cell cites only the identity attempts (and the no-identity baseline) it rests on.
            assert c.evidence and all(e.probe == "dicom.assoc" for e in evidence_of(report, c))
            assert all(a.purpose in ("user_identity", "baseline", "baseline_with_identity")
                       for a in attempts_of(report, c))
        else:
            assert c.note, row


@pytest.fixture
def passcode(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("DCS_FACTS_PW", "pw-ok")
    return {"user_identity": {"username": "alice", "passcode": {"env": "DCS_FACTS_PW"}}}


def type2_only(event: Any) -> tuple[bool, bytes | None]:
    return (event.user_id_type == 2 and event.primary_field == b"alice" and event.secondary_field == b"pw-ok"), None


def type1_only(event: Any) -> tuple[bool, bytes | None]:
    if event.user_id_type == 1:
        return event.primary_field == b"alice", None
    return True, None  # other types are not looked at


@pytest.mark.timeout(60)
def test_a_acceptor_requiring_type_2(passcode: dict[str, Any]) -> None:
    # Given an acceptor that refuses associations without identity (1, 1, 1) and takes only alice's passcode
    with pynetdicom_scp("ACC-A", user_id=type2_only, require_identity=(1, 1, 1)) as port:
        report = scan(port, "ACC-A", scan_opts={"intrusive": {"passcode_over_plaintext": True}},
                      credentials=passcode)
    ae = the_ae(report)
    uid = ae.user_identity
    # Then identity is enforced, type 2 is supported, type 1 with the user name alone is refused,
    # and types 3-5 (invalid refused, no valid ones configured) are undetermined
    assert uid.enforced is True
    assert classes(ae) == {"1": "refused", "2": "supported", "3": "undetermined", "4": "undetermined",
                           "5": "undetermined"}
    assert ae.verification is True and ae.accepts_any_called_ae is True and ae.accepts_any_calling_ae is True
    assert_identity_cells(report, {
        "User Identity Plus Passcode Association": ("Y", Provenance.VERIFIED),
        "Basic User Identity Association": ("", Provenance.NOT_OBSERVED),
        "Kerberos Identity Negotiation Association": ("", Provenance.NOT_OBSERVED),
        "Generic SAML Assertion Identity Negotiation Association": ("", Provenance.NOT_OBSERVED),
    })
    assert "refused even with the configured credentials" in cell(report, "N.8-2", "Basic User", 2).note
    supported = cell(report, "N.8-9", "User-Identity-Type", 2)
    assert (supported.value, supported.provenance) == ("2", Provenance.VERIFIED)
    assert any("identity required" in n for t in report.annex.sections for tb in t.tables if tb.id == "N.8-9"
               for n in tb.notes)


@pytest.mark.timeout(60)
def test_b_acceptor_checking_type_1_only_when_sent(passcode: dict[str, Any]) -> None:
    # Given an acceptor that accepts no identity, checks a type 1 user name, and ignores other types
    with pynetdicom_scp("ACC-B", user_id=type1_only) as port:
        report = scan(port, "ACC-B", credentials={"user_identity": {"username": "alice"}})
    ae = the_ae(report)
    # Then type 1 is supported, 3-5 not checked, 2 not tested (no TLS: no passcode in the clear)
    assert ae.user_identity.enforced is False
    assert classes(ae) == {"1": "supported", "2": "not_tested", "3": "not_checked", "4": "not_checked",
                           "5": "not_checked"}
    assert_identity_cells(report, {
        "Basic User Identity Association": ("Y", Provenance.VERIFIED),
        "User Identity Plus Passcode Association": ("", Provenance.NOT_OBSERVED),
        "Kerberos Identity Negotiation Association": ("N", Provenance.VERIFIED),
        "Generic SAML Assertion Identity Negotiation Association": ("N", Provenance.VERIFIED),
    })
    # And a vendor's correct declaration of type 1 is shown as verified, not contradicted
    cfg_declared = {"N.8-2": {"Basic User Identity Association | Consumer/Receiver": "Y"}}
    annex = build_annex(AuditData(endpoints=report.endpoints, evidence=report.evidence,
                                  application_entities=report.application_entities, declared=cfg_declared))
    [n82] = [t for s in annex.sections for t in s.tables if t.id == "N.8-2"]
    [basic] = [r[2] for r in n82.rows if r[0].value == "Basic User Identity Association"]
    assert basic.provenance == Provenance.VERIFIED and basic.declared == "Y"


@pytest.mark.timeout(60)
def test_c_acceptor_accepting_anything() -> None:
    # Given a pynetdicom acceptor with no identity handler and no title checks
    with pynetdicom_scp("ACC-C") as port:
        report = scan(port, "ACC-C")
    ae = the_ae(report)
    # Then every probed type is not checked, identity is not required, any title is accepted
    assert ae.user_identity.enforced is False
    assert classes(ae) == {"1": "not_checked", "2": "not_tested", "3": "not_checked", "4": "not_checked",
                           "5": "not_checked"}
    assert ae.accepts_any_called_ae is True and ae.accepts_any_calling_ae is True
    assert_identity_cells(report, {
        "Basic User Identity Association": ("N", Provenance.VERIFIED),
        "Kerberos Identity Negotiation Association": ("N", Provenance.VERIFIED),
    })
    supported = cell(report, "N.8-9", "User-Identity-Type", 1)
    assert supported.value == "" and supported.provenance == Provenance.NOT_OBSERVED  # type 2 untested


def _d_scan(port: int, use_nmap: bool) -> Report:
    return scan(port, "ACC-D", scan_opts={
        "use_nmap": use_nmap,
        "intrusive": {"max_associations": True, "max_associations_cap": 4},
        # ARTIM 3 s + 2 s: a connect scan leaves a connection the acceptor holds until its ARTIM fires
        "dicom": {"busy_retry_seconds": 5},
    })


def _assert_d_facts(report: Report) -> None:
    ae = the_ae(report)
    assert ae.error is None, ae.error
    assert ae.verification is True
    assert ae.accepts_any_called_ae is False and ae.accepts_any_calling_ae is False
    assert ae.called_ae_reject is not None and ae.called_ae_reject.reason == 7
    assert ae.calling_ae_reject is not None and ae.calling_ae_reject.reason == 3
    assert classes(ae) == {"1": "not_checked", "2": "not_tested", "3": "not_checked", "4": "not_checked",
                           "5": "not_checked"}
    assert ae.implementation_class_uid and ae.implementation_class_uid.startswith(PYNETDICOM_ROOT)
    assert ae.max_associations == 1 and ae.max_associations_reached_cap is False, ae.max_associations_note
    assert not any(a.busy for a in ae.attempts)
    c = cell(report, "N.6-1", "Maximum number of simultaneous Associations accepted", 2)
    assert (c.value, c.provenance) == ("1", Provenance.VERIFIED)
    assert {a.purpose for a in attempts_of(report, c)} == {"max_associations"}


@pytest.mark.timeout(240)
def test_d_one_association_strict_titles_ten_scans() -> None:
    # Given an acceptor that allows one association, has a 3 s ARTIM and checks called and calling AE
    with pynetdicom_scp("ACC-D", max_associations=1, acse_timeout=3, network_timeout=10, require_called=True,
                        require_calling=["DCSAUDIT"]) as port:
        # When it is scanned ten times, half of them with a plain connect scan as inventory
        reports = [_d_scan(port, use_nmap=i % 2 == 0) for i in range(10)]
    # Then every scan reports the same true facts
    for report in reports:
        _assert_d_facts(report)
    # And the connect scans' leftover connection was waited out by retries, reported per AE
    assert any(the_ae(r).busy_retries > 0 for r in reports[1::2])


@pytest.mark.timeout(60)
def test_d_connection_held_by_someone_else_is_busy_never_a_fact() -> None:
    # Given the one-association acceptor while another client holds its only association slot
    with pynetdicom_scp("ACC-D", max_associations=1, acse_timeout=30, require_called=True,
                        require_calling=["DCSAUDIT"]) as port:
        holder = socket.create_connection((LOOPBACK, port))
        try:
            report = scan(port, "ACC-D", scan_opts={"use_nmap": False, "dicom": {"busy_retry_seconds": 2}})
        finally:
            holder.close()
    ae = the_ae(report)
    # Then nothing is claimed: the AE is an error "product busy", with its retries, and no title or
    # identity verdict was derived from the (2, 3, 2) rejects
    assert ae.error is not None and "busy" in ae.error
    assert ae.verification is None and ae.accepts_any_called_ae is None and ae.accepts_any_calling_ae is None
    assert ae.user_identity.enforced is None
    assert ae.attempts[0].busy and ae.attempts[0].retries >= 2 and ae.busy_retries >= 2
    assert all(r.classification == "not_tested" for r in ae.user_identity.types.values())
    finding = next(f for f in report.findings if f.check_id == "dicom.association_failed")
    assert finding.status == "error"


@pytest.mark.timeout(240)
def test_e_two_associations_identity_required_ten_scans(passcode: dict[str, Any]) -> None:
    # Given an acceptor that allows two associations and refuses any association without an identity
    with pynetdicom_scp("ACC-E", max_associations=2, acse_timeout=3, user_id=type2_only,
                        require_identity=(1, 1, 1)) as port:
        reports = [scan(port, "ACC-E", credentials=passcode, scan_opts={
            "use_nmap": i % 2 == 0, "intrusive": {"passcode_over_plaintext": True, "max_associations": True,
                                                  "max_associations_cap": 4},
            "dicom": {"busy_retry_seconds": 5}}) for i in range(10)]
    for report in reports:
        ae = the_ae(report)
        assert ae.error is None, ae.error
        # Then verification works with the identity, titles are not checked, identity is required
        assert ae.verification is True and ae.accepts_any_called_ae is True and ae.accepts_any_calling_ae is True
        assert ae.user_identity.enforced is True
        assert classes(ae) == {"1": "refused", "2": "supported", "3": "undetermined", "4": "undetermined",
                               "5": "undetermined"}
        assert ae.implementation_class_uid and ae.implementation_class_uid.startswith(PYNETDICOM_ROOT)
        assert ae.max_associations == 2, ae.max_associations_note


@pytest.mark.timeout(60)
def test_dcmtk_storescp_does_not_support_identity(tmp_path: Path) -> None:
    # Given DCMTK storescp, which negotiates no user identity
    with storescp(tmp_path, ae_title="STORESCP") as port:
        report = scan(port, "STORESCP")
    ae = the_ae(report)
    # Then every probed type is accepted like no identity: not checked
    assert ae.verification is True and ae.implementation == "DCMTK"
    assert classes(ae) == {"1": "not_checked", "2": "not_tested", "3": "not_checked", "4": "not_checked",
                           "5": "not_checked"}
    uid = cell(report, "N.7-1", "Implementation Class UID", 1)
    assert uid.provenance == Provenance.VERIFIED and uid.evidence == [ae.reference_evidence]
    assert_identity_cells(report, {"Basic User Identity Association": ("N", Provenance.VERIFIED)})


@pytest.mark.timeout(90)
def test_orthanc_with_called_aet_check_and_modalities(tmp_path: Path) -> None:
    # Given Orthanc checking the Called AE and knowing one modality (DCSAUDIT), nothing always allowed
    with orthanc(tmp_path, check_called_aet=True, modalities={"dcsaudit": ["DCSAUDIT", LOOPBACK, 4006]},
                 always_allow=False) as port:
        report = scan(port, "ORTHANC")
    ae = the_ae(report)
    # Then both titles are checked with the PS3.8 reasons, and identity types are not checked
    assert ae.verification is True and ae.implementation == "DCMTK"
    assert ae.accepts_any_called_ae is False and ae.accepts_any_calling_ae is False
    assert (ae.called_ae_reject and ae.called_ae_reject.reason, ae.calling_ae_reject and ae.calling_ae_reject.reason) \
        == (7, 3)
    assert ae.user_identity.enforced is False
    assert classes(ae)["1"] == "not_checked"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("check_called", [False, True])
def test_orthanc_found_by_identification_is_named_only_by_a_measured_title(tmp_path: Path,
                                                                           check_called: bool) -> None:
    # Given Orthanc (title ORTHANC) that accepts any Called AE Title, or only its own, and a deployment that
    # configures no AE: identification finds the port and the audit calls it by a title it guesses
    with orthanc(tmp_path, check_called_aet=check_called) as port:
        cfg = parse_config({"deployment": "facts", "hosts": [{"address": LOOPBACK, "tcp_ports": [port]}],
                            "scan": {"timeouts": {"connect": 2, "dicom": 3, "read": 2}, "tls_audit": False,
                                     "udp": False}})
        report = asyncio.run(run_audit(cfg, load_policy("report-only")))
    assert_annex_honest(report)
    ae = the_ae(report)
    assert ae.configured is False and ae.error is None, ae.error
    title = cell(report, "N.6-6", "Called AE Title (SCP)", 2)
    [n72] = [t for s in report.annex.sections for t in s.tables if t.id == "N.7-2"]
    if check_called:
        # Then where a random title is refused, the title that was accepted is Orthanc's, verified
        assert (ae.ae_title, ae.accepts_any_called_ae) == ("ORTHANC", False)
        assert (title.value, title.provenance) == ("ORTHANC", Provenance.VERIFIED)
        assert n72.title == "Association Parameters for ORTHANC"
        # found by trying the vendor defaults (identification's guess was refused with (1, 1, 7)), then the
        # whole audit ran under it: one baseline, accepted, and identity measured, not refused for its title
        assert [(a.called_ae, a.outcome) for a in ae.attempts if a.purpose == "baseline"] == [("ORTHANC", "accepted")]
        assert ae.default_called_aes_accepted == ["ORTHANC"]  # a vendor-default title: a finding of its own
        assert ae.user_identity.enforced is False and classes(ae)["1"] == "not_checked"
    else:
        # Then where any title is accepted, the guessed one is not reported as Orthanc's: not verifiable, why,
        # and the AE is named by its port
        assert ae.accepts_any_called_ae is True and ae.ae_title != "ORTHANC"
        assert (title.value, title.provenance) == ("", Provenance.NOT_VERIFIABLE), title
        assert "accepts any Called AE Title" in title.note
        assert n72.title == f"Association Parameters for {LOOPBACK}:{port}"


@pytest.mark.timeout(90)
def test_d_timers_and_association_cells_name_their_measurement() -> None:
    # Given the one-association acceptor with a 3 s ARTIM, a 4 s idle timeout and DIMSE timeout 1 s
    with pynetdicom_scp("ACC-D", max_associations=1, acse_timeout=3, network_timeout=4, require_called=True,
                        require_calling=["DCSAUDIT"]) as port:
        report = scan(port, "ACC-D", scan_opts={
            "intrusive": {"measure_timeouts": True, "max_associations": True, "max_associations_cap": 3},
            "dicom": {"timer_cap_seconds": 6, "busy_retry_seconds": 5, "user_identity": False}})
    ae = the_ae(report)
    where = f"ACC-D@{LOOPBACK}:{port}"
    # Then ARTIM and the idle timer are measured in their own rows, naming the AE and citing only
    # their own measurement
    artim = cell(report, "N.6-1", "ARTIM timeout", 2)
    idle = cell(report, "N.6-1", "Idle association timeout", 2)
    for c, low, high in ((artim, 2.5, 4.5), (idle, 3.5, 5.5)):
        assert c.provenance == Provenance.VERIFIED and c.value.endswith(f"({where})")
        assert low < float(c.value.split(" s")[0]) < high
        [ev] = evidence_of(report, c)
        assert ev.probe == "dicom.timers"
    # And the DIMSE timeout row is not filled with the idle timer
    dimse = cell(report, "N.6-1", "General DIMSE level timeout", 2)
    assert dimse.value == "" and dimse.provenance == Provenance.NOT_OBSERVED and "DIMSE request" in dimse.note
    # And N.7-1 reads identity and PDU size from the accepted reference association, ARTIM from its timer
    for row in ("Implementation Class UID", "Implementation Version Name", "Maximum PDU Length"):
        c = cell(report, "N.7-1", row, 1)
        assert c.provenance == Provenance.VERIFIED and c.evidence == [ae.reference_evidence]
    assert cell(report, "N.7-1", "Implementation Class UID", 1).value.startswith(PYNETDICOM_ROOT)
    assert cell(report, "N.7-1", "ARTIM Timeout", 1).evidence == artim.evidence
    acc = cell(report, "N.7-1", "Maximum number of simultaneous Associations as Association Acceptor", 1)
    assert (acc.value, acc.provenance) == ("1", Provenance.VERIFIED)
    # And without dcsaudit listen the initiator table is not observed, with its reason
    n88 = cell(report, "N.8-8", "User-Identity-Type", 1)
    assert n88.provenance == Provenance.NOT_OBSERVED and "listen" in n88.note
