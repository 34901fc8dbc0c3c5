"""annex.docx (issue 14 item 1): the annex.md's tables, captions, marks and values, in Word's structure."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from docx import Document
from docx.document import Document as DocxDocument
from docx.oxml.ns import qn
from docx.table import Table
from docx.text.paragraph import Paragraph

from dcsaudit.checks.base import REGISTRY
from dcsaudit.export.docx import caption, cell_text
from dcsaudit.export.remediation import remediation
from dcsaudit.models.core import Provenance
from dcsaudit.models.report import Report
from tests.export_support import demo_outputs

pytestmark = pytest.mark.timeout(600)  # the first test of the process runs the demo (~40 s, more under load)


def _body(doc: DocxDocument) -> list[Paragraph | Table]:
    out: list[Paragraph | Table] = []
    for el in doc.element.body.iterchildren():
        if el.tag == qn("w:p"):
            out.append(Paragraph(el, doc))
        elif el.tag == qn("w:tbl"):
            out.append(Table(el, doc))
    return out


def _tables_by_caption(doc: DocxDocument) -> dict[str, Table | None]:
    """Caption text -> the table right after it (None when the caption is followed by "No rows")."""
    body = _body(doc)
    found: dict[str, Table | None] = {}
    for i, item in enumerate(body):
        if isinstance(item, Paragraph) and item.style is not None and item.style.name == "Caption":
            nxt = body[i + 1] if i + 1 < len(body) else None
            found[item.text] = nxt if isinstance(nxt, Table) else None
    return found


def _md_tables(md: str) -> dict[str, list[str]]:
    """Caption (the bold line before a table) -> the table's lines in annex.md."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in md.splitlines():
        if line.startswith("**") and line.endswith("**"):
            current = tables.setdefault(line.strip("*"), [])
        elif line.startswith("#"):
            current = None
        elif line.startswith("|") and current is not None:
            current.append(line)
    return tables


@pytest.fixture(scope="module")
def outputs() -> tuple[Report, str, DocxDocument]:
    out = demo_outputs()
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    return report, (out / "annex.md").read_text(encoding="utf-8"), Document(str(out / "annex.docx"))


def test_docx_has_every_table_caption_of_the_annex_md(outputs: tuple[Report, str, DocxDocument]) -> None:
    # Given the demo's annex.md and annex.docx, When their table captions are listed,
    # Then every table id of annex.md is a Word caption (same text), and nothing else is.
    _, md, doc = outputs
    md_captions = [m.group(1) for m in re.finditer(r"^\*\*(Table N\.[^*]+)\*\*$", md, re.M)]
    docx_captions = [c for c in _tables_by_caption(doc) if c.startswith("Table ")]
    assert len(md_captions) > 150
    assert docx_captions == md_captions
    md_ids = {c.split(". ", 1)[0].removeprefix("Table ") for c in md_captions}
    assert md_ids == {c.split(". ", 1)[0].removeprefix("Table ") for c in docx_captions}


def test_docx_cells_carry_the_marks_and_values_of_the_annex_md(outputs: tuple[Report, str, DocxDocument]) -> None:
    # Given a sample of rows of every table that has rows, When the docx cell and the md row are read,
    # Then both show the same mark and value as the report's cell (the md escapes pipes).
    report, md, doc = outputs
    tables = _tables_by_caption(doc)
    md_tables = _md_tables(md)
    rng = random.Random(14)
    checked = 0
    for section in report.annex.sections:
        for t in section.tables:
            docx_table = tables[caption(t)]
            if not t.rows:
                assert docx_table is None, t.id
                continue
            assert docx_table is not None, t.id
            assert [c.text for c in docx_table.rows[0].cells] == t.columns
            for i in rng.sample(range(len(t.rows)), min(3, len(t.rows))):
                docx_row = docx_table.rows[i + 1].cells
                md_row = md_tables[caption(t)][i + 2]  # after the header and the |---| line
                for cell, docx_cell in zip(t.rows[i], docx_row, strict=False):
                    first = re.sub(r"(\[\d+\])+$", "", docx_cell.paragraphs[0].text)  # note references
                    assert first == cell_text(cell), (t.id, i)
                    assert cell_text(cell).replace("|", "\\|").replace("\n", " ") in md_row, (t.id, i)
                    if cell.evidence and cell.provenance != Provenance.LABEL:
                        assert cell.evidence[0] in docx_cell.text
                checked += 1
    assert checked >= 30


def test_docx_outline_headings_and_repeated_header_rows(outputs: tuple[Report, str, DocxDocument]) -> None:
    # Word's navigation pane lists headings; tblHeader makes Word repeat the header row on each page.
    report, _, doc = outputs
    headings = [p.text for p in doc.paragraphs if p.style is not None and p.style.name.startswith("Heading")]
    assert [f"{s.id} {s.title}" for s in report.annex.sections] == headings[:len(report.annex.sections)]
    assert "Appendix B. Evidence" in headings
    for table in doc.tables:
        tr_pr = table.rows[0]._tr.trPr
        assert tr_pr is not None and tr_pr.find(qn("w:tblHeader")) is not None
    evidence_table = doc.tables[-1]
    assert [c.text for c in evidence_table.rows[0].cells][:3] == ["Id", "Probe", "Target"]
    assert {r.cells[0].text for r in evidence_table.rows[1:]} == {e.id for e in report.evidence}


def test_every_check_has_a_remediation_text_and_html_shows_it_by_severity() -> None:
    texts = remediation()
    ids = {spec.id for spec in REGISTRY.all()}
    assert ids - set(texts) == set(), "checks without remediation text"
    assert set(texts) - ids == set(), "remediation for unknown checks"
    assert all(t["text"] and t["references"] for t in texts.values())
    html = (demo_outputs() / "annex.html").read_text(encoding="utf-8")
    failed = html.split('<h2 id="failed">', 1)[1].split("</table>", 1)[0]
    severities = re.findall(r"</td><td>(critical|high|medium|low|info)</td>", failed)
    order = ["critical", "high", "medium", "low", "info"]
    assert severities and [order.index(s) for s in severities] == sorted(order.index(s) for s in severities)
    assert texts["inventory.plaintext_dicom"]["text"].split(";")[0] in failed.replace("&#39;", "'")
    nav = html.split("<nav>", 1)[1].split("</nav>", 1)[0]
    assert "N.8.3 " in nav and ">N.8.3<" not in nav  # titles, not bare numbers


def test_docx_renders_a_report_without_rows(tmp_path: Path) -> None:
    # An annex of empty tables (a scan that found nothing) still gives a valid document.
    from datetime import UTC, datetime

    from dcsaudit.annex import outline  # noqa: F401  (the outline is what build_annex walks)
    from dcsaudit.export.docx import render_docx
    from dcsaudit.models.core import Annex, AnnexSection, AnnexTable
    from dcsaudit.models.report import RunInfo

    now = datetime.now(UTC)
    report = Report(deployment="empty", started_at=now, finished_at=now,
                    run=RunInfo(tool_version="0", command="scan", policy="default"),
                    annex=Annex(sections=[AnnexSection(id="N.6.1", title="General", tables=[
                        AnnexTable(id="N.6-1", title="General Configuration Parameters", columns=["A", "B"],
                                   empty_reason="not probed")])]))
    path = tmp_path / "a.docx"
    path.write_bytes(render_docx(report))
    doc = Document(str(path))
    assert "Table N.6-1. General Configuration Parameters" in [p.text for p in doc.paragraphs]
    assert any("No rows: not probed." in p.text for p in doc.paragraphs)
