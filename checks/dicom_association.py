"""Checks on the association audit of each AE as acceptor, and on captured initiators (PS3.8 §9.3, PS3.7 D.3.3.7).

They read only :class:`ApplicationEntity` / :class:`Initiator` results; an AE whose audit failed (its
``error`` is set) or where a question could not be answered gives ``not_applicable``, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterator

from dcsaudit.checks.base import AuditData, Verdict, check
from dcsaudit.models.dicom import ApplicationEntity, AttemptPurpose

BASELINES: tuple[AttemptPurpose, ...] = ("baseline", "baseline_with_identity")


def _target(ae: ApplicationEntity) -> str:
    return f"{ae.host}:{ae.port}/{'dicom-tls' if ae.tls else 'dicom'} AE {ae.ae_title}"


def _ev(ae: ApplicationEntity, *purposes: AttemptPurpose) -> list[str]:
    picked = [a.evidence for a in ae.attempts if a.evidence and (not purposes or a.purpose in purposes)]
    return picked or ae.evidence[:3]


def _triple(t: object) -> str:
    return f"({t.result}, {t.source}, {t.reason})" if t is not None else "no RJ"  # type: ignore[attr-defined]


@check(id="dicom.association_failed", title="DICOM AE could not be audited (no association answer)",
       severity="medium", references=["PS3.8 §9.3", "PS3.7 D.3.3"])
def association_failed(data: AuditData) -> Iterator[Verdict]:
    for ae in data.application_entities:
        if ae.error:
            yield Verdict("error", _target(ae), ae.error, ae.evidence[:3])
        elif ae.verification is None:
            yield Verdict("error", _target(ae), "verification undetermined: no definite answer to the reference "
                          "association", _ev(ae, *BASELINES))
        elif ae.verification is False:
            yield Verdict("fail", _target(ae), "Verification (C-ECHO) did not succeed with the configured titles",
                          _ev(ae, *BASELINES))
        else:
            yield Verdict("pass", _target(ae), "association and C-ECHO succeeded", _ev(ae, *BASELINES))


# Baseline outcomes that mean no DICOM conversation could be had at all (models/dicom.py AssocOutcome).
_NO_CONVERSATION = ("closed", "refused", "timeout", "tls_failure", "protocol_error", "error")


@check(id="dicom.ae_reachable", title="Configured DICOM AE answered an association request",
       severity="high", references=["PS3.8 §9.3", "PS3.2 N.6.1"])
def ae_reachable(data: AuditData) -> Iterator[Verdict]:
    """An AE whose baseline association cannot be made was not audited: its checks all read
    not_applicable, so without this finding a vanished or broken DICOM service would look clean.
    Any DICOM answer (AC, RJ, A-ABORT) proves the AE is there; a busy product or a run cut short is
    undetermined (error), never a pass."""
    for ae in data.application_entities:
        base = next((a for a in ae.attempts if a.purpose == "baseline"), None)
        if base is not None and base.outcome in _NO_CONVERSATION:
            yield Verdict("fail", _target(ae), f"no association could be made: {base.outcome}"
                          + (f" ({base.error})" if base.error else ""), _ev(ae, "baseline"))
        elif base is not None and not base.busy:
            yield Verdict("pass", _target(ae), f"answered the association request ({base.outcome})",
                          _ev(ae, "baseline"))
        else:
            yield Verdict("error", _target(ae), ae.error or "the baseline association stayed busy: undetermined",
                          ae.evidence[:3])


@check(id="dicom.promiscuous_called_ae", title="Any Called AE Title is accepted",
       severity="medium", references=["PS3.8 §9.3.4 (reason 7 called-AE-title-not-recognized)", "PS3.2 N.6.2"])
def promiscuous_called_ae(data: AuditData) -> Iterator[Verdict]:
    for ae in data.application_entities:
        if ae.error or ae.accepts_any_called_ae is None:
            yield Verdict("not_applicable", _target(ae), "the Called AE policy could not be determined", ae.evidence[:1])
        elif ae.accepts_any_called_ae:
            yield Verdict("fail", _target(ae), "a random 16-character Called AE Title was accepted", _ev(ae, "any_called_ae"))
        else:
            yield Verdict("pass", _target(ae), f"a random Called AE Title was refused {_triple(ae.called_ae_reject)}",
                          _ev(ae, "any_called_ae"))


@check(id="dicom.any_calling_ae", title="Any Calling AE Title is accepted",
       severity="medium", references=["PS3.8 §9.3.4 (reason 3 calling-AE-title-not-recognized)", "PS3.2 N.6.2"])
def any_calling_ae(data: AuditData) -> Iterator[Verdict]:
    for ae in data.application_entities:
        if ae.error or ae.accepts_any_calling_ae is None:
            yield Verdict("not_applicable", _target(ae), "the Calling AE policy could not be determined", ae.evidence[:1])
        elif ae.accepts_any_calling_ae:
            yield Verdict("fail", _target(ae), "a random Calling AE Title was accepted: no caller filtering",
                          _ev(ae, "any_calling_ae"))
        else:
            yield Verdict("pass", _target(ae), f"a random Calling AE Title was refused {_triple(ae.calling_ae_reject)}",
                          _ev(ae, "any_calling_ae"))


@check(id="dicom.default_ae_titles", title="Vendor-default AE Titles are accepted",
       severity="low", references=["PS3.2 N.6.2 (AE Title configuration)"])
def default_ae_titles(data: AuditData) -> Iterator[Verdict]:
    for ae in data.application_entities:
        accepted = ae.default_called_aes_accepted + ae.default_calling_aes_accepted
        tested = [a for a in ae.attempts if a.purpose in ("default_called_ae", "default_calling_ae")]
        if accepted:
            yield Verdict("fail", _target(ae), f"default titles accepted: {', '.join(accepted)}",
                          _ev(ae, "default_called_ae", "default_calling_ae"))
        elif tested:
            yield Verdict("pass", _target(ae), f"{len(tested)} vendor-default titles refused",
                          _ev(ae, "default_called_ae", "default_calling_ae"))
        else:
            yield Verdict("not_applicable", _target(ae), "not tested (any title is accepted, or the audit failed)",
                          ae.evidence[:1])


@check(id="dicom.unauthenticated_query_retrieve", title="Query/Retrieve or Worklist accepted without user identity",
       severity="high", references=["PS3.4 Annex C, K", "PS3.7 D.3.3.7", "PS3.2 N.8.5.2"])
def unauthenticated_query_retrieve(data: AuditData) -> Iterator[Verdict]:
    for ae in data.application_entities:
        base = [a for a in ae.attempts if a.purpose == "baseline"]
        if ae.error or not base or base[0].outcome != "accepted":
            yield Verdict("not_applicable", _target(ae), "no association without identity was accepted", ae.evidence[:1])
        elif ae.unauthenticated_query_retrieve:
            yield Verdict("fail", _target(ae), "accepted without any identity: "
                          + ", ".join(ae.unauthenticated_query_retrieve), _ev(ae, *BASELINES))
        else:
            yield Verdict("pass", _target(ae), "no Q/R or Worklist presentation context accepted without identity",
                          _ev(ae, *BASELINES))


@check(id="dicom.user_identity_not_enforced", title="Associations without user identity are accepted",
       severity="medium", references=["PS3.7 D.3.3.7", "PS3.15 B.5", "PS3.2 Table N.8-9"])
def user_identity_not_enforced(data: AuditData) -> Iterator[Verdict]:
    for ae in data.application_entities:
        uid = ae.user_identity
        if ae.error or uid.enforced is None:
            yield Verdict("not_applicable", _target(ae), f"enforcement undetermined: {uid.enforced_reason or ae.error}",
                          uid.enforced_evidence or ae.evidence[:1])
        elif uid.enforced:
            yield Verdict("pass", _target(ae), uid.enforced_reason, uid.enforced_evidence)
        else:
            yield Verdict("fail", _target(ae), uid.enforced_reason, uid.enforced_evidence)


@check(id="dicom.user_identity_reject_coding", title="User identity rejections use the PS3.7 coding",
       severity="low", references=["PS3.7 D.3.3.7.3 (rejected-permanent, source 2)", "PS3.8 §9.3.4"])
def user_identity_reject_coding(data: AuditData) -> Iterator[Verdict]:
    for ae in data.application_entities:
        uid = ae.user_identity
        triples = ", ".join(f"type {t}: {_triple(v)}" for t, v in sorted(uid.reject_triples.items()))
        if uid.reject_coding == "none":
            yield Verdict("not_applicable", _target(ae), "no identity was rejected", ae.evidence[:1])
        elif uid.reject_coding == "conformant":
            yield Verdict("pass", _target(ae), f"rejected-permanent by the ACSE provider ({triples})",
                          _ev(ae, "user_identity"))
        else:
            yield Verdict("fail", _target(ae), f"{uid.reject_coding.replace('_', ' ')} coding ({triples})",
                          _ev(ae, "user_identity"))


@check(id="dicom.invalid_identity_accepted", title="Invalid user credentials are accepted as an identity",
       severity="high", references=["PS3.7 D.3.3.7.2", "PS3.15 B.5–B.7"])
def invalid_identity_accepted(data: AuditData) -> Iterator[Verdict]:
    """A passcode, ticket, assertion or token that is processed but not checked (type 1 needs no check, B.4)."""
    for ae in data.application_entities:
        probed = {t: r for t, r in ae.user_identity.types.items() if r.invalid is not None and t != "1"}
        if ae.error or not probed:
            yield Verdict("not_applicable", _target(ae), "user identity types 2-5 not probed", ae.evidence[:1])
            continue
        bad = {t: r for t, r in probed.items() if r.classification == "accepted_unchecked"}
        if bad:
            yield Verdict("fail", _target(ae), "; ".join(f"type {t}: {r.reason}" for t, r in sorted(bad.items())),
                          [e for r in bad.values() for e in r.evidence])
        else:
            yield Verdict("pass", _target(ae), "no invalid credentials were accepted as an identity (types "
                          + ", ".join(sorted(probed)) + " probed)",
                          [e for r in probed.values() for e in r.evidence])


@check(id="dicom.user_identity_positive_response", title="Accepted identity without the requested positive response",
       severity="low", references=["PS3.7 D.3.3.7.2 (User Identity AC sub-item, 0x59)"])
def user_identity_positive_response(data: AuditData) -> Iterator[Verdict]:
    """PS3.7 lets an acceptor that checks credentials accept without 0x59; a requestor that asked for
    confirmation cannot tell such an acceptor from one that ignores the identity."""
    for ae in data.application_entities:
        supported = {t: r for t, r in ae.user_identity.types.items() if r.classification == "supported"}
        if ae.error or not supported:
            yield Verdict("not_applicable", _target(ae), "no identity type proven supported", ae.evidence[:1])
            continue
        missing = sorted(t for t, r in supported.items() if r.positive_response_missing)
        ev = [e for r in supported.values() for e in r.evidence]
        if missing:
            yield Verdict("fail", _target(ae), "valid identity of type " + ", ".join(missing)
                          + " accepted without a User Identity AC item although a positive response was requested", ev)
        else:
            yield Verdict("pass", _target(ae), "every supported type answered the positive-response request", ev)


@check(id="dicom.initiator_passcode_plaintext", title="Product sends a passcode over an unencrypted association",
       severity="high", references=["PS3.7 D.3.3.7.1 (type 2)", "PS3.15 B.5"])
def initiator_passcode_plaintext(data: AuditData) -> Iterator[Verdict]:
    for init in data.initiators:
        target = f"initiator {init.peer} AE {init.calling_ae}"
        if init.user_identity_type is None:
            yield Verdict("not_applicable", target, "no user identity sent", init.evidence)
        elif init.user_identity_type == 2 and not init.tls:
            yield Verdict("fail", target, "username and passcode sent without TLS", init.evidence)
        else:
            yield Verdict("pass", target, f"identity type {init.user_identity_type}"
                          f"{' over TLS' if init.tls else ' (no passcode)'}", init.evidence)
