"""The annex-cell rules of tests/annex_invariants.py applied to single tables (issue 15's tables are
not in its FIT map yet): ✔ has a value and cites existing evidence of the table's probe family; ∅ and —
carry a reason and no value."""

from __future__ import annotations

from collections.abc import Sequence

from dcsaudit.models.core import AnnexTable, Evidence, Provenance


def cell_problems(evidence: Sequence[Evidence], tables: Sequence[AnnexTable], families: tuple[str, ...]) -> list[str]:
    by_id = {e.id: e for e in evidence}
    bad = []
    for t in tables:
        for row in t.rows:
            for col, c in zip(t.columns, row, strict=False):
                where = f"{t.id} / {row[0].value} / {col}"
                if c.provenance == Provenance.VERIFIED:
                    if not c.value.strip() or not c.evidence:
                        bad.append(f"✔ without value or evidence: {where}")
                    bad += [f"{where} cites {i} ({by_id[i].probe if i in by_id else 'missing'})" for i in c.evidence
                            if i not in by_id or not by_id[i].probe.startswith(families)]
                elif c.provenance in (Provenance.NOT_OBSERVED, Provenance.NOT_VERIFIABLE):
                    if c.value.strip() or not c.note.strip():
                        bad.append(f"∅/— with a value or without a reason: {where}")
    return bad
