"""Annex tables of the association audit, built from constructed results (no network)."""

from __future__ import annotations

from dcsaudit.annex.dicom_tables import tables
from dcsaudit.checks import AuditData
from dcsaudit.models.core import Provenance
from dcsaudit.models.dicom import (
    ApplicationEntity,
    AssociationAttempt,
    IdentityTypeResult,
    Initiator,
    MeasuredTimeout,
    PresentationContextResult,
    RejectTriple,
    UserIdentityResult,
)


def sample() -> AuditData:
    ae = ApplicationEntity(
        ae_title="PACS", host="127.0.0.1", port=11112, tls=False, verification=True, accepts_any_called_ae=True,
        implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7", implementation_version_name="OFFIS_DCMTK_367",
        implementation="DCMTK", max_pdu_length=16384, max_associations=4, artim_seconds=30.0,
        timeouts={"artim": MeasuredTimeout(seconds=30.0, cap_seconds=35, ended_by="close", evidence="ev-9")},
        presentation_contexts=[PresentationContextResult(context_id=3, abstract_syntax="1.2.840.10008.5.1.4.1.1.7",
                                                         name="SecondaryCaptureImageStorage", result=0)],
        user_identity=UserIdentityResult(types={
            "1": IdentityTypeResult(classification="not_checked", invalid="accepted", evidence=["ev-3"]),
            "2": IdentityTypeResult(classification="supported", invalid="refused", valid="accepted",
                                    evidence=["ev-4", "ev-5"]),
            "3": IdentityTypeResult(classification="not_checked", invalid="accepted", evidence=["ev-6"]),
            "4": IdentityTypeResult(classification="undetermined", invalid="refused", reason="no valid credentials",
                                    evidence=["ev-7"]),
            "5": IdentityTypeResult(classification="not_tested")}, enforced=False),
        reference_evidence="ev-1", evidence=["ev-1", "ev-2"])
    init = Initiator(calling_ae="MOD", called_ae="PACS", peer="127.0.0.1", user_identity_type=2,
                     positive_response_requested=True, evidence=["ev-20"])
    return AuditData(endpoints=[], evidence=[], application_entities=[ae], initiators=[init],
                     declared={"N.7-1": {"Maximum PDU Length": "4096"}})


def test_tables_fill_observed_values_and_show_contradictions() -> None:
    # Given an audited AE, a captured initiator and a vendor declaration that disagrees on Max PDU
    out = dict((t.id, (sid, t)) for sid, t in tables(sample()))
    # Then the expected sections and tables are there
    assert {k: v[0] for k, v in out.items()} == {
        "N.6-1": "N.6.1", "N.6-6": "N.6.2.5", "N.7-1": "N.7.1.1", "N.7-2": "N.7.2.1.2", "N.7-9": "N.7.3.1.2",
        "N.8-2": "N.8.4.1", "N.8-8": "N.8.5.1", "N.8-9": "N.8.5.2"}
    n71 = {r[0].value: r[1] for r in out["N.7-1"][1].rows}
    assert n71["Implementation Class UID"].provenance == Provenance.VERIFIED
    assert n71["Implementation Class UID"].value == "1.2.276.0.7230010.3.0.3.6.7"
    assert n71["Maximum PDU Length"].provenance == Provenance.CONTRADICTED
    assert n71["Maximum PDU Length"].declared == "4096" and n71["Maximum PDU Length"].observed == "16384"
    assert n71["Implementation Class UID"].evidence == ["ev-1"]  # the association it was read from
    # And a timer names the AE and port it was measured on, citing its own measurement
    assert n71["ARTIM Timeout"].value == "30 s (PACS@127.0.0.1:11112)" and n71["ARTIM Timeout"].evidence == ["ev-9"]
    # And user identity rows say Y where a type is processed, from the right evidence
    n89 = out["N.8-9"][1].rows[0]
    assert (n89[1].value, n89[2].value) == ("Y", "2")
    n88 = {r[0].value: r for r in out["N.8-8"][1].rows}
    assert n88["User-Identity-Type"][2].value == "2" and n88["Positive-response-requested"][2].value == "1"
    assert n89[1].evidence == ["ev-4", "ev-5"]  # the attempts that prove type 2, nothing else
    n82 = {r[0].value: r for r in out["N.8-2"][1].rows}
    assert n82["User Identity Plus Passcode Association"][1].value == "Y"
    assert (n82["User Identity Plus Passcode Association"][2].value,
            n82["User Identity Plus Passcode Association"][2].evidence) == ("Y", ["ev-4", "ev-5"])
    assert n82["Kerberos Identity Negotiation Association"][2].value == "N"
    # And an undetermined type is not observed, with its reason, never Y or N
    saml = n82["Generic SAML Assertion Identity Negotiation Association"][2]
    assert (saml.value, saml.provenance) == ("", Provenance.NOT_OBSERVED) and "no valid credentials" in saml.note
    # And every cell carries a provenance
    assert all(c.provenance for _, t in out.values() for r in t.rows for c in r)


def test_tables_without_any_audit_do_not_invent_values() -> None:
    data = AuditData(endpoints=[], evidence=[])
    out = dict((t.id, t) for _, t in tables(data))
    assert "N.6-6" not in out
    assert out["N.7-1"].empty_reason
    assert all(c.provenance in (Provenance.NOT_OBSERVED, Provenance.LABEL) for r in out["N.8-9"].rows for c in r)


def _attempt(purpose: str, outcome: str, ev: str, triple: tuple[int, int, int] | None = None,
             **kw: object) -> AssociationAttempt:
    reject = RejectTriple(result=triple[0], source=triple[1], reason=triple[2], result_str="rejected-permanent"
                          if triple[0] == 1 else "rejected-transient") if triple else None
    return AssociationAttempt(purpose=purpose, called_ae="PACS", calling_ae="DCSAUDIT", outcome=outcome,
                              reject=reject, evidence=ev, **kw)


def _ae(port: int, tls: bool, ref: str, contexts: list[PresentationContextResult], **kw: object) -> ApplicationEntity:
    return ApplicationEntity(ae_title="PACS", host="127.0.0.1", port=port, tls=tls, reference_evidence=ref,
                             presentation_contexts=contexts, **kw)


UPS_PULL = PresentationContextResult(context_id=1, abstract_syntax="1.2.840.10008.5.1.4.34.6.3",
                                     name="UnifiedProcedureStepPull", result=0,
                                     transfer_syntaxes=["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"],
                                     accepted_transfer_syntax="1.2.840.10008.1.2.1")
IAN = PresentationContextResult(context_id=3, abstract_syntax="1.2.840.10008.5.1.4.33",
                                name="InstanceAvailabilityNotification", result=0,
                                accepted_transfer_syntax="1.2.840.10008.1.2")


def test_one_block_per_ae_and_ups_ian_tables() -> None:
    # Given one AE title served on a plain and a TLS port of the same host, accepting UPS Pull and IAN
    plain = _ae(11112, False, "ev-1", [UPS_PULL, IAN], accepts_any_called_ae=False,
                attempts=[_attempt("any_called_ae", "rejected", "ev-3", (1, 1, 7))])
    tls = _ae(2762, True, "ev-2", [UPS_PULL])
    out = {t.id: (s, t) for s, t in tables(AuditData(endpoints=[], evidence=[], application_entities=[plain, tls]))}
    # Then N.6-4 (UPS) is one block: the Called AE Title once, then Port and TLS-Secured Port, each citing its port
    sid, n64 = out["N.6-4"]
    assert sid == "N.6.2.3"
    rows = {r[0].value: r for r in n64.rows}
    assert [r[0].value for r in n64.rows][1:] == ["Called AE Title (SCP)", "Port", "TLS-Secured Port",
                                                  "Supported SOP Classes as SCP (probed)"]
    # the title rests on the port that accepted it while refusing a random title (the TLS port's acceptance
    # alone would show nothing), the comment on the title probe
    assert (rows["Called AE Title (SCP)"][2].value, rows["Called AE Title (SCP)"][2].evidence) == ("PACS", ["ev-1"])
    assert rows["Called AE Title (SCP)"][3].value == "other Called AE Titles are refused"
    assert rows["Called AE Title (SCP)"][3].evidence == ["ev-3"]
    assert (rows["Port"][2].value, rows["Port"][2].evidence) == ("11112", ["ev-1"])
    assert (rows["TLS-Secured Port"][2].value, rows["TLS-Secured Port"][2].evidence) == ("2762", ["ev-2"])
    assert rows["Supported SOP Classes as SCP (probed)"][2].value == "UnifiedProcedureStepPull"
    # And N.6-5 (IAN) has the plain port only
    sid, n65 = out["N.6-5"]
    assert sid == "N.6.2.4" and [r[0].value for r in n65.rows][1:] == [
        "Called AE Title (SCP)", "Port", "Supported SOP Classes as SCP (probed)"]
    # And N.7-2 is one table for the AE, with the transfer syntax it chose per context
    [n72] = [t for s, t in tables(AuditData(endpoints=[], evidence=[], application_entities=[plain, tls]))
             if t.id == "N.7-2"]
    assert n72.title == "Association Parameters for PACS"
    ts = {r[0].value: r[1] for r in n72.rows}
    ups = ts["Accepted Transfer Syntax: UnifiedProcedureStepPull"]
    assert ups.value == "Explicit VR Little Endian (1.2.840.10008.1.2.1)" and ups.evidence == ["ev-1", "ev-2"]
    assert "Implicit VR Little Endian" in ups.note  # what was proposed


def _guessed(port: int, ref: str, **kw: object) -> ApplicationEntity:
    """An AE identification found (not configured), audited under the title it guessed, ANY-SCP."""
    return ApplicationEntity(ae_title="ANY-SCP", host="127.0.0.1", port=port, tls=False, configured=False,
                             reference_evidence=ref, presentation_contexts=[IAN], **kw)


def test_a_title_the_audit_only_guessed_is_not_reported_as_the_products() -> None:
    # Given two ports of one host found by identification, both accepting the guessed title ANY-SCP because
    # they accept any Called AE Title, and a vendor declaring the title ORTHANC
    a = _guessed(104, "ev-1", accepts_any_called_ae=True, attempts=[_attempt("any_called_ae", "accepted", "ev-3")])
    b = _guessed(11112, "ev-2", accepts_any_called_ae=True, attempts=[_attempt("any_called_ae", "accepted", "ev-4")])
    declared = {"N.6-5": {"Called AE Title (SCP)": "ORTHANC"}}
    out = [t for _s, t in tables(AuditData(endpoints=[], evidence=[], application_entities=[a, b], declared=declared))]
    # Then they are two AEs, named by host:port, not one AE "ANY-SCP"
    assert [t.title for t in out if t.id == "N.7-2"] == ["Association Parameters for 127.0.0.1:104",
                                                        "Association Parameters for 127.0.0.1:11112"]
    # And the title row shows the vendor's declaration as declared, never contradicted by the guess
    [n65] = [t for t in out if t.id == "N.6-5"]
    titles = [r for r in n65.rows if r[0].value == "Called AE Title (SCP)"]
    assert [(r[2].value, r[2].provenance) for r in titles] == [("ORTHANC", Provenance.DECLARED)] * 2
    # And without a declaration it is not verifiable, saying why, while the comment keeps its measurement
    out = [t for _s, t in tables(AuditData(endpoints=[], evidence=[], application_entities=[a]))]
    [n65] = [t for t in out if t.id == "N.6-5"]
    [row] = [r for r in n65.rows if r[0].value == "Called AE Title (SCP)"]
    assert (row[2].value, row[2].provenance, row[2].evidence) == ("", Provenance.NOT_VERIFIABLE, [])
    assert "accepts any Called AE Title" in row[2].note and "'ANY-SCP', the title identification guessed" in row[2].note
    assert (row[3].value, row[3].evidence) == ("any Called AE Title is accepted", ["ev-3"])


def test_a_title_is_verified_only_where_other_titles_are_refused() -> None:
    # Given a configured AE whose title policy was not measured, and a guessed title the product answered to
    # while it refused a random one (the product's own, as measured)
    unmeasured = ApplicationEntity(ae_title="PACS", host="127.0.0.1", port=104, tls=False, reference_evidence="ev-1",
                                   presentation_contexts=[IAN])
    measured = _guessed(11112, "ev-2", accepts_any_called_ae=False,
                        attempts=[_attempt("any_called_ae", "rejected", "ev-4", (1, 1, 7))])
    out = [t for _s, t in tables(AuditData(endpoints=[], evidence=[], application_entities=[unmeasured, measured]))]
    [n65] = [t for t in out if t.id == "N.6-5"]
    rows = [r[2] for r in n65.rows if r[0].value == "Called AE Title (SCP)"]
    # Then the unmeasured one is not observed, with the reason; the measured one is verified with its evidence
    assert (rows[0].value, rows[0].provenance) == ("", Provenance.NOT_OBSERVED) and "not measured" in rows[0].note
    assert (rows[1].value, rows[1].provenance, rows[1].evidence) == ("ANY-SCP", Provenance.VERIFIED, ["ev-2"])
    assert [t.title for t in out if t.id == "N.7-2"] == ["Association Parameters for PACS",
                                                        "Association Parameters for ANY-SCP"]
    # And a guessed title that was itself refused is not the product's, even though a random one was refused too
    refused = _guessed(104, "ev-1", accepts_any_called_ae=False).model_copy(update={"reference_evidence": None})
    assert not refused.title_measured() and refused.label() == "127.0.0.1:104"


def test_n79_failure_handling_cites_the_attempts_that_showed_it() -> None:
    # Given an AE that refused an unknown Called AE, accepted an unknown Calling AE, refused association 3 of 2
    # allowed, refused invalid credentials and closed a silent connection after its ARTIM timer
    attempts = [
        _attempt("any_called_ae", "rejected", "ev-3", (1, 1, 7)),
        _attempt("any_calling_ae", "accepted", "ev-4"),
        _attempt("max_associations", "accepted", "ev-5", run=1, index=1),
        _attempt("max_associations", "accepted", "ev-6", run=1, index=2),
        _attempt("max_associations", "rejected", "ev-7", (2, 3, 2), run=1, index=3),
        _attempt("user_identity", "rejected", "ev-8", (1, 2, 1), user_identity_type=2, credentials="invalid"),
        _attempt("user_identity", "accepted", "ev-9", user_identity_type=1, credentials="invalid"),
    ]
    ae = _ae(11112, False, "ev-1", [], attempts=attempts, max_associations=2, max_associations_reached_cap=False,
             max_associations_evidence=["ev-5", "ev-6", "ev-7"],
             timeouts={"artim": MeasuredTimeout(seconds=5.0, cap_seconds=35, ended_by="close", evidence="ev-10")})
    out = {t.id: (s, t) for s, t in tables(AuditData(endpoints=[], evidence=[], application_entities=[ae]))}
    sid, n79 = out["N.7-9"]
    assert sid == "N.7.3.1.2" and n79.columns == ["Exception", "Failure response"]
    rows = {r[0].value: r[1] for r in n79.rows}
    # Then each observed row says the answer and cites the attempt(s) that got it
    assert rows["Unrecognized Called AE"].value.startswith("A-ASSOCIATE-RJ (1, 1, 7)")
    assert rows["Unrecognized Called AE"].evidence == ["ev-3"]
    assert rows["Unrecognized Calling AE"].value.startswith("A-ASSOCIATE-AC")
    assert rows["Unrecognized Calling AE"].evidence == ["ev-4"]
    limit = rows["Exceed limit for number of connections supported"]
    assert limit.value.startswith("A-ASSOCIATE-RJ (2, 3, 2)") and limit.evidence == ["ev-7"]
    ident = rows["Invalid User Identity credentials"]
    assert ident.value == "A-ASSOCIATE-RJ (1, 2, 1): rejected-permanent (type 2)" and ident.evidence == ["ev-8"]
    artim = rows["No A-ASSOCIATE-RQ after TCP connect (ARTIM expiry)"]
    assert artim.value == "the acceptor closes the TCP connection after 5 s" and artim.evidence == ["ev-10"]
    # And what was not provoked is ∅ with its reason, never a value
    for name in ("Failure during processing of an Association request", "Incomplete A-ASSOCIATE-RQ"):
        assert rows[name].provenance == Provenance.NOT_OBSERVED and rows[name].note and not rows[name].value


def test_n79_busy_answers_prove_nothing() -> None:
    busy = _attempt("any_called_ae", "rejected", "ev-3", (2, 3, 2)).model_copy(update={"busy": True})
    ae = _ae(11112, False, "ev-1", [], attempts=[busy])
    [n79] = [t for _s, t in tables(AuditData(endpoints=[], evidence=[], application_entities=[ae])) if t.id == "N.7-9"]
    called = {r[0].value: r[1] for r in n79.rows}["Unrecognized Called AE"]
    assert called.provenance == Provenance.NOT_OBSERVED and "busy" in called.note


def test_n71_shows_acceptor_and_requestor_each_with_its_evidence() -> None:
    data = sample()
    dcmtk = data.initiators[0].model_copy(update={"implementation_class_uid": "1.2.276.0.7230010.3.0.3.6.7",
                                                  "implementation_version_name": "OTHER_NAME", "max_pdu_length": 16384})
    data = AuditData(endpoints=[], evidence=[], application_entities=data.application_entities, initiators=[dcmtk])
    n71 = {r[0].value: r[1] for _s, t in tables(data) if t.id == "N.7-1" for r in t.rows}
    # Both sides agree: one value, both associations cited
    uid = n71["Implementation Class UID"]
    assert uid.value == "1.2.276.0.7230010.3.0.3.6.7" and uid.evidence == ["ev-1", "ev-20"]
    assert "Acceptor and as Association Requestor" in uid.note
    # They differ: both shown
    ver = n71["Implementation Version Name"]
    assert ver.value == "as acceptor: OFFIS_DCMTK_367; as requestor: OTHER_NAME" and ver.evidence == ["ev-1", "ev-20"]


def test_sender_columns_need_a_captured_association() -> None:
    # Given only a failed TLS handshake (no A-ASSOCIATE-RQ): nothing is known about identity as sender
    failed = Initiator(calling_ae="", called_ae="", peer="127.0.0.1", outcome="tls_failure", evidence=["ev-30"])
    out = {t.id: t for _s, t in tables(AuditData(endpoints=[], evidence=[], initiators=[failed]))}
    basic = {r[0].value: r for r in out["N.8-2"].rows}["Basic User Identity Association"][1]
    assert basic.provenance == Provenance.NOT_OBSERVED and basic.note == "no association captured by dcsaudit listen"
    assert all(c.provenance == Provenance.NOT_OBSERVED for r in out["N.8-8"].rows for c in r[1:])
    # Given a captured association without identity: N, citing that association as the control
    plain = Initiator(calling_ae="MOD", called_ae="X", peer="127.0.0.1", evidence=["ev-31"])
    out = {t.id: t for _s, t in tables(AuditData(endpoints=[], evidence=[], initiators=[failed, plain]))}
    basic = {r[0].value: r for r in out["N.8-2"].rows}["Basic User Identity Association"][1]
    assert (basic.value, basic.evidence) == ("N", ["ev-31"]) and "1 captured association" in basic.note
    n88 = {r[0].value: r for r in out["N.8-8"].rows}
    assert (n88["User-Identity-Type"][1].value, n88["User-Identity-Type"][1].evidence) == ("N", ["ev-31"])
    assert n88["User-Identity-Type"][2].provenance == Provenance.NOT_OBSERVED
