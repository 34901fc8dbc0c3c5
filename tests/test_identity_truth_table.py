"""Truth table of the User Identity classifier (PS3.7 D.3.3.7, PS3.15 B.4–B.7), no network.

Every combination of {no identity, invalid, valid} × {accepted with 0x59, accepted without,
rejected permanent, rejected transient, aborted} (valid also: not configured). Transient and aborted
answers are what persisted through the retries, so they arrive marked ``busy``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dcsaudit.models.dicom import AssociationAttempt, Credentials, RejectTriple
from dcsaudit.rules.association_answers import classify_identity

ANSWERS = ("accepted_0x59", "accepted", "rejected_permanent", "rejected_transient", "aborted")


def attempt(purpose: str, kind: str, identity_type: int | None = None,
            credentials: Credentials | None = None) -> AssociationAttempt:
    """``purpose`` 'baseline', or 'user_identity' with its type and credentials."""
    kw: dict[str, Any] = {"purpose": purpose, "called_ae": "PACS", "calling_ae": "DCSAUDIT",
                          "evidence": f"ev-{purpose}-{identity_type}-{credentials}",
                          "user_identity_type": identity_type, "credentials": credentials,
                          "positive_response_requested": True if identity_type else None}
    if kind.startswith("accepted"):
        kw.update(outcome="accepted", user_identity_response=kind == "accepted_0x59")
    elif kind == "rejected_permanent":
        kw.update(outcome="rejected", reject=RejectTriple(result=1, source=2, reason=1))
    elif kind == "rejected_transient":
        kw.update(outcome="rejected", reject=RejectTriple(result=2, source=3, reason=2), busy=True, retries=5)
    else:
        kw.update(outcome="aborted", busy=True, retries=3)
    return AssociationAttempt.model_validate(kw)


# The rules, written as the table the classifier must reproduce.
def expected_class(base: str, invalid: str, valid: str | None) -> str:
    if invalid in ("rejected_transient", "aborted"):
        return "undetermined"  # busy: proves nothing
    if invalid == "accepted_0x59":
        return "accepted_unchecked"  # processed (positive response) although the credentials are invalid
    if invalid == "accepted":
        return {"accepted_0x59": "not_checked", "accepted": "not_checked",
                "rejected_permanent": "accepted_unchecked"}.get(base, "undetermined")
    # invalid credentials refused
    if valid is None:
        return "undetermined"  # an acceptor that refuses every unsupported type looks the same
    return {"accepted_0x59": "supported", "accepted": "supported", "rejected_permanent": "refused"}.get(valid,
                                                                                                        "undetermined")


def expected_enforced(base: str, valid: str | None) -> bool | None:
    if base.startswith("accepted"):
        return False
    if base == "rejected_permanent" and valid is not None and valid.startswith("accepted"):
        return True
    return None


@pytest.mark.parametrize("base,invalid,valid", list(itertools.product(ANSWERS, ANSWERS, (None, *ANSWERS))))
def test_identity_truth_table(base: str, invalid: str, valid: str | None) -> None:
    # Given the three answers for type 3 (Kerberos)
    b = attempt("baseline", base)
    i = attempt("user_identity", invalid, 3, "invalid")
    v = attempt("user_identity", valid, 3, "valid") if valid else None
    # When they are classified
    result = classify_identity(b, {3: i}, {3: v} if v else {}, [])
    r = result.types["3"]
    # Then the verdict follows the table, with a reason unless it is a plain verdict
    assert r.classification == expected_class(base, invalid, valid)
    if r.classification in ("undetermined", "refused", "accepted_unchecked"):
        assert r.reason
    # And the verdict cites exactly the attempts it compared
    assert r.evidence == [a.evidence for a in (b, i, v) if a is not None]
    # And a missing 0x59 is flagged only on a supported type, never turned into "unsupported"
    assert r.positive_response_missing == (r.classification == "supported" and valid == "accepted")
    # And enforcement needs a refusal without identity and an accepted valid identity
    assert result.enforced is expected_enforced(base, valid)
    # And types that were not probed say so
    assert result.types["4"].classification == "not_tested"


def test_type_1_random_user_with_positive_response_is_basic_support() -> None:
    # PS3.15 B.4 needs no check of a user name: a positive response to a random one is "accepted unchecked"
    r = classify_identity(attempt("baseline", "accepted"), {1: attempt("user_identity", "accepted_0x59", 1, "invalid")},
                          {}, []).types["1"]
    assert r.classification == "accepted_unchecked" and "B.4" in r.reason


def test_title_rejection_says_nothing_about_identity() -> None:
    # Given an acceptor that refused the identity probe for its Calling AE title (1, 1, 3)
    base = attempt("baseline", "accepted")
    refused_for_title = AssociationAttempt(purpose="user_identity", called_ae="PACS", calling_ae="X",
                                           outcome="rejected", reject=RejectTriple(result=1, source=1, reason=3),
                                           user_identity_type=3, credentials="invalid", evidence="ev-x")
    result = classify_identity(base, {3: refused_for_title}, {}, [])
    # Then the type is undetermined and the triple does not count as identity reject coding
    assert result.types["3"].classification == "undetermined"
    assert result.reject_triples == {} and result.reject_coding == "none"


def test_repeated_acse_transient_reject_is_a_refusal_with_transient_coding() -> None:
    # Given pynetdicom's (2, 2, 1) for a refused identity, repeated on the retry (not congestion)
    base = attempt("baseline", "accepted")
    rj = AssociationAttempt(purpose="user_identity", called_ae="PACS", calling_ae="DCSAUDIT",
                            outcome="rejected", reject=RejectTriple(result=2, source=2, reason=1), retries=1,
                            user_identity_type=2, credentials="invalid", evidence="ev-rj")
    ok = attempt("user_identity", "accepted", 2, "valid")
    result = classify_identity(base, {2: rj}, {2: ok}, [])
    # Then type 2 is supported and the coding is flagged as transient (PS3.7 wants rejected-permanent)
    assert result.types["2"].classification == "supported"
    assert result.reject_coding == "transient"
