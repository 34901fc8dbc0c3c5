"""What association attempts prove: pure rules from recorded attempts to DICOM facts (no I/O).

The association audit records every attempt (:class:`AssociationAttempt`); these functions turn them
into the facts the report and annex publish. The rule everywhere: a fact needs an answer that has no
other explanation. A transient reject or abort that persisted through the retries (the product was
busy), a refusal for an AE title, or no answer at all never becomes a verdict on anything else.

- AE title policy: PS3.8 §9.3.4 (reasons 3 and 7 of source 1).
- User Identity Negotiation: PS3.7 D.3.3.7 (an acceptor that checks credentials may accept without
  the 0x59 reply item; the item is only owed for a positive-response request), PS3.15 B.4–B.7.
"""

from __future__ import annotations

from dcsaudit.models.dicom import (
    AssociationAttempt,
    IdentityAnswer,
    IdentityTypeResult,
    RejectCoding,
    RejectTriple,
    UserIdentityResult,
)

TYPE_NAMES = {1: "username", 2: "username and passcode", 3: "Kerberos service ticket", 4: "SAML assertion",
              5: "JSON Web Token"}


def answer(attempt: AssociationAttempt | None) -> IdentityAnswer | None:
    """Normalise one attempt's outcome (None: not attempted)."""
    if attempt is None:
        return None
    if attempt.outcome == "accepted":
        return "accepted_with_response" if attempt.user_identity_response else "accepted"
    if attempt.busy:
        return "busy"
    if attempt.title_reject:
        return "title_refused"
    if attempt.outcome in ("rejected", "aborted"):
        return "refused"
    return "no_answer"


def _why_not(what: str, ans: IdentityAnswer | None) -> str:
    return {
        "busy": f"{what}: the product stayed busy (rejected-transient or aborted through every retry)",
        "title_refused": f"{what}: refused for its AE titles, which says nothing about identity",
        "no_answer": f"{what}: no association answer",
        None: f"{what}: not attempted",
    }.get(ans, f"{what}: {ans}")


def title_policy(reference: AssociationAttempt, probe: AssociationAttempt, reason_code: int) -> bool | None:
    """Does the acceptor take an unknown AE title? None when the answers do not tell.

    An RJ with the title's own reason code (7 called, 3 calling) is proof by itself. Any other
    definite refusal proves it only when the reference request, identical but for the title, was
    accepted. A busy product, or no answer, proves nothing: a TCP close or reset (``closed``), a
    timeout or garbage is never an answer about a title, however often it repeats (issue 12, F2).
    """
    if probe.outcome == "accepted":
        return True
    if probe.busy or not probe.refused:
        return None
    if probe.reject is not None and probe.reject.source == 1 and probe.reject.reason == reason_code:
        return False
    return False if reference.outcome == "accepted" else None


def verification(reference: AssociationAttempt) -> bool | None:
    """Verification SOP Class works (C-ECHO status 0) — None when the product was busy or silent."""
    if reference.outcome == "accepted":
        return reference.echo_status == 0
    if reference.refused and not reference.title_reject:
        return False
    return None


def _classify_type(t: int, baseline: AssociationAttempt | None, invalid: AssociationAttempt | None,
                   valid: AssociationAttempt | None, not_tested_reason: str) -> IdentityTypeResult:
    base, inv, val = answer(baseline), answer(invalid), answer(valid)
    ev = [a.evidence for a in (baseline, invalid, valid) if a is not None and a.evidence] if invalid else []
    r = IdentityTypeResult(without_identity=base, invalid=inv, valid=val, evidence=ev)
    name = f"type {t} ({TYPE_NAMES[t]})"
    if inv is None:
        return r.model_copy(update={"classification": "not_tested", "reason": not_tested_reason or "not probed"})
    if inv in ("busy", "title_refused", "no_answer"):
        return r.model_copy(update={"classification": "undetermined", "reason": _why_not("invalid credentials", inv)})
    if inv == "accepted_with_response":
        why = ("a random user name got a positive response (PS3.15 B.4 needs no check)" if t == 1 else
               "invalid credentials got a positive response: the identity is processed but not authenticated")
        return r.model_copy(update={"classification": "accepted_unchecked", "reason": why})
    if inv == "accepted":
        if base in ("accepted", "accepted_with_response"):
            return r.model_copy(update={"classification": "not_checked",
                                        "reason": "invalid credentials accepted exactly like no identity"})
        if base == "refused":
            return r.model_copy(update={"classification": "accepted_unchecked", "reason": (
                "an association without identity is refused, one with invalid credentials is accepted")})
        return r.model_copy(update={"classification": "undetermined", "reason": (
            "invalid credentials accepted, but the answer without identity is unknown ("
            + _why_not("without identity", base) + ")")})
    # The invalid identity was refused: support, blanket refusal of the type, or refusal of everything?
    if val is None:
        return r.model_copy(update={"classification": "undetermined", "reason": (
            f"rejects unknown credentials of {name}; no valid credentials of this type configured, and an "
            "acceptor that refuses every unsupported type looks the same")})
    if val in ("accepted", "accepted_with_response"):
        missing = bool(valid and valid.positive_response_requested and val == "accepted")
        return r.model_copy(update={"classification": "supported", "positive_response_missing": missing,
                                    "reason": "invalid credentials refused, the configured valid ones accepted"
                                    + ("; no User Identity AC item (0x59) despite the positive-response request"
                                       if missing else "")})
    if val == "refused":
        return r.model_copy(update={"classification": "refused",
                                    "reason": f"{name} refused even with the configured credentials"})
    return r.model_copy(update={"classification": "undetermined", "reason": _why_not("valid credentials", val)})


def reject_coding(triples: list[RejectTriple]) -> RejectCoding:
    """PS3.7 D.3.3.7.3 wants rejected-permanent (1) by the ACSE provider (source 2)."""
    if not triples:
        return "none"
    if all(t.result == 1 and t.source == 2 for t in triples):
        return "conformant"
    if all(t.source == 2 for t in triples) and any(t.result == 2 for t in triples):
        return "transient"
    return "non_standard"


def classify_identity(baseline: AssociationAttempt | None, invalid: dict[int, AssociationAttempt],
                      valid: dict[int, AssociationAttempt], notes: list[str],
                      not_tested: dict[int, str] | None = None) -> UserIdentityResult:
    """Per-type verdicts and enforcement from the attempts (see the module docstring for the rules)."""
    base = answer(baseline)
    not_tested = not_tested or {}
    types = {str(t): _classify_type(t, baseline, invalid.get(t), valid.get(t), not_tested.get(t, ""))
             for t in range(1, 6)}
    accepted_valid = [a for a in valid.values() if a.outcome == "accepted"]
    base_ev = [baseline.evidence] if baseline is not None and baseline.evidence else []
    if base in ("accepted", "accepted_with_response"):
        enforced, why, ev = False, "an association without identity is accepted", base_ev
    elif base == "refused" and accepted_valid:
        enforced, why = True, "an association without identity is refused, one with a valid identity accepted"
        ev = base_ev + [a.evidence for a in accepted_valid[:1] if a.evidence]
    elif base == "refused":
        enforced, why, ev = None, ("an association without identity is refused, but no valid identity was "
                                   "accepted either: the refusal may have another cause"), base_ev
    else:
        enforced, why, ev = None, _why_not("the association without identity", base), base_ev
    # Reject triples count only where the identity caused the rejection: the same request without
    # identity was accepted, or valid credentials of the type were accepted.
    triples = {str(t): a.reject for t, a in invalid.items()
               if a.reject is not None and a.refused and not a.title_reject
               and (enforced is False or types[str(t)].classification == "supported")}
    return UserIdentityResult(types=types, enforced=enforced, enforced_reason=why, enforced_evidence=ev,
                              reject_triples=triples, reject_coding=reject_coding(list(triples.values())),
                              notes=notes)
