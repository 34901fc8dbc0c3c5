"""What changed between two stored runs of a deployment (drift), and whether it is a regression.

Facts are compared by fingerprint (same deployment, subject and path in both runs); findings likewise.
A regression is: a new failing gating finding, a weaker TLS profile verdict, a legacy TLS version
(SSLv2 … TLS 1.1, RFC 8996) switched on, or a newly exposed plaintext DICOM port (PS3.15 B.1 / B.9 expect
DICOM over TLS).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dcsaudit.history.store import RunSnapshot, StoredFact, StoredFinding

LEGACY_TLS = ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1")
VERDICT_RANK = {"does_not_conform": 0, "conforms_with_should_deviations": 1, "conforms": 2}
FAILING = ("fail", "error")


@dataclass(frozen=True)
class Change:
    category: str  # ports, service, tls, certificate, ae, endpoint
    subject: str  # host:port/protocol or AE@host:port
    what: str  # the fact path, or a short name
    before: Any
    after: Any
    text: str
    regression: bool = False


@dataclass(frozen=True)
class FindingChange:
    change: str  # new, resolved, still_failing, not_evaluated
    check_id: str
    target: str
    status_before: str | None
    status_after: str | None
    severity: str
    gating: bool
    suppressed: bool
    regression: bool = False


@dataclass
class Diff:
    deployment: str
    run_a: int
    run_b: int
    changes: list[Change] = field(default_factory=list)
    findings: list[FindingChange] = field(default_factory=list)
    expiring: list[Change] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        return any(c.regression for c in self.changes) or any(f.regression for f in self.findings)

    def as_json(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "run_a": self.run_a, "run_b": self.run_b,
                "regression": self.regression,
                "changes": [asdict(c) for c in self.changes],
                "certificates_expiring": [asdict(c) for c in self.expiring],
                "findings": [asdict(f) for f in self.findings]}


def _value(f: StoredFact | None) -> Any:
    return None if f is None else json.loads(f.value)


def _by_subject(facts: dict[str, StoredFact]) -> dict[tuple[str, str], StoredFact]:
    return {(f.subject, f.path): f for f in facts.values()}


def _category(path: str) -> str:
    if path.startswith("tls.cert."):
        return "certificate"
    if path.startswith("tls."):
        return "tls"
    if path.startswith("ae."):
        return "ae"
    return "service" if path == "service" else "endpoint"


def _fact_changes(subject: str, path: str, before: Any, after: Any) -> list[Change]:
    """The changes one fact path makes, with the regression rules."""
    cat = _category(path)
    if path == "state":
        opened, closed = after == "open" and before != "open", before == "open" and after != "open"
        if opened or closed:
            word = "opened" if opened else "closed"
            how = f"({before} -> {after})" if before is not None else "(newly seen)"
            return [Change("ports", subject, path, before, after, f"port {word}: {subject} {how}")]
        return [Change("ports", subject, path, before, after, f"{subject}: state {before} -> {after}")]
    if path == "plaintext_dicom":
        exposed = after is True and before is not True
        text = (f"plaintext DICOM newly exposed on {subject}" if exposed else
                f"{subject}: plaintext DICOM {before} -> {after}")
        return [Change("ports", subject, path, before, after, text, regression=exposed)]
    if path == "tls.versions":
        b, a = set(before or []), set(after or [])
        out = []
        for v in sorted(a - b):
            legacy = v in LEGACY_TLS
            out.append(Change("tls", subject, path, None, v, f"{subject}: {v} gained"
                              + (" (legacy version switched on)" if legacy else ""), regression=legacy))
        out += [Change("tls", subject, path, v, None, f"{subject}: {v} lost") for v in sorted(b - a)]
        return out
    if path.startswith("tls.suites."):
        version = path.removeprefix("tls.suites.")
        b, a = set(before or []), set(after or [])
        return ([Change("tls", subject, path, None, s, f"{subject}: {version} suite gained {s}") for s in sorted(a - b)]
                + [Change("tls", subject, path, s, None, f"{subject}: {version} suite lost {s}") for s in sorted(b - a)])
    if path.startswith("tls.profile."):
        profile = path.removeprefix("tls.profile.")
        weaker = (before is not None and after is not None
                  and VERDICT_RANK.get(str(after), 0) < VERDICT_RANK.get(str(before), 0))
        return [Change("tls", subject, path, before, after,
                       f"{subject}: profile {profile}: {before or 'not judged'} -> {after or 'not judged'}"
                       + (" (weaker)" if weaker else ""), regression=weaker)]
    if path == "ae.audited" and before is None:
        return [Change("ae", subject, path, before, after, f"AE newly seen: {subject}"
                       + ("" if after else " (could not be audited)"))]
    label = path.removeprefix("tls.cert.").removeprefix("ae.").removeprefix("tls.")
    return [Change(cat, subject, path, before, after, f"{subject}: {label}: {before} -> {after}")]


def _expiring(b: RunSnapshot, days: int) -> list[Change]:
    now = b.run.finished_at
    out = []
    for f in b.facts.values():
        if f.path != "tls.cert.not_after":
            continue
        try:
            not_after = datetime.fromisoformat(str(json.loads(f.value)).replace("Z", "+00:00"))
        except ValueError:
            continue
        if not_after.tzinfo is None:
            not_after = not_after.replace(tzinfo=UTC)
        left = (not_after - now).days
        if left <= days:
            word = f"expired {-left} day(s) ago" if left < 0 else f"expires in {left} day(s)"
            out.append(Change("certificate", f.subject, f.path, None, json.loads(f.value),
                              f"{f.subject}: certificate {word} ({not_after.date()})"))
    return sorted(out, key=lambda c: c.subject)


def _finding_changes(a: dict[str, StoredFinding], b: dict[str, StoredFinding]) -> list[FindingChange]:
    out = []
    for fp in sorted(set(a) | set(b), key=lambda k: ((b.get(k) or a[k]).check_id, (b.get(k) or a[k]).target)):
        fa, fb = a.get(fp), b.get(fp)
        was = fa is not None and fa.status in FAILING
        now = fb is not None and fb.status in FAILING
        ref = fb or fa
        assert ref is not None
        if now and not was:
            change = "new"
        elif was and now:
            change = "still_failing"
        elif was and fb is None:
            change = "not_evaluated"  # absent from run B: not a pass (truth first)
        elif was:
            change = "resolved"
        else:
            continue
        regression = change == "new" and fb is not None and fb.gating and not fb.suppressed
        out.append(FindingChange(change, ref.check_id, ref.target, fa.status if fa else None,
                                 fb.status if fb else None, ref.severity, bool(fb and fb.gating),
                                 bool(fb and fb.suppressed), regression))
    return out


def diff_runs(a: RunSnapshot, b: RunSnapshot, expiry_days: int = 30) -> Diff:
    """Run A (older) against run B (newer)."""
    fa, fb = _by_subject(a.facts), _by_subject(b.facts)
    d = Diff(deployment=b.run.deployment, run_a=a.run.id, run_b=b.run.id)
    subjects_a = {s for s, _ in fa}
    subjects_b = {s for s, _ in fb}
    # Facts a run did not establish (TLS audit failed, AE not audited) are unknown, not changed: compare
    # TLS and AE details only where both runs established them, and say where they could not be compared.
    tls_a = {s for s, p in fa if p == "tls.versions"}
    tls_b = {s for s, p in fb if p == "tls.versions"}
    ae_a = {s for s, p in fa if p == "ae.audited" and _value(fa[(s, p)]) is True}
    ae_b = {s for s, p in fb if p == "ae.audited" and _value(fb[(s, p)]) is True}
    for subject in sorted((tls_a ^ tls_b) & subjects_a & subjects_b):
        missing = b.run.id if subject in tls_a else a.run.id
        d.changes.append(Change("tls", subject, "tls", None, None, f"{subject}: TLS facts not comparable (the TLS "
                                f"audit established nothing in run {missing})"))
    for key in sorted(set(fa) | set(fb)):
        subject, path = key
        before, after = _value(fa.get(key)), _value(fb.get(key))
        if fa.get(key) is not None and fb.get(key) is not None and before == after:
            continue
        both = subject in subjects_a and subject in subjects_b
        if both and path.startswith("tls.") and not (subject in tls_a and subject in tls_b):
            continue
        if both and path.startswith("ae.") and path != "ae.audited" and not (subject in ae_a and subject in ae_b):
            continue
        if key not in fb and subject not in subjects_b:
            # The whole endpoint/AE is gone: one change for the port (below), not one per fact.
            if path in ("state", "ae.audited"):
                what = "port closed" if path == "state" else "AE no longer seen"
                d.changes.append(Change("ports" if path == "state" else "ae", subject, path, before, None,
                                        f"{what}: {subject} (not in run {b.run.id})"))
            continue
        if key not in fa and subject not in subjects_a and path not in ("state", "plaintext_dicom", "ae.audited"):
            if not path.startswith("tls.versions"):
                continue  # a new endpoint's details: its port, plaintext exposure and TLS versions suffice
        d.changes.extend(_fact_changes(subject, path, before, after))
    d.findings = _finding_changes(a.findings, b.findings)
    d.expiring = _expiring(b, expiry_days)
    return d


def render_text(d: Diff) -> str:
    lines = [f"diff of {d.deployment!r}: run {d.run_a} -> run {d.run_b}"]
    groups = (("ports", "Ports"), ("service", "Services"), ("tls", "TLS"), ("certificate", "Certificates"),
              ("ae", "Application entities"), ("endpoint", "Other endpoint facts"))
    for cat, title in groups:
        items = [c for c in d.changes if c.category == cat]
        if items:
            lines.append(f"{title}:")
            lines += [f"  {'!' if c.regression else '-'} {c.text}" for c in items]
    if d.expiring:
        lines.append("Certificates expiring:")
        lines += [f"  - {c.text}" for c in d.expiring]
    for change, title in (("new", "New failing findings"), ("resolved", "Resolved findings"),
                          ("not_evaluated", "Failing before, not evaluated in the newer run"),
                          ("still_failing", "Still failing")):
        found = [f for f in d.findings if f.change == change]
        if found:
            lines.append(f"{title} ({len(found)}):")
            lines += [f"  {'!' if f.regression else '-'} {f.check_id} [{f.severity}"
                      f"{', gating' if f.gating else ''}{', suppressed' if f.suppressed else ''}] {f.target}"
                      f" ({f.status_before or 'absent'} -> {f.status_after or 'absent'})" for f in found]
    if len(lines) == 1:
        lines.append("no changes")
    lines.append("regression: yes" if d.regression else "regression: no")
    return "\n".join(lines) + "\n"
