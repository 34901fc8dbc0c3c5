"""Trigger correlation: which action of the scan caused which audit message, and which never came.

The scan's actions are :class:`Evidence` items recorded by probes. Which of them are triggers, and which
audit messages each should cause, is data: the ``triggers`` list of ``configs/audit_events.yaml``
(PS3.15 A.5.3 event per trigger, each citing its section; the file documents the rule vocabulary).
Matching reads typed fields only: the Evidence item's own ``probe``, ``ok`` and ``reason``, and for the
DICOM association audit the :class:`AssociationAttempt` the item records (``ApplicationEntity.attempts``,
joined on its ``evidence`` id). ``Evidence.data`` is for display and is never read here. Rule keys and
Literal values are checked against the models before matching, so a renamed field or purpose is an
error, not a trigger that silently never fires.

A message answers an action when it arrived between the action's start (less a small clock allowance)
and ``window_seconds`` after the action ended, and it matches one of the trigger's ``expect`` entries.
Actions are taken in time order and each message answers at most one action (greedy, earliest first), so
three rejected identities with one User Authentication message leave two missing.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from dcsaudit.models.audit import AuditMessage, AuditTrail, Correlation, MissingEvent
from dcsaudit.models.core import Evidence, Reason
from dcsaudit.models.dicom import ApplicationEntity, AssociationAttempt
from dcsaudit.rules.audit_events import load_rules

# Tolerate this much clock skew / ordering slack: the action's Evidence time is taken when the
# probe records it, which can be just after the product already sent its message.
EARLY_SLACK = dt.timedelta(seconds=1.0)

# The keys a trigger's ``match`` block may use.
EVIDENCE_KEYS = ("probe_prefix", "probe_contains", "ok", "reason")
ATTEMPT_KEYS = ("association", "not_association")

_MISSING = object()


# -- rule validation ----------------------------------------------------------------------------------

def _leaf(annotation: Any) -> Any:
    """``X | None`` -> ``X`` (the type a rule value is compared with)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _field_type(model: type[BaseModel], dotted: str) -> Any:
    """The type of a dotted field path of ``model`` (``reject.reason``); KeyError when there is none."""
    cur: Any = model
    for part in dotted.split("."):
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            raise KeyError(dotted)
        cur = _leaf(cur.model_fields[part].annotation)
    return cur


def _wanted(want: Any) -> list[Any]:
    return list(want) if isinstance(want, list) else [want]


def _check_value(where: str, key: str, typ: Any, want: Any) -> None:
    """A rule value must be one the field can hold (Literal values and enums checked by name)."""
    if get_origin(typ) is Literal:
        allowed: list[str] = [str(a) for a in get_args(typ)]
    elif isinstance(typ, type) and issubclass(typ, Reason):
        allowed = [r.value for r in typ]
    else:
        allowed = []
    for w in _wanted(want):
        if isinstance(w, dict):
            if set(w) - {"prefix", "contains"} or not w:
                raise ValueError(f"{where}: {key}: a dict value is {{prefix: ...}} or {{contains: ...}}, not {w}")
            if allowed and not any(a.startswith(str(w.get("prefix", ""))) and str(w.get("contains", "")) in a
                                   for a in allowed):
                raise ValueError(f"{where}: {key}: {w} matches none of {allowed}")
        elif allowed and w is not None and str(w).casefold() not in {a.casefold() for a in allowed}:
            raise ValueError(f"{where}: {key}: {w!r} is not one of {allowed}")
        elif typ is bool and not isinstance(w, bool):
            raise ValueError(f"{where}: {key}: {w!r} is not true/false")
        elif typ is int and w is not None and (isinstance(w, bool) or not isinstance(w, int)):
            raise ValueError(f"{where}: {key}: {w!r} is not an integer")


def _check_alternatives(where: str, model: type[BaseModel], alts: Any) -> None:
    if not isinstance(alts, list) or not all(isinstance(a, dict) and a for a in alts):
        raise ValueError(f"{where}: expected a list of non-empty mappings")
    for alt in alts:
        for key, want in alt.items():
            try:
                typ = _field_type(model, str(key))
            except KeyError:
                raise ValueError(f"{where}: {key!r} is not a field of {model.__name__}") from None
            _check_value(where, str(key), typ, want)


def validate_triggers(triggers: Iterable[dict[str, Any]]) -> None:
    """Raise ValueError naming the trigger and key when a rule cannot match what the models hold."""
    for trig in triggers:
        name = f"trigger {trig.get('name', '?')!r}"
        if not trig.get("name"):
            raise ValueError(f"{name}: no name")
        match = trig.get("match") or {}
        unknown = set(match) - set(EVIDENCE_KEYS) - set(ATTEMPT_KEYS)
        if unknown:
            raise ValueError(f"{name}: unknown match keys {sorted(unknown)} (allowed: "
                             f"{', '.join(EVIDENCE_KEYS + ATTEMPT_KEYS)}; Evidence.data is not matched)")
        for key in ("probe_prefix", "probe_contains"):
            if key in match and not (isinstance(match[key], list) and all(isinstance(x, str) for x in match[key])):
                raise ValueError(f"{name}: {key}: expected a list of strings")
        if "ok" in match and not isinstance(match["ok"], bool):
            raise ValueError(f"{name}: ok: expected true/false")
        if "reason" in match:
            _check_value(f"{name}", "reason", Reason, match["reason"])
        for key in ATTEMPT_KEYS:
            if key in match:
                _check_alternatives(f"{name}: {key}", AssociationAttempt, match[key])


# -- matching -----------------------------------------------------------------------------------------

def _get(obj: BaseModel, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, BaseModel) or part not in type(cur).model_fields:
            return _MISSING
        cur = getattr(cur, part)
    return cur


def _alt_matches(obj: BaseModel, alt: dict[str, Any]) -> bool:
    for key, want in alt.items():
        have = _get(obj, str(key))
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
    if want is None or have is None:
        return have is want
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want
    if isinstance(have, str) and isinstance(want, str):
        return have.casefold() == want.casefold()
    return bool(have == want)


def matches_trigger(ev: Evidence, match: dict[str, Any], attempt: AssociationAttempt | None = None) -> bool:
    """Does this action satisfy a trigger's ``match`` block? (vocabulary in audit_events.yaml)

    ``attempt`` is the association attempt ``ev`` records, if it records one.
    """
    prefixes = match.get("probe_prefix") or []
    if prefixes and not any(ev.probe.startswith(p) for p in prefixes):
        return False
    contains = match.get("probe_contains") or []
    if contains and not any(c in ev.probe for c in contains):
        return False
    if "ok" in match and ev.ok is not bool(match["ok"]):
        return False
    if "reason" in match and not any(_eq(ev.reason, w) for w in _wanted(match["reason"])):
        return False
    alts = match.get("association")
    if alts is not None and (attempt is None or not any(_alt_matches(attempt, a) for a in alts)):
        return False
    nots = match.get("not_association") or []
    return attempt is None or not any(_alt_matches(attempt, a) for a in nots)


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
              triggers: list[dict[str, Any]] | None = None, *,
              application_entities: Sequence[ApplicationEntity] = ()) -> AuditTrail:
    """Match the scan's actions to the messages in ``trail``; return the trail with correlations added.

    ``application_entities`` carry the association attempts that ``association`` rules match: without
    them no association trigger fires.
    """
    rules = triggers if triggers is not None else list(load_rules().get("triggers") or [])
    validate_triggers(rules)
    attempts = {a.evidence: a for ae in application_entities for a in ae.attempts if a.evidence}
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
            if matches_trigger(ev, trig.get("match") or {}, attempts.get(ev.id)):
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
