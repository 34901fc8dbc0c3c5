"""Each association check: one passing and one failing case on constructed results (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from dcsaudit.checks import REGISTRY, AuditData
from dcsaudit.models.dicom import (
    ApplicationEntity,
    AssociationAttempt,
    IdentityTypeResult,
    Initiator,
    RejectTriple,
    UserIdentityResult,
)


def attempt(purpose: str, outcome: str = "accepted", **kw: Any) -> AssociationAttempt:
    return AssociationAttempt(purpose=purpose, called_ae="X", calling_ae="Y", outcome=outcome,  # type: ignore[arg-type]
                              evidence=f"ev-{purpose}", **kw)


def ae(**kw: Any) -> ApplicationEntity:
    base: dict[str, Any] = {"ae_title": "PACS", "host": "127.0.0.1", "port": 104, "tls": False,
                            "attempts": [attempt("baseline", echo_status=0)], "evidence": ["ev-1"]}
    base.update(kw)
    return ApplicationEntity(**base)


def statuses(check_id: str, aes: list[ApplicationEntity] | None = None, inits: list[Initiator] | None = None) -> list[str]:
    spec = REGISTRY.get(check_id)
    assert spec is not None
    findings = spec.run(AuditData(endpoints=[], evidence=[], application_entities=aes or [], initiators=inits or []))
    return [f.status for f in findings]


def uid(classification: str, invalid: str, valid: str | None = None, **kw: Any) -> IdentityTypeResult:
    return IdentityTypeResult(classification=classification, invalid=invalid, valid=valid,  # type: ignore[arg-type]
                              evidence=["ev-uid"], **kw)


def identity(**types: IdentityTypeResult) -> UserIdentityResult:
    return UserIdentityResult(types={**UserIdentityResult().types, **types})


RJ7 = RejectTriple(result=1, source=1, reason=7)
RJ3 = RejectTriple(result=1, source=1, reason=3)


@pytest.mark.parametrize("check_id,good,bad", [
    ("dicom.association_failed", ae(verification=True), ae(verification=False)),
    ("dicom.promiscuous_called_ae", ae(accepts_any_called_ae=False, called_ae_reject=RJ7), ae(accepts_any_called_ae=True)),
    ("dicom.any_calling_ae", ae(accepts_any_calling_ae=False, calling_ae_reject=RJ3), ae(accepts_any_calling_ae=True)),
    ("dicom.default_ae_titles",
     ae(attempts=[attempt("default_called_ae", "rejected", reject=RJ7)]),
     ae(attempts=[attempt("default_called_ae")], default_called_aes_accepted=["ORTHANC"])),
    ("dicom.unauthenticated_query_retrieve", ae(),
     ae(unauthenticated_query_retrieve=["StudyRootQueryRetrieveInformationModelFind"])),
    ("dicom.user_identity_not_enforced", ae(user_identity=UserIdentityResult(enforced=True, enforced_reason="x")),
     ae(user_identity=UserIdentityResult(enforced=False, enforced_reason="x"))),
    ("dicom.user_identity_reject_coding",
     ae(user_identity=UserIdentityResult(reject_coding="conformant",
                                         reject_triples={"2": RejectTriple(result=1, source=2, reason=1)})),
     ae(user_identity=UserIdentityResult(reject_coding="transient",
                                         reject_triples={"2": RejectTriple(result=2, source=2, reason=1)}))),
    ("dicom.invalid_identity_accepted",
     ae(user_identity=identity(**{"1": uid("accepted_unchecked", "accepted_with_response"),
                                  "5": uid("supported", "refused", "accepted_with_response")})),
     ae(user_identity=identity(**{"5": uid("accepted_unchecked", "accepted_with_response")}))),
    ("dicom.user_identity_positive_response",
     ae(user_identity=identity(**{"5": uid("supported", "refused", "accepted_with_response")})),
     ae(user_identity=identity(**{"2": uid("supported", "refused", "accepted", positive_response_missing=True)}))),
])
def test_check_pass_and_fail(check_id: str, good: ApplicationEntity, bad: ApplicationEntity) -> None:
    # Given one conforming and one non-conforming AE result; When the check runs; Then pass, then fail
    assert statuses(check_id, [good]) == ["pass"]
    assert statuses(check_id, [bad]) == ["fail"]


def test_failed_audit_is_error_or_not_applicable_not_a_verdict() -> None:
    # Given an AE whose audit failed (e.g. a hostile peer)
    broken = ae(error="baseline association: timeout", attempts=[attempt("baseline", "timeout")])
    # Then the availability check reports an error and the policy checks do not guess
    assert statuses("dicom.association_failed", [broken]) == ["error"]
    assert statuses("dicom.promiscuous_called_ae", [broken]) == ["not_applicable"]
    assert statuses("dicom.user_identity_not_enforced", [broken]) == ["not_applicable"]
    # And an AE whose reference association got no definite answer has no verification verdict
    assert statuses("dicom.association_failed", [ae(verification=None)]) == ["error"]


def test_initiator_passcode_over_plaintext() -> None:
    plain = Initiator(calling_ae="MOD", called_ae="PACS", peer="127.0.0.1", user_identity_type=2, tls=False)
    over_tls = Initiator(calling_ae="MOD", called_ae="PACS", peer="127.0.0.1", user_identity_type=2, tls=True)
    assert statuses("dicom.initiator_passcode_plaintext", inits=[over_tls]) == ["pass"]
    assert statuses("dicom.initiator_passcode_plaintext", inits=[plain]) == ["fail"]
