"""Annex tables of the association audit, built from constructed results (no network)."""

from __future__ import annotations

from dcsaudit.annex.dicom_tables import tables
from dcsaudit.checks import AuditData
from dcsaudit.models.core import Provenance
from dcsaudit.models.dicom import (
    ApplicationEntity,
    IdentityTypeResult,
    Initiator,
    MeasuredTimeout,
    PresentationContextResult,
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
    assert {k: v[0] for k, v in out.items()} == {"N.6-1": "N.6.1", "N.6-6": "N.6.2.5", "N.7-1": "N.7.1.1",
                                                  "N.8-2": "N.8.4.1", "N.8-8": "N.8.5", "N.8-9": "N.8.5"}
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
