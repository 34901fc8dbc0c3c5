"""Trigger correlation: scan actions (Evidence) matched to audit messages within a window."""

from __future__ import annotations

import datetime as dt

from dcsaudit.auditmsg.correlate import correlate, matches_trigger
from dcsaudit.models.audit import AuditMessage, AuditTrail
from dcsaudit.models.core import Evidence

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def ev(i: int, probe: str, at_s: float, ok: bool = True, **data: object) -> Evidence:
    return Evidence(id=f"ev-{i:04d}", probe=probe, target="127.0.0.1:11112/tcp", at=T0 + dt.timedelta(seconds=at_s),
                    ok=ok, summary="", data=dict(data))


def msg(event_id: str, at_s: float, outcome: str = "0", types: list[str] | None = None) -> AuditMessage:
    return AuditMessage(transport="tls", peer="127.0.0.1:1", received_at=T0 + dt.timedelta(seconds=at_s),
                        event_id=event_id, event_outcome=outcome, event_type_codes=types or [], valid=True)


def test_rejected_identity_matched_and_missing() -> None:
    # Given two rejected user identities and one C-FIND, but only one User Authentication failure message
    evidence = [ev(1, "dicom.assoc", 0.0, purpose="user_identity_2_invalid", outcome="rejected"),
                ev(2, "dicom.assoc", 10.0, purpose="user_identity_1_invalid", outcome="rejected"),
                ev(3, "dicom.find", 20.0), ev(4, "identify.dicom", 0.0)]
    trail = AuditTrail(messages=[msg("110114", 0.5, outcome="4", types=["110122"]), msg("110112", 20.3)])
    # When correlated with a 5 s window
    out = correlate(evidence, trail, 5.0)
    # Then the first identity and the query are matched; the second identity is missing its message
    by = {c.action_evidence: c for c in out.correlations}
    assert by["ev-0001"].matched_messages == [0] and by["ev-0001"].trigger == "user_identity_rejected"
    assert by["ev-0003"].matched_messages == [1] and by["ev-0003"].trigger == "query"
    assert by["ev-0002"].matched_messages == []
    assert [(m.action_evidence, m.level) for m in out.missing_events] == [("ev-0002", "expected")]
    assert "110114" in out.missing_events[0].expected_events
    assert "ev-0004" not in by  # identification is not a trigger


def test_association_probe_shapes_map_to_triggers() -> None:
    # Given the DICOM association probe's records (probe "dicom.assoc", data.purpose / data.outcome)
    evidence = [ev(1, "dicom.assoc", 0.0, purpose="baseline", outcome="accepted"),
                ev(2, "dicom.assoc", 5.0, purpose="any_called_ae", outcome="rejected"),
                ev(3, "dicom.assoc", 9.0, purpose="user_identity_2_valid", outcome="accepted")]
    trail = AuditTrail(messages=[msg("110113", 5.1, outcome="4", types=["110126"]),
                                 msg("110114", 9.2, types=["110122"])])
    # When correlated
    out = correlate(evidence, trail, 2.0)
    # Then each maps to its trigger; only the optional echo has no message
    got = {c.action_evidence: (c.trigger, c.matched_events) for c in out.correlations}
    assert got == {"ev-0001": ("echo", []), "ev-0002": ("association_rejected", ["110113"]),
                   "ev-0003": ("user_identity_accepted", ["110114"])}
    assert [(m.trigger, m.level) for m in out.missing_events] == [("echo", "optional")]


def test_message_outside_window_or_wrong_outcome_does_not_match() -> None:
    # Given a rejected identity, a success Login (wrong outcome) in the window, a failure after the window
    evidence = [ev(1, "dicom.assoc", 0.0, purpose="user_identity_2_invalid", outcome="rejected")]
    trail = AuditTrail(messages=[msg("110114", 1.0, outcome="0"), msg("110114", 30.0, outcome="4")])
    # When correlated
    out = correlate(evidence, trail, 5.0)
    # Then nothing matches
    assert out.correlations[0].matched_messages == [] and len(out.missing_events) == 1


def test_tls_bad_client_cert_expects_node_authentication_alert() -> None:
    # Given a TLS probe whose bad client certificate was rejected, and a Security Alert 110126
    evidence = [ev(1, "tls.audit.client_auth", 0.0, ok=True, completed=False)]
    trail = AuditTrail(messages=[msg("110113", 0.2, outcome="4", types=["110126"])])
    out = correlate(evidence, trail, 2.0)
    assert out.correlations[0].matched_events == ["110113"] and not out.missing_events


def test_matching_rules_are_data_driven() -> None:
    # Given a custom rule on a data key with a dotted path
    match = {"probe_prefix": ["x."], "data": [{"a.b": ["yes"]}], "not_data": [{"skip": True}]}
    assert matches_trigger(ev(1, "x.y", 0, a={"b": "YES"}), match)
    assert not matches_trigger(ev(2, "x.y", 0, a={"b": "no"}), match)
    assert not matches_trigger(ev(3, "x.y", 0, a={"b": "yes"}, skip=True), match)
    assert not matches_trigger(ev(4, "z.y", 0, a={"b": "yes"}), match)
