"""Trigger correlation: which action of the scan caused which audit message, and which never came.

The scan's actions are :class:`Evidence` items recorded by probes. Which of them are triggers, and which
audit messages each should cause, is data: the ``triggers`` list of ``configs/audit_events.yaml``
(PS3.15 A.5.3 event per trigger, each citing its section). Matching an action to a trigger uses only
the probe name (prefix / substring), ``ok`` and keys in ``data``, so probes written by others can be
mapped without code changes; the file documents the rule vocabulary.

A message answers an action when it arrived between the action's start (less a small clock allowance)
and ``window_seconds`` after the action ended, and it matches one of the trigger's ``expect`` entries.
Actions are taken in time order and each message answers at most one action (greedy, earliest first), so
three rejected identities with one User Authentication message leave two missing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dcsaudit.auditmsg.rules import load_rules
from dcsaudit.models.audit import AuditMessage, AuditTrail, Correlation, MissingEvent
from dcsaudit.models.core import Evidence

# Tolerate this much clock skew / ordering slack: the action's Evidence time is taken when the
# probe records it, which can be just after the product already sent its message.
EARLY_SLACK = dt.timedelta(seconds=1.0)


def _get(data: dict[str, Any], dotted: str) -> Any:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


_MISSING = object()


def _alt_matches(data: dict[str, Any], alt: dict[str, Any]) -> bool:
    for key, want in alt.items():
        have = _get(data, str(key))
        if have is _MISSING:
            return False
        if isinstance(want, list):
            if not any(_eq(have, w) for w in want):
                return False
        elif not _eq(have, want):
            return False
    return True


def _eq(have: Any, want: Any) -> bool:
    if isinstance(want, dict):  # {prefix: "..."} or {contains: "..."} on a string value
        if not isinstance(have, str):
            return False
        if "prefix" in want and not have.startswith(str(want["prefix"])):
            return False
        return not ("contains" in want and str(want["contains"]) not in have)
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want
    if isinstance(have, str) and isinstance(want, str):
        return have.casefold() == want.casefold()
    return bool(have == want)


def matches_trigger(ev: Evidence, match: dict[str, Any]) -> bool:
    """Does this Evidence item satisfy a trigger's ``match`` block? (vocabulary in audit_events.yaml)"""
    prefixes = match.get("probe_prefix") or []
    if prefixes and not any(ev.probe.startswith(p) for p in prefixes):
        return False
    contains = match.get("probe_contains") or []
    if contains and not any(c in ev.probe for c in contains):
        return False
    if "ok" in match and ev.ok is not bool(match["ok"]):
        return False
    alts = match.get("data")
    if alts and not any(_alt_matches(ev.data, a) for a in alts):
        return False
    nots = match.get("not_data") or []
    return not any(_alt_matches(ev.data, a) for a in nots)


def message_satisfies(msg: AuditMessage, expect: list[dict[str, Any]]) -> bool:
    for e in expect:
        if e.get("any_event"):
            if msg.event_id is not None:
                return True
            continue
        if msg.event_id != str(e.get("event_id")):
            continue
        codes = e.get("event_type_codes")
        if codes and not any(c in msg.event_type_codes for c in codes):
            continue
        outcome = e.get("outcome")
        if outcome == "success" and msg.event_outcome not in ("0", None):
            continue
        if outcome == "failure" and msg.event_outcome in ("0", None):
            continue
        return True
    return False


def _expected_ids(expect: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for e in expect:
        v = "any" if e.get("any_event") else str(e.get("event_id"))
        if v not in out:
            out.append(v)
    return out


def correlate(evidence: list[Evidence], trail: AuditTrail, window_seconds: float,
              triggers: list[dict[str, Any]] | None = None) -> AuditTrail:
    """Match the scan's actions to the messages in ``trail``; return the trail with correlations added."""
    rules = triggers if triggers is not None else list(load_rules().get("triggers") or [])
    window = dt.timedelta(seconds=window_seconds)
    used: set[int] = set()
    correlations: list[Correlation] = []
    missing: list[MissingEvent] = []
    # Pair every action with the first trigger that claims it (order in the file = priority).
    actions: list[tuple[Evidence, dict[str, Any]]] = []
    for ev in evidence:
        if ev.probe.startswith("syslog."):  # our own collector's records are not actions on the product
            continue
        for trig in rules:
            if matches_trigger(ev, trig.get("match") or {}):
                actions.append((ev, trig))
                break
    actions.sort(key=lambda a: a[0].at)
    order = sorted(range(len(trail.messages)), key=lambda i: trail.messages[i].received_at)
    for ev, trig in actions:
        start = ev.at - EARLY_SLACK
        end = ev.at + dt.timedelta(milliseconds=ev.duration_ms) + window
        expect = list(trig.get("expect") or [])
        found: list[int] = []
        for i in order:
            if i in used:
                continue
            m = trail.messages[i]
            if m.received_at < start:
                continue
            if m.received_at > end:
                break
            if message_satisfies(m, expect):
                found.append(i)
                break
        used.update(found)
        corr = Correlation(
            trigger=str(trig["name"]), action_evidence=ev.id, action_probe=ev.probe, action_at=ev.at,
            expected_events=_expected_ids(expect), matched_messages=found,
            matched_events=[trail.messages[i].event_id or "" for i in found],
        )
        correlations.append(corr)
        if not found:
            missing.append(MissingEvent(
                trigger=str(trig["name"]), action_evidence=ev.id, action_probe=ev.probe,
                expected_events=_expected_ids(expect), level="optional" if trig.get("level") == "optional" else "expected",
                description=str(trig.get("description", "")),
            ))
    return trail.model_copy(update={"correlations": correlations, "missing_events": missing,
                                    "window_seconds": window_seconds})
