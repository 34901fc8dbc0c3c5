"""Rules every annex cell must keep, applied to whole reports by the tests that produce them.

- **Marks** (docs/design.md "Provenance of annex cells"): ✔ only with a measurement behind it and a
  non-empty value; ✘ only with both a declaration and a measurement; D only for a declaration; "—" only
  where no network probe or capture could ever observe the value; ∅ for observable but not observed in
  this run, always with the reason.
- **Evidence fit**: a ✔/✘ cell cites only evidence that exists, that was made by a probe that can
  measure that table's facts, and (when the cell or its row names endpoints) about those endpoints.
"""

from __future__ import annotations

import re

from dcsaudit.annex import declarations
from dcsaudit.models.core import Cell, Provenance
from dcsaudit.models.report import Report

# Which probes can have measured a table's facts (evidence probe name prefixes).
DICOM = ("dicom.",)
LISTEN = ("listen",)
TLS = ("tls.",)
FIT: dict[str, tuple[str, ...]] = {
    "N.6-1": DICOM,
    **{f"N.6-{n}": DICOM + LISTEN for n in range(2, 10)},
    "N.6-18": ("syslog.collector",),
    "N.6-19": ("syslog.sender", "identify.", "ports."),
    "N.7-1": DICOM + LISTEN,
    "N.7-2": DICOM,
    "N.7-9": DICOM,
    "N.8.3": ("ports.", "identify.", "ntp.query", "dns.recursion"),
    "N.8-1": ("ntp.", "dns.", "ldap."),
    "N.11.1.1": ("ntp.",),
    "N.11-1": ("ldap.",),
    "N.11.1.4": ("dns.",),
    "N.8.4.2": ("tls.",),
    "N.8.4.2-server-cert": LISTEN,  # listen --tls-cert-tests: the product as TLS client
    "N.6.3": ("dicomweb.",),
    "N.8.6": ("dicomweb.",),
    "N.8-2": ("syslog.", *DICOM, *LISTEN),
    "N.8-3": TLS + LISTEN,
    "N.8-8": LISTEN,
    "N.8-9": DICOM,
    # A trigger cell cites the scan action that caused the message (any probe) and the message itself.
    "N.11-2": ("syslog.collector", "dicom.", "tls.", "identify.", "ports.", "syslog.sender"),
    "N.11-3": ("syslog.collector",),
    "N.11.2.5-1": TLS + LISTEN,
    "N.11.2.5-2": TLS + LISTEN,
    "N.11.2.5-3": TLS + LISTEN,
    "N.11-4": TLS + LISTEN,
    "N.11-5": (*TLS, *LISTEN, "identify."),
}

# Words that say a probe could have seen the value but did not: such a cell is ∅, never "—".
OBSERVABLE_WORDS = ("intrusive", "not probed", "not measured", "not run", "no such", "not found", "did not run",
                    "skipped", "timed out", "busy", "not captured", "no association captured", "audited",
                    "failed", "error")

ENDPOINT = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+\.[A-Za-z]{2,}):(\d{1,5})\b")


def _cells(report: Report) -> list[tuple[str, str, str, Cell]]:
    """(table id, row label, column heading, cell) for every non-label cell of the annex."""
    out = []
    for s in report.annex.sections:
        for t in s.tables:
            for row in t.rows:
                label = row[0].value if row else ""
                for col, c in zip(t.columns, row, strict=False):
                    if c.provenance != Provenance.LABEL:
                        out.append((t.id, label, col, c))
    return out


def mark_violations(report: Report) -> list[str]:
    bad = []
    for tid, row, col, c in _cells(report):
        where = f"{tid} / {row} / {col}: {c.provenance.value} {c.value!r} ({c.note!r})"
        p = c.provenance
        if p == Provenance.VERIFIED and (not c.evidence or not c.value.strip()):
            bad.append(f"✔ without evidence or value — {where}")
        elif p == Provenance.CONTRADICTED and (c.declared is None or c.observed is None or not c.evidence):
            bad.append(f"✘ without both a declaration and a measurement — {where}")
        elif p == Provenance.DECLARED and (c.declared is None or c.evidence):
            bad.append(f"D that is not a bare declaration — {where}")
        elif p == Provenance.NOT_VERIFIABLE:
            if c.value.strip() or not c.note.strip():
                bad.append(f"— with a value or without a reason — {where}")
            elif any(w in c.note.casefold() for w in OBSERVABLE_WORDS):
                bad.append(f"— for something a probe could observe — {where}")
        elif p == Provenance.NOT_OBSERVED and (c.value.strip() or not c.note.strip()):
            bad.append(f"∅ with a value or without a reason — {where}")
    return bad


def evidence_violations(report: Report) -> list[str]:
    by_id = {e.id: e for e in report.evidence}
    bad = []
    for tid, row, col, c in _cells(report):
        if c.provenance not in (Provenance.VERIFIED, Provenance.CONTRADICTED):
            continue
        where = f"{tid} / {row} / {col} = {c.value!r}"
        allowed = FIT.get(tid)
        named = {f"{h}:{p}" for h, p in ENDPOINT.findall(f"{c.value} {row}")}
        for ev_id in c.evidence:
            ev = by_id.get(ev_id)
            if ev is None:
                bad.append(f"cites {ev_id}, which is not in the evidence list — {where}")
                continue
            if allowed is not None and not ev.probe.startswith(allowed):
                bad.append(f"cites {ev_id} by probe {ev.probe}, which cannot measure {tid} — {where}")
            m = ENDPOINT.search(ev.target)
            if named and m and f"{m.group(1)}:{m.group(2)}" not in named:
                bad.append(f"cites {ev_id} about {ev.target}, not an endpoint the cell names — {where}")
        if allowed is None:
            bad.append(f"table {tid} has no evidence-fit rule (add it to tests/annex_invariants.py)")
    return sorted(set(bad))


def undeclarable_rows(report: Report) -> list[str]:
    """Rendered rows of a declarable table that no declaration key can address (catalog drift)."""
    specs = declarations.catalog()
    bad = []
    for s in report.annex.sections:
        for t in s.tables:
            if t.id in specs and t.numbered:
                for key in declarations.row_keys(t):
                    if key is not None and key not in specs[t.id].rows:
                        bad.append(f"{t.id}: rendered row {key!r} is not in dcsaudit/data/annex_declarable.yaml")
    return sorted(set(bad))


def assert_annex_honest(report: Report) -> None:
    problems = mark_violations(report) + evidence_violations(report) + undeclarable_rows(report)
    assert not problems, "annex cells break the rules:\n" + "\n".join(problems)
