"""Builds the Annex N sections (N.6, N.7, N.8, N.11) from collected data, findings and declarations.

Each area contributes ``tables(data) -> [(section id, AnnexTable)]``; this module only orders them
into sections in the standard's numbering, merges tables that share a PS3.2 table id (e.g. N.8-2
has user-identity rows from the association audit and audit-trail rows from the syslog audit), and
says so when a section has nothing observed.
"""

from __future__ import annotations

from collections.abc import Callable

from dcsaudit.annex import audit_tables, dicom_tables, ports_tables, tls_tables
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import Annex, AnnexSection, AnnexTable

TableSource = Callable[[AuditData], list[tuple[str, AnnexTable]]]

# The sections dcsaudit fills, in PS3.2 Annex N order, with their titles from PS3.2 2024d. Sections
# marked optional appear only when a table was produced for them (N.6.2.x: one per observed service).
SECTIONS: list[tuple[str, str, bool]] = [
    ("N.6.1", "General Configuration Parameters", False),
    ("N.6.2.1", "Basic Worklist Management Service Configuration", True),
    ("N.6.2.2", "Modality Performed Procedure Step Service Configuration", True),
    ("N.6.2.3", "Unified Worklist and Procedure Step Service Configuration", True),
    ("N.6.2.4", "Instance Availability Notification Service Configuration", True),
    ("N.6.2.5", "Storage Service Configuration", True),
    ("N.6.2.6", "Storage Commitment Service Configuration", True),
    ("N.6.2.7", "Query/Retrieve Service Configuration", True),
    ("N.6.6", "Configuration of Audit Trail - Syslog", False),
    ("N.7.1.1", "General Association Parameters", False),
    ("N.8.3", "TCP Port Configuration", False),
    ("N.8.4.1", "Secure Use and User Identity Profiles", False),
    ("N.8.4.2", "Secure Transport Connection Profiles", False),
    ("N.8.5", "User Identity Negotiation Support", False),
    ("N.11.2.2", "Audit Trail Messages", False),
    ("N.11.2.5", "Secure Transport Connection Details", False),
]

# Each area contributes its tables; the port inventory's are the builder's own.
# Order matters where two areas share a table: N.8-2 lists the audit-trail profiles before the User
# Identity ones (PS3.2 2024d Table N.8-2).
SOURCES: list[tuple[str, TableSource]] = [
    ("port inventory", ports_tables.tables),
    ("TLS audit", tls_tables.tables),
    ("audit-trail verification", audit_tables.tables),
    ("DICOM association audit", dicom_tables.tables),
]


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
    known = {sid: (title, optional) for sid, title, optional in SECTIONS}
    by_section: dict[str, list[AnnexTable]] = {sid: [] for sid, _, _ in SECTIONS}
    problems: list[str] = []
    for what, source in SOURCES:
        try:
            produced = source(data)
        except Exception as exc:  # a broken table builder must not cost the whole annex
            problems.append(f"the {what} tables could not be built ({type(exc).__name__}: {exc})")
            continue
        for sid, table in produced:
            by_section.setdefault(sid, []).append(table)
    sections = []
    for sid, tables in by_section.items():
        title, optional = known.get(sid, (sid, True))
        merged = _merge(tables)
        if optional and not merged:
            continue
        text = list(problems)
        if not merged:
            text.append("Nothing was observed for this section in this audit; no content is invented.")
        sections.append(AnnexSection(id=sid, title=title, text=text, tables=merged))
    return Annex(sections=sections)
