"""annex.pdf (issue 14 item 2), read back with poppler: every section id and caption, a cover with the
run's metadata, contents with page numbers, headers repeated, evidence expanded, wide tables inside
the page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dcsaudit.export.docx import caption
from dcsaudit.models.report import Report
from tests.export_support import demo_outputs

pytestmark = [
    pytest.mark.timeout(600),  # the first test of the process runs the demo (~40 s, more under load)
    pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
                       reason="poppler-utils (pdftotext, pdftoppm) not installed: scripts/setup.sh installs it"),
]


@pytest.fixture(scope="module")
def pdf() -> tuple[Report, Path, list[str]]:
    out = demo_outputs()
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(out / "annex.pdf"), "-"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    return report, out / "annex.pdf", text.split("\f")


def _squash(text: str) -> str:
    # Without white space (the PDF wraps long captions) and hyphens: in some DejaVu faces the hyphen
    # glyph's ToUnicode entry is U+00AD, which pdftotext drops ("C-ECHO" reads "CECHO"); the page shows it.
    return re.sub(r"[\s\-\u00ad]+", "", text)


def test_pdf_text_has_every_section_id_and_table_caption(pdf: tuple[Report, Path, list[str]]) -> None:
    # Given the demo's annex.pdf, When its text is extracted, Then every section id and every table
    # caption of the annex is there (compared without white space: the PDF wraps long captions).
    report, _, pages = pdf
    body = _squash("".join(pages[2:]))  # after the cover and the first page of contents
    for s in report.annex.sections:
        assert _squash(f"{s.id} {s.title}") in body, s.id
        for t in s.tables:
            assert _squash(caption(t)) in body, t.id


def test_pdf_cover_contents_and_page_numbers(pdf: tuple[Report, Path, list[str]]) -> None:
    report, _, pages = pdf
    cover = _squash(pages[0])
    for value in (report.deployment, report.run.tool_version, report.started_at.isoformat(), report.run.policy):
        assert _squash(value) in cover
    assert "Contents" in pages[1]
    # the contents give titles and the page each section starts on
    first = report.annex.sections[0]
    m = re.search(re.escape(f"{first.id} {first.title}") + r"[ .]*?(\d+)\s*$", pages[1], re.M)
    assert m is not None
    assert _squash(f"{first.id} {first.title}") in _squash(pages[int(m.group(1)) - 1])
    total = len([p for p in pages if p.strip()])
    assert f"Page 2 of {total}" in pages[1]
    assert f"Page {total} of {total}" in pages[total - 1]


def test_pdf_repeats_headers_expands_evidence_and_keeps_ids_whole(pdf: tuple[Report, Path, list[str]]) -> None:
    report, _, pages = pdf
    text = "\f".join(pages)
    evidence_pages = [p for p in pages if re.search(r"^ev-\d{4}$", p, re.M) and "Observation" in p]
    assert len(evidence_pages) >= 2  # the evidence table runs over pages, its header row on each
    with_data = next(e for e in report.evidence if e.data)
    key = sorted(with_data.data)[0]
    assert f'"{key}"' in text  # the <details> data, expanded on paper
    assert not re.search(r"ev-\s+\d{4}", text)  # no id split over two lines ("ev-/0033")
    for e in report.evidence:
        assert e.id in text


def _pgm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    parts = data.split(maxsplit=4)  # P5 width height maxval pixels
    assert parts[0] == b"P5"
    width, height = int(parts[1]), int(parts[2])
    return width, height, parts[4][-width * height:]


def test_widest_table_fits_the_page_width(pdf: tuple[Report, Path, list[str]], tmp_path: Path) -> None:
    # Given the annex table with the most columns (and rows), When its page is rendered,
    # Then no ink reaches into the right margin (a table wider than the page would run to the edge).
    report, path, pages = pdf
    widest = max((t for s in report.annex.sections for t in s.tables if t.rows), key=lambda t: len(t.columns))
    assert len(widest.columns) >= 6
    page = next(i for i, p in enumerate(pages) if _squash(caption(widest)) in _squash(p) and i > 1) + 1
    assert _squash(widest.columns[-1]) in _squash(pages[page - 1])  # the last column is on the page
    subprocess.run(["pdftoppm", "-f", str(page), "-l", str(page), "-r", "60", "-gray", str(path),
                    str(tmp_path / "p")], check=True, timeout=60)
    image = next(tmp_path.glob("p*.pgm"))
    width, _height, pixels = _pgm(image)
    ink_columns = {i % width for i, v in enumerate(pixels) if v < 160}
    assert ink_columns, "blank page"
    right_margin = width * 13 / 210  # annex.print.css: 13 mm of A4's 210 mm
    assert max(ink_columns) < width - right_margin * 0.5
    assert max(ink_columns) > width / 2  # the table does use the width


def test_pdf_worker_prints_in_its_own_process(pdf: tuple[Report, Path, list[str]], tmp_path: Path) -> None:
    # Given a worker started as `--format …,pdf` starts it (warming up while the audit would run)
    from dcsaudit.export import pdf as pdf_module

    report, _, _ = pdf
    pdf_module.start_worker()
    worker = pdf_module._worker
    assert worker is not None and worker.poll() is None
    # When an annex is submitted, Then the worker (not this process) prints it, and is used up
    page = ("<!DOCTYPE html><html><head></head><body><main><h2 id='N.6.1'>N.6.1 Worker Section</h2>"
            "<p class='caption'><strong>Table N.6-1. Worker Table</strong></p>"
            "<table><tr><th>Parameter</th><th>Value</th></tr><tr><td class='label'>x</td>"
            "<td class='verified'><span class='p'>✔</span>42</td></tr></table></main></body></html>")
    result = pdf_module.submit(report, page)
    assert pdf_module._worker is None
    data = result()
    assert worker.returncode == 0 and data.startswith(b"%PDF")
    (tmp_path / "w.pdf").write_bytes(data)
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(tmp_path / "w.pdf"), "-"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    assert "N.6.1 Worker Section" in text and "Table N.6-1. Worker Table" in text and report.deployment[:20] in text
    # and without a worker the same call prints in process
    assert pdf_module.submit(report, page)().startswith(b"%PDF")
