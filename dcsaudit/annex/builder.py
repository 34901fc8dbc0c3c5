"""Builds the Annex N sections (N.6, N.7, N.8, N.11) from collected data, findings and declarations.

Each area contributes ``tables(data) -> [(section id, AnnexTable)]``; this module only orders them
into sections in the standard's numbering, merges tables that share a PS3.2 table id (e.g. N.8-2
has user-identity rows from the association audit and audit-trail rows from the syslog audit), and
says so when a section has nothing observed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from dcsaudit.annex import ports_tables
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import Annex, AnnexSection, AnnexTable

TableSource = Callable[[AuditData], list[tuple[str, AnnexTable]]]

# The sections dcsaudit fills, in PS3.2 Annex N order, with their titles from PS3.2 2024d.
SECTIONS: list[tuple[str, str]] = [
    ("N.6.1", "General Configuration Parameters"),
    ("N.6.2", "Configuration of DIMSE Services"),
    ("N.6.6", "Audit Trail Configuration"),
    ("N.7.1.1", "General Association Parameters"),
    ("N.8.3", "TCP Port Configuration"),
    ("N.8.4.1", "Secure Use and User Identity Profiles"),
    ("N.8.4.2", "Secure Transport Connection Profiles"),
    ("N.8.5", "User Identity Negotiation"),
    ("N.11.2.2", "Audit Trail Message Format Profile"),
    ("N.11.2.5", "Secure Transport Connection Profiles: TLS details"),
]

# Area modules that provide tables(); an area not yet present is reported in its sections.
AREA_MODULES: list[tuple[str, str]] = [
    ("dcsaudit.annex.tls_tables", "TLS audit"),
    ("dcsaudit.annex.dicom_tables", "DICOM association audit"),
    ("dcsaudit.annex.audit_tables", "audit-trail verification"),
]


def _sources() -> list[tuple[str, TableSource | None]]:
    out: list[tuple[str, TableSource | None]] = [("port inventory", ports_tables.tables)]
    for module, what in AREA_MODULES:
        try:
            out.append((what, importlib.import_module(module).tables))
        except ModuleNotFoundError:
            out.append((what, None))
    return out


def _merge(tables: list[AnnexTable]) -> list[AnnexTable]:
    """Tables with the same id and columns become one table (rows concatenated, in arrival order)."""
    merged: dict[str, AnnexTable] = {}
    order: list[str] = []
    for t in tables:
        prev = merged.get(t.id)
        if prev is None or prev.columns != t.columns:
            key = t.id if prev is None else f"{t.id}#{len(order)}"
            merged[key] = t
            order.append(key)
            continue
        rows = prev.rows + t.rows
        reasons = [r for r in (prev.empty_reason, t.empty_reason) if r] if not rows else []
        merged[t.id] = prev.model_copy(update={"rows": rows, "notes": prev.notes + t.notes,
                                                "empty_reason": "; ".join(reasons)})
    return [merged[k] for k in order]


def build_annex(data: AuditData) -> Annex:
    by_section: dict[str, list[AnnexTable]] = {sid: [] for sid, _ in SECTIONS}
    problems: dict[str, list[str]] = {sid: [] for sid, _ in SECTIONS}
    for what, source in _sources():
        if source is None:
            continue
        try:
            produced = source(data)
        except Exception as exc:  # a broken table builder must not cost the whole annex
            for sid in by_section:
                problems[sid].append(f"the {what} tables could not be built ({type(exc).__name__}: {exc})")
            continue
        for sid, table in produced:
            by_section.setdefault(sid, []).append(table)
    sections = []
    titles = dict(SECTIONS)
    for sid in by_section:
        tables = _merge(by_section[sid])
        text = list(dict.fromkeys(problems.get(sid, [])))
        if not tables:
            text.append("Nothing was observed for this section in this audit; no content is invented.")
        sections.append(AnnexSection(id=sid, title=titles.get(sid, sid), text=text, tables=tables))
    return Annex(sections=sections)
