"""Builds the Annex N sections (N.6, N.7, N.8, N.11) from collected data, findings and declarations.

Each area contributes ``tables(data) -> [(section id, AnnexTable)]``. This module walks the complete
outline of PS3.2 2024d Annex N (``annex/outline.py``) in the standard's order: a table the standard
numbers goes where its caption is; a table the standard describes without a number (the port table of
N.8.3) goes at the end of its section; tables sharing an id and columns are merged (N.8-2 has
audit-trail rows from the syslog audit and User Identity rows from the association audit). Every
section and table of the template is kept; one with nothing observed or declared says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from dcsaudit.annex import (
    audit_tables,
    declarations,
    dicom_tables,
    network_tables,
    outline,
    ports_tables,
    tls_tables,
)
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import Annex, AnnexSection, AnnexTable

TableSource = Callable[[AuditData], list[tuple[str, AnnexTable]]]

# Each area contributes its tables. Order matters where two areas share a table: N.8-2 lists the
# audit-trail profiles before the User Identity ones (PS3.2 2024d Table N.8-2).
SOURCES: list[tuple[str, TableSource]] = [
    ("port inventory", ports_tables.tables),
    ("TLS audit", tls_tables.tables),
    ("audit-trail verification", audit_tables.tables),
    ("DICOM association audit", dicom_tables.tables),
    ("network services", network_tables.tables),
]


def _merge(tables: list[AnnexTable]) -> list[AnnexTable]:
    """Tables with the same id, title and columns become one table (rows concatenated, in arrival order).

    Tables with the same id but another title (one N.7-2 per AE) stay separate.
    """
    merged: dict[tuple[str, str, tuple[str, ...]], AnnexTable] = {}
    for t in tables:
        key = (t.id, t.title, tuple(t.columns))
        prev = merged.get(key)
        if prev is None:
            merged[key] = t
            continue
        rows = prev.rows + t.rows
        reasons = [r for r in (prev.empty_reason, t.empty_reason) if r] if not rows else []
        merged[key] = prev.model_copy(update={"rows": rows, "notes": prev.notes + t.notes,
                                              "empty_reason": "; ".join(reasons)})
    return list(merged.values())


def _placeholder(entry: outline.Entry) -> AnnexTable:
    return AnnexTable(id=entry.id, title=entry.title, columns=[], empty_reason=outline.why_empty(entry.id))


def build_annex(data: AuditData) -> Annex:
    """The annex of what was observed, with the vendor's declarations reconciled in one pass at the end."""
    observed = dataclasses.replace(data, declared={})  # builders render observations only
    return declarations.apply(_build_observed(observed), data.declared)


def _build_observed(data: AuditData) -> Annex:
    produced: list[tuple[str, AnnexTable]] = []
    problems: list[str] = []
    for what, source in SOURCES:
        try:
            produced.extend(source(data))
        except Exception as exc:  # a broken table builder must not cost the whole annex
            problems.append(f"the {what} tables could not be built ({type(exc).__name__}: {exc})")

    entries = outline.entries()
    numbered = set(outline.table_ids())
    section_ids = outline.section_ids()
    by_table: dict[str, list[AnnexTable]] = {}
    unnumbered: dict[str, list[AnnexTable]] = {}
    for sid, table in produced:
        if table.numbered and table.id in numbered:
            by_table.setdefault(table.id, []).append(table)
        else:
            # Not a table of the standard: it belongs to the section it names (or the nearest one).
            home = sid if sid in section_ids else _nearest_section(sid, section_ids)
            unnumbered.setdefault(home, []).append(table)

    children = {sid for sid in section_ids for other in section_ids if other.startswith(sid + ".")}
    sections: list[AnnexSection] = []
    for entry in entries:
        if entry.kind == "section":
            sections.append(AnnexSection(id=entry.id, title=entry.title))
            continue
        tables = _merge(by_table.get(entry.id, [])) or [_placeholder(entry)]
        sections[-1] = sections[-1].model_copy(update={"tables": [*sections[-1].tables, *tables]})

    out: list[AnnexSection] = []
    for s in sections:
        tables = [*s.tables, *_merge(unnumbered.get(s.id, []))]
        text = list(problems) if s.id in {"N.6.1", "N.8.3", "N.11.2.2"} else []
        if not tables and s.id not in children:
            text.append(f"Not observed and not declared: {outline.why_empty(s.id)}.")
        out.append(s.model_copy(update={"tables": tables, "text": text}))
    return Annex(sections=out)


def _nearest_section(sid: str, section_ids: tuple[str, ...]) -> str:
    """The closest enclosing section of the outline for an id the outline lacks (e.g. N.8.5 -> N.8.5)."""
    parts = sid.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in section_ids:
            return candidate
        parts.pop()
    return section_ids[0]
