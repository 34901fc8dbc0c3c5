"""Trigger correlation: scan actions (Evidence, and the association attempts they record) matched to
audit messages within a window. Matching reads typed fields only, never ``Evidence.data``."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from dcsaudit.auditmsg.correlate import correlate, matches_trigger, validate_triggers
from dcsaudit.models.audit import AuditMessage, AuditTrail
from dcsaudit.models.core import Evidence, Reason
from dcsaudit.models.dicom import ApplicationEntity, AssociationAttempt, RejectTriple
from dcsaudit.rules.audit_events import load_rules

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def ev(i: int, probe: str, at_s: float, ok: bool = True, reason: Reason | None = None) -> Evidence:
    # The display data says the opposite of the typed facts: matching must not read it.
    return Evidence(id=f"ev-{i:04d}", probe=probe, target="127.0.0.1:11112/tcp", at=T0 + dt.timedelta(seconds=at_s),
                    ok=ok, reason=reason, summary="", data={"purpose": "nonsense", "outcome": "nonsense"})


def attempt(i: int, purpose: str, outcome: str, **kw: Any) -> AssociationAttempt:
    return AssociationAttempt.model_validate({"purpose": purpose, "called_ae": "PACS", "calling_ae": "DCSAUDIT",
                                              "outcome": outcome, "evidence": f"ev-{i:04d}", **kw})


def ae(*attempts: AssociationAttempt) -> list[ApplicationEntity]:
    return [ApplicationEntity(ae_title="PACS", host="127.0.0.1", port=11112, tls=False, attempts=list(attempts))]


def invalid_identity(i: int, ty: int, outcome: str = "rejected") -> AssociationAttempt:
    return attempt(i, "user_identity", outcome, user_identity_type=ty, credentials="invalid")


def msg(event_id: str, at_s: float, outcome: str = "0", types: list[str] | None = None) -> AuditMessage:
    return AuditMessage(transport="tls", peer="127.0.0.1:1", received_at=T0 + dt.timedelta(seconds=at_s),
                        event_id=event_id, event_outcome=outcome, event_type_codes=types or [], valid=True)


def test_rejected_identity_matched_and_missing() -> None:
    # Given two rejected user identities and one C-FIND, but only one User Authentication failure message
    evidence = [ev(1, "dicom.assoc", 0.0), ev(2, "dicom.assoc", 10.0), ev(3, "dicom.find", 20.0),
                ev(4, "identify.dicom", 0.0)]
    aes = ae(invalid_identity(1, 2), invalid_identity(2, 1))
    trail = AuditTrail(messages=[msg("110114", 0.5, outcome="4", types=["110122"]), msg("110112", 20.3)])
    # When correlated with a 5 s window
    out = correlate(evidence, trail, 5.0, application_entities=aes)
    # Then the first identity and the query are matched; the second identity is missing its message
    by = {c.action_evidence: c for c in out.correlations}
    assert by["ev-0001"].matched_messages == [0] and by["ev-0001"].trigger == "user_identity_rejected"
    assert by["ev-0003"].matched_messages == [1] and by["ev-0003"].trigger == "query"
    assert by["ev-0002"].matched_messages == []
    assert [(m.action_evidence, m.level) for m in out.missing_events] == [("ev-0002", "expected")]
    assert "110114" in out.missing_events[0].expected_events
    assert "ev-0004" not in by  # identification is not a trigger


def test_association_attempts_map_to_triggers() -> None:
    # Given the association audit's attempts (typed purpose / outcome on ApplicationEntity.attempts)
    evidence = [ev(1, "dicom.assoc", 0.0), ev(2, "dicom.assoc", 5.0), ev(3, "dicom.assoc", 9.0),
                ev(4, "dicom.assoc", 12.0)]
    aes = ae(attempt(1, "baseline", "accepted"),
             attempt(2, "any_called_ae", "rejected", reject=RejectTriple(result=1, source=1, reason=7)),
             attempt(3, "user_identity", "accepted", user_identity_type=2, credentials="valid"),
             attempt(4, "max_associations", "rejected", run=1, index=3))
    trail = AuditTrail(messages=[msg("110113", 5.1, outcome="4", types=["110126"]),
                                 msg("110114", 9.2, types=["110122"])])
    # When correlated
    out = correlate(evidence, trail, 2.0, application_entities=aes)
    # Then each maps to its trigger; a baseline echo and counting are no trigger (PS3.15 defines no
    # message for C-ECHO, so no message may be attributed to one)
    got = {c.action_evidence: (c.trigger, c.matched_events) for c in out.correlations}
    assert got == {"ev-0002": ("association_rejected", ["110113"]),
                   "ev-0003": ("user_identity_accepted", ["110114"])}
    assert out.missing_events == []


def test_without_attempts_association_rules_do_not_fire() -> None:
    # Given dicom.assoc evidence whose display data looks like a rejected identity, but no attempts
    evidence = [ev(1, "dicom.assoc", 0.0)]
    # When correlated without the application entities, Then nothing is an action
    assert correlate(evidence, AuditTrail(), 5.0).correlations == []


def test_message_outside_window_or_wrong_outcome_does_not_match() -> None:
    # Given a rejected identity, a success Login (wrong outcome) in the window, a failure after the window
    evidence = [ev(1, "dicom.assoc", 0.0)]
    trail = AuditTrail(messages=[msg("110114", 1.0, outcome="0"), msg("110114", 30.0, outcome="4")])
    # When correlated
    out = correlate(evidence, trail, 5.0, application_entities=ae(invalid_identity(1, 2)))
    # Then nothing matches
    assert out.correlations[0].matched_messages == [] and len(out.missing_events) == 1


def test_tls_bad_client_cert_expects_node_authentication_alert() -> None:
    # Given a TLS handshake refused for want of a client certificate, one completed, and a Security Alert 110126
    evidence = [ev(1, "tls.audit.client_auth", 0.0, reason=Reason.CLIENT_CERTIFICATE_REQUIRED),
                ev(2, "tls.audit.client_auth", 30.0)]
    trail = AuditTrail(messages=[msg("110113", 0.2, outcome="4", types=["110126"])])
    out = correlate(evidence, trail, 2.0)
    # Then only the refused handshake is an action, and it is answered
    assert [(c.action_evidence, c.matched_events) for c in out.correlations] == [("ev-0001", ["110113"])]
    assert not out.missing_events


def test_matching_rules_are_typed_and_dotted() -> None:
    # Given a custom rule on a nested field of the attempt, with an exclusion
    match = {"probe_prefix": ["dicom."], "association": [{"reject.source": [1, 2]}],
             "not_association": [{"purpose": "any_calling_ae"}]}
    rj = RejectTriple(result=1, source=1, reason=7)
    assert matches_trigger(ev(1, "dicom.assoc", 0), match, attempt(1, "any_called_ae", "rejected", reject=rj))
    assert not matches_trigger(ev(2, "dicom.assoc", 0), match, attempt(2, "any_calling_ae", "rejected", reject=rj))
    assert not matches_trigger(ev(3, "dicom.assoc", 0), match, attempt(3, "any_called_ae", "accepted"))
    assert not matches_trigger(ev(4, "dicom.assoc", 0), match, None)
    assert not matches_trigger(ev(5, "x.assoc", 0), match, attempt(5, "any_called_ae", "rejected", reject=rj))


def test_shipped_rules_validate() -> None:
    validate_triggers(load_rules()["triggers"])


@pytest.mark.parametrize("change, error", [
    (lambda m: m["association"][0].update(purpose="user_identity_"), "is not one of"),
    (lambda m: m["association"][0].update(identity="x"), "not a field of AssociationAttempt"),
    (lambda m: m.update(data=[{"purpose": "user_identity"}]), "Evidence.data is not matched"),
    (lambda m: m.update(reason=["no_such_reason"]), "is not one of"),
    (lambda m: m["association"][0].update(user_identity_type="2"), "not an integer"),
])
def test_a_rule_that_cannot_match_the_models_is_an_error(change: Any, error: str) -> None:
    # Given the shipped rules with one key or value that the models cannot hold
    rules = copy.deepcopy(load_rules()["triggers"])
    change(rules[0]["match"])
    # Then validation (and correlation) refuses them instead of never firing
    with pytest.raises(ValueError, match=error):
        validate_triggers(rules)
    with pytest.raises(ValueError, match=error):
        correlate([], AuditTrail(), 1.0, rules)


def test_busy_attempt_expects_no_authentication_message() -> None:
    # Given an identity probe the product answered rejected-transient through every retry (busy)
    busy = attempt(1, "user_identity", "rejected", user_identity_type=2, credentials="invalid", busy=True, retries=5,
                   reject=RejectTriple(result=2, source=3, reason=2), retry_evidence=["ev-0002", "ev-0003"])
    evidence = [ev(1, "dicom.assoc", 0.0), ev(2, "dicom.assoc", 0.0), ev(3, "dicom.assoc", 0.0)]
    # When correlated, Then neither the attempt nor its retried tries are actions
    assert correlate(evidence, AuditTrail(), 5.0, application_entities=ae(busy)).correlations == []
