"""annex.docx: the security sections in PS3.2 Annex N's layout, for a vendor's Conformance Statement.

Section numbers and titles become Word headings (the navigation pane shows the outline), each table has
the standard's caption ("Table N.6-1. General Configuration Parameters") and a header row Word repeats
on every page (``w:tblHeader``). A cell shows its provenance mark before its value; cell notes become
numbered table notes under the table (the way PS3.2 prints notes), and the evidence list is an appendix.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.oxml.table import CT_Tc
from docx.shared import Cm, Pt, RGBColor
from docx.table import Table
from docx.text.paragraph import Paragraph

from dcsaudit.export.marks import PROVENANCE_MARK, PROVENANCE_TEXT
from dcsaudit.export.remediation import by_severity, remediation
from dcsaudit.models.core import AnnexTable, Cell, Provenance
from dcsaudit.models.report import Report

MARK_COLOUR = {
    "verified": RGBColor(0x1B, 0x7F, 0x3B),
    "contradicted": RGBColor(0xB3, 0x26, 0x1E),
    "declared": RGBColor(0x8A, 0x5A, 0x00),
    "not_verifiable": RGBColor(0x6B, 0x6B, 0x6B),
    "not_observed": RGBColor(0x4A, 0x5B, 0xBF),
}
GREY = RGBColor(0x55, 0x55, 0x55)
MAX_EVIDENCE_IDS = 8  # as annex.md: the rest is in report.json


def caption(table: AnnexTable) -> str:
    """The standard's caption: "Table N.6-1. Title", or the title alone for an unnumbered table."""
    return f"Table {table.id}. {table.title}" if table.numbered else table.title


def cell_text(cell: Cell) -> str:
    """The first line of a rendered cell: mark and value (label cells: the value alone)."""
    if cell.provenance == Provenance.LABEL:
        return cell.value
    return f"{PROVENANCE_MARK[cell.provenance.value]} {cell.value}".rstrip()


def _shade(cell_xml: CT_Tc, fill: str) -> None:
    tc_pr = cell_xml.get_or_add_tcPr()
    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    tc_pr.append(shd)  # type: ignore[arg-type]  # lxml's stubs type children as the parent's class


def _repeat_header(table: Table) -> None:
    """Word repeats a row marked tblHeader at the top of every page the table runs onto."""
    tr_pr = table.rows[0]._tr.get_or_add_trPr()
    header = OxmlElement("w:tblHeader")
    header.set(qn("w:val"), "true")
    tr_pr.append(header)  # type: ignore[arg-type]  # lxml's stubs type children as the parent's class


def _small(paragraph: Paragraph, text: str, italic: bool = False, colour: RGBColor = GREY) -> None:
    run = paragraph.add_run(text)
    run.font.size = Pt(7)
    run.font.italic = italic
    run.font.color.rgb = colour


def _header_table(doc: object, columns: Sequence[str], rows: int) -> Table:
    table: Table = doc.add_table(rows=rows + 1, cols=len(columns))  # type: ignore[attr-defined]
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, title in zip(table.rows[0].cells, columns, strict=True):
        run = cell.paragraphs[0].add_run(title)
        run.bold = True
        _shade(cell._tc, "E8ECF2")
    _repeat_header(table)
    return table


def _styled(doc: object, text: str, style_id: str) -> Paragraph:
    """A paragraph with a style given by id: python-docx's lookup by name walks every style each time
    (seconds for the ~600 headings and captions of the full outline)."""
    p: Paragraph = doc.add_paragraph(text)  # type: ignore[attr-defined]
    p._p.style = style_id
    return p


def _annex_table(doc: object, t: AnnexTable, caption_style: str) -> None:
    _styled(doc, caption(t), caption_style)
    if not t.rows:  # ~150 of the outline's tables are empty: one line each, not an empty grid
        p = doc.add_paragraph()  # type: ignore[attr-defined]
        _small(p, f"No rows: {t.empty_reason or 'nothing observed'}.", italic=True)
        return
    table = _header_table(doc, t.columns, len(t.rows))
    notes: list[str] = []
    for row, docx_row in zip(t.rows, table.rows[1:], strict=True):
        for cell, docx_cell in zip(row, docx_row.cells, strict=False):
            p = docx_cell.paragraphs[0]
            if cell.provenance == Provenance.LABEL:
                p.add_run(cell.value)
                _shade(docx_cell._tc, "F4F6F9")
                continue
            mark = p.add_run(PROVENANCE_MARK[cell.provenance.value] + (" " if cell.value else ""))
            mark.bold = True
            mark.font.color.rgb = MARK_COLOUR[cell.provenance.value]
            p.add_run(cell.value)
            extra = []
            if cell.provenance == Provenance.CONTRADICTED:
                extra.append(f"declared: {cell.declared} · observed: {cell.observed}")
            if cell.note:
                extra.append(cell.note)
            for text in extra:
                notes.append(text)
                ref = p.add_run(f"[{len(notes)}]")
                ref.font.superscript = True
            if cell.evidence:
                shown = ", ".join(cell.evidence[:MAX_EVIDENCE_IDS])
                more = len(cell.evidence) - MAX_EVIDENCE_IDS
                _small(docx_cell.add_paragraph(),
                       f"[{shown}{f', … {more} more in report.json' if more > 0 else ''}]")
    for i, text in enumerate(notes, 1):
        _small(doc.add_paragraph(), f"[{i}] {text}", italic=True)  # type: ignore[attr-defined]
    for text in t.notes:
        _small(doc.add_paragraph(), f"Note: {text}", italic=True)  # type: ignore[attr-defined]


def _fill(table: Table, rows: Sequence[Sequence[str]]) -> None:
    for values, docx_row in zip(rows, table.rows[1:], strict=True):
        for value, docx_cell in zip(values, docx_row.cells, strict=True):
            docx_cell.paragraphs[0].add_run(value)


def render_docx(report: Report) -> bytes:
    doc = Document()
    section = doc.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)  # A4
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Cm(1.8))
    normal = doc.styles["Normal"]
    normal.font.name = "Calibri"
    normal.font.size = Pt(9)

    doc.add_heading(f"{report.deployment} — DICOM Conformance Statement, security sections", level=0)
    run = report.run
    doc.add_paragraph(
        f"Measured by dcsaudit {run.tool_version} from an audit run {report.started_at.isoformat()} – "
        f"{report.finished_at.isoformat()} (command {run.command}, policy {run.policy}), "
        f"following {report.annex.standard}.")
    legend = doc.add_paragraph("Provenance of each value: ")
    for key, text in PROVENANCE_TEXT.items():
        mark = legend.add_run(f"{PROVENANCE_MARK[key]} ")
        mark.bold = True
        mark.font.color.rgb = MARK_COLOUR[key]
        legend.add_run(f"{text};  ")

    heading = {level: doc.styles[f"Heading {level}"].style_id for level in range(1, 10)}
    caption_style = doc.styles["Caption"].style_id
    for s in report.annex.sections:
        _styled(doc, f"{s.id} {s.title}", heading[max(1, min(s.id.count("."), 9))])
        for line in s.text:
            _small(doc.add_paragraph(), line, italic=True)
        for t in s.tables:
            _annex_table(doc, t, caption_style)

    failing = by_severity([f.model_dump(mode="json") for f in report.findings if f.status in ("fail", "error")])
    doc.add_heading("Appendix A. Failed checks", level=1)
    if failing:
        table = _header_table(doc, ["Check", "Status", "Severity", "Target", "Summary", "Remediation"], len(failing))
        texts = remediation()
        _fill(table, [[f["check_id"], f["status"] + (" (gating)" if f["gating"] else ""), f["severity"],
                       f["target"], f["summary"], texts.get(f["check_id"], {}).get("text", "")] for f in failing])
    else:
        doc.add_paragraph("No check failed.")

    doc.add_heading("Appendix B. Evidence", level=1)
    doc.add_paragraph("The measurements the ✔ and ✘ cells cite; report.json holds each item's full data.")
    if report.evidence:
        table = _header_table(doc, ["Id", "Probe", "Target", "OK", "Reason", "Observation"], len(report.evidence))
        _fill(table, [[e.id, e.probe, e.target, "yes" if e.ok else "no", e.reason.value if e.reason else "",
                       e.summary] for e in report.evidence])
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()
