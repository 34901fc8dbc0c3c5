"""The annex keeps every section and table of PS3.2 2024d Annex N (N.6, N.7, N.8, N.11) in the standard's order."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from dcsaudit.annex import outline
from dcsaudit.annex.builder import build_annex
from dcsaudit.checks.base import AuditData

ROOT = Path(__file__).resolve().parent.parent
STANDARD = ROOT.parent / "shared" / "reference" / "ps3.2-2024d-conformance.txt"


def _extract_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("annex_outline", ROOT / "scripts" / "annex_outline.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not STANDARD.exists(), reason=f"the standard's text is not at {STANDARD}")
def test_committed_outline_is_the_standards() -> None:
    fresh = _extract_script().extract(STANDARD.read_text(encoding="utf-8"))
    committed = json.loads((ROOT / "dcsaudit" / "data" / "annex_n_outline.json").read_text())["entries"]
    assert committed == fresh


def test_outline_has_the_known_landmarks() -> None:
    ids = [e.id for e in outline.entries()]
    # A few ids checked by hand against PS3.2 2024d, in order.
    landmarks = ["N.6.1", "N.6-1", "N.6.2.3", "N.6-4", "N.6.2.4", "N.6-5", "N.6.6", "N.6-18", "N.6-19",
                 "N.7.1.1", "N.7-1", "N.7.2.1.2", "N.7-2", "N.7.3.1.2", "N.7-9", "N.8.2", "N.8-1", "N.8.3",
                 "N.8.4.1", "N.8-2", "N.8.4.2", "N.8-3", "N.8.5.1", "N.8-8", "N.8.5.2", "N.8-9", "N.11.2.2",
                 "N.11-2", "N.11-3", "N.11.2.5", "N.11.2.5-1", "N.11.2.5-2", "N.11.2.5-3", "N.11-4", "N.11-5"]
    positions = [ids.index(i) for i in landmarks]
    assert positions == sorted(positions)
    assert len(outline.table_ids()) == len(set(outline.table_ids())) > 150


def _annex_ids(data: AuditData) -> list[str]:
    annex = build_annex(data)
    out: list[str] = []
    for s in annex.sections:
        out.append(s.id)
        out.extend(t.id for t in s.tables if t.numbered and (not out or out[-1] != t.id))
    return out


def _in_order(expected: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(g == e for g in it) for e in expected)


def test_empty_audit_keeps_every_section_and_table_in_order() -> None:
    got = _annex_ids(AuditData(endpoints=[], evidence=[]))
    expected = [e.id for e in outline.entries()]
    assert got == expected
    annex = build_annex(AuditData(endpoints=[], evidence=[]))
    for s in annex.sections:
        for t in s.tables:
            assert t.rows or t.empty_reason, f"{t.id} is empty without a reason"
        has_children = any(o.id.startswith(s.id + ".") for o in annex.sections)
        if not s.tables and not has_children:
            assert s.text and "Not observed" in s.text[-1], s.id
