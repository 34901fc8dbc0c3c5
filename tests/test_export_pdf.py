"""annex.pdf (issue 14 item 2), laid out by dcsaudit/export/pdf_layout.py, read back with poppler: every
section id and caption, a cover with the run's metadata, contents whose every entry points at the page
its section starts on, headers repeated, evidence expanded and ids whole, wide tables inside the page,
hostile report text drawn literally, and the worker process that lays it out during a run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dcsaudit.export.docx import caption
from dcsaudit.export.pdf_layout import outline_levels, render_pdf
from dcsaudit.models.core import Annex, AnnexSection, AnnexTable, Cell, Evidence, Finding, Provenance
from dcsaudit.models.report import Report, RunInfo
from tests.export_support import demo_outputs

pytestmark = [
    pytest.mark.timeout(600),  # the first test of the process runs the demo (~40 s, more under load)
    pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
                       reason="poppler-utils (pdftotext, pdftoppm) not installed: scripts/setup.sh installs it"),
]


def _text(path: Path, *options: str) -> list[str]:
    out = subprocess.run(["pdftotext", *options, "-enc", "UTF-8", str(path), "-"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return out.split("\f")


def _contents(path: Path, pages: list[str]) -> dict[str, int]:
    """Contents entry -> page number, read with -layout (one printed line per text line: without it
    poppler may put a column of page numbers after the titles)."""
    laid_out = "\n".join(_text(path, "-layout")[1:_body_start(pages)])
    return {title.strip(): int(page) for title, page in
            re.findall(r"^[ \t]*(\S.*?)[ .]*?[ \t]+(\d+)[ \t]*$", laid_out, re.M)}


def _ids(entries: dict[str, int]) -> dict[str, int]:
    return {title.split(" ", 1)[0]: page for title, page in entries.items() if title.startswith("N.")}


@pytest.fixture(scope="module")
def pdf() -> tuple[Report, Path, list[str]]:
    """The annex.pdf of `dcsaudit demo --format …,pdf`: laid out by the worker process the CLI starts."""
    out = demo_outputs()
    report = Report.model_validate_json((out / "report.json").read_text(encoding="utf-8"))
    return report, out / "annex.pdf", _text(out / "annex.pdf")


def _squash(text: str) -> str:
    return re.sub(r"[\s\-\u00ad]+", "", text)


def _body_start(pages: list[str]) -> int:
    """Index of the first page after the contents (the legend opens the body)."""
    return next(i for i, p in enumerate(pages) if i > 1 and "Provenance:" in p)


def test_pdf_text_has_every_section_id_and_table_caption(pdf: tuple[Report, Path, list[str]]) -> None:
    # Given the demo's report written directly, When the PDF's text is extracted, Then every section
    # heading and every table caption is in the body (the contents pages left out: they list the
    # headings too).
    report, _, pages = pdf
    body = _squash("".join(pages[_body_start(pages):]))
    for s in report.annex.sections:
        assert _squash(f"{s.id} {s.title}") in body, s.id
        for t in s.tables:
            assert _squash(caption(t)) in body, t.id


def test_pdf_cover_contents_and_page_numbers(pdf: tuple[Report, Path, list[str]]) -> None:
    report, path, pages = pdf
    cover = _squash(pages[0])
    for value in (report.deployment, report.run.tool_version, report.started_at.isoformat(), report.run.policy):
        assert _squash(value) in cover
    assert "Contents" in pages[1]
    total = len([p for p in pages if p.strip()])
    assert f"Page 2 of {total}" in pages[1]
    assert f"Page {total} of {total}" in pages[total - 1]
    assert "Page 1 of" not in pages[0]  # no page furniture on the cover
    # Every contents line gives the page its section starts on (one pass: pages reserved up front).
    entries = _contents(path, pages)
    ids = _ids(entries)
    assert set(ids) == {s.id for s in report.annex.sections}
    for s in report.annex.sections:
        assert _squash(f"{s.id} {s.title}") in _squash(pages[ids[s.id] - 1]), s.id
    for title in ("Failed checks", "All findings", "Evidence"):
        assert re.search(rf"^{title}$", pages[entries[title] - 1], re.M), title


def test_pdf_repeats_headers_expands_evidence_and_keeps_ids_whole(pdf: tuple[Report, Path, list[str]]) -> None:
    report, path, pages = pdf
    text = "\f".join(pages)
    evidence_pages = [p for p in pages if re.search(r"^ev-\d{4}$", p, re.M) and "Observation" in p]
    assert len(evidence_pages) >= 2  # the evidence table runs over pages, its header row on each
    start = _contents(path, pages)["Evidence"] - 1  # the appendix (the last section: it runs to the end)
    assert len(pages[start:]) >= 3
    for p in pages[start:]:
        if re.search(r"^ev-\d{4}$", p, re.M):
            assert "Observation" in p and "Probe" in p  # the header row, repeated
    with_data = [e for e in report.evidence if e.data]
    assert with_data
    for e in with_data:
        assert f'"{sorted(e.data)[0]}"' in text, e.id  # the <details> data, expanded on paper
    assert not re.search(r"ev-\s+\d{4}", text)  # no id split over two lines ("ev-/0033")
    for e in report.evidence:
        assert e.id in text


def _pgm(path: Path) -> tuple[int, int, bytes]:
    data = path.read_bytes()
    parts = data.split(maxsplit=4)  # P5 width height maxval pixels
    assert parts[0] == b"P5"
    width, height = int(parts[1]), int(parts[2])
    return width, height, parts[4][-width * height:]


def _ink_columns(path: Path, page: int, tmp_path: Path) -> tuple[int, set[int]]:
    subprocess.run(["pdftoppm", "-f", str(page), "-l", str(page), "-r", "60", "-gray", str(path),
                    str(tmp_path / f"p{page}")], check=True, timeout=60)
    image = next(tmp_path.glob(f"p{page}*.pgm"))
    width, _height, pixels = _pgm(image)
    return width, {i % width for i, v in enumerate(pixels) if v < 160}


def test_widest_table_fits_the_page_width(pdf: tuple[Report, Path, list[str]], tmp_path: Path) -> None:
    # Given the annex table with the most columns, When its page is rendered,
    # Then no ink reaches into the right margin, and the table does use the width.
    report, path, pages = pdf
    widest = max((t for s in report.annex.sections for t in s.tables if t.rows), key=lambda t: len(t.columns))
    assert len(widest.columns) >= 6
    body = _body_start(pages)
    page = next(i for i, p in enumerate(pages) if _squash(caption(widest)) in _squash(p) and i >= body) + 1
    # the last column's heading is on the page (word by word: poppler may interleave a wrapped heading
    # cell's lines with its neighbours')
    assert all(word in pages[page - 1] for word in widest.columns[-1].split())
    width, ink = _ink_columns(path, page, tmp_path)
    assert ink, "blank page"
    right_margin = width * 13 / 210  # 13 mm of A4's 210 mm
    assert max(ink) < width - right_margin * 0.5
    assert max(ink) > width / 2


# -- small reports, no demo ------------------------------------------------------------------------------
HOSTILE = "**bold** <b>x</b> {nb} \\(x\\) ) ( %PDF endstream"


def _report(value: str, note: str = "", evidence_data: dict[str, object] | None = None) -> Report:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    table = AnnexTable(id="N.6-1", title="General Configuration Parameters",
                       columns=["Parameter", "Configurable", "Default Value", "Comments", "A", "B", "C"],
                       rows=[[Cell(value="Banner", provenance=Provenance.LABEL),
                              Cell(value=value, provenance=Provenance.VERIFIED, evidence=["ev-0001"], note=note),
                              Cell(value="v", provenance=Provenance.CONTRADICTED, declared="a", observed="b"),
                              Cell(value="x" * 300, provenance=Provenance.DECLARED),
                              Cell(provenance=Provenance.NOT_OBSERVED), Cell(), Cell(value="c")]])
    return Report(
        deployment="lab <script>alert(1)</script>", started_at=at, finished_at=at,
        run=RunInfo(tool_version="9.9", command="scan", policy="default"),
        findings=[Finding(check_id="tls.x", title="t", status="fail", severity="high", target="h:1",
                          summary=value, evidence=["ev-0001"], gating=True)],
        evidence=[Evidence(id="ev-0001", probe="identify.dicom", target="h:1/dicom", at=at, ok=True,
                           summary=value, data=evidence_data or {"banner": value})],
        annex=Annex(sections=[AnnexSection(id="N.6.1", title="General Configuration Parameters",
                                           tables=[table])]))


def test_hostile_text_is_drawn_as_written(tmp_path: Path) -> None:
    # Given a peer whose banner holds markup, PDF syntax, control characters and a lone surrogate
    value = HOSTILE + " \x00\x1b[31m red \ud800 end"
    path = tmp_path / "h.pdf"
    # When its report is written as a PDF
    path.write_bytes(render_pdf(_report(value, note="note <i>n</i>")))
    text = _squash("".join(_text(path)))  # without white space: the cells wrap the banner
    # Then the text is there character for character (no markdown, no markup), the control characters
    # and the surrogate as U+FFFD, and the deployment name literally
    assert _squash(HOSTILE + " \ufffd\ufffd[31m red \ufffd end") in text
    assert "\x00" not in text and "\x1b" not in text
    assert _squash("note <i>n</i>") in text
    assert _squash("lab <script>alert(1)</script>") in text
    assert _squash("declared: a · observed: b") in text


def test_long_values_wrap_inside_the_page(tmp_path: Path) -> None:
    # Given a cell of 300 letters without a space and evidence data with an 8 kB string
    path = tmp_path / "w.pdf"
    path.write_bytes(render_pdf(_report("y" * 500, evidence_data={"blob": "z" * 8000})))
    pages = _text(path)
    # When the pages are rendered, Then no ink reaches into the right margin on any of them
    # (the long words are cut, as CSS overflow-wrap: anywhere), and none of the letters is lost
    total = len([p for p in pages if p.strip()])
    for page in range(2, total + 1):
        width, ink = _ink_columns(path, page, tmp_path)
        if ink:
            assert max(ink) < width - width * 13 / 210 * 0.5, page
    text = _squash("".join(pages))
    assert "y" * 500 in text and "z" * 8000 in text and "x" * 300 in text


def test_outline_levels_follow_the_listed_ancestors() -> None:
    # N.6.1 has no listed parent (there is no N.6 section): top level, as N.8; children one below
    ids = ["N.6.1", "N.6.2", "N.6.2.1", "N.6.2.1.1", "N.6.3", "N.8", "N.8.1", "N.8.1.1.1", "N.8.2"]
    assert outline_levels(ids) == [0, 0, 1, 2, 0, 0, 1, 2, 1]


def test_contents_reserve_enough_pages_for_many_sections(tmp_path: Path) -> None:
    # Given 400 sections (the contents run over several reserved pages), When the PDF is written,
    # Then fpdf2 accepts the reserved page count and every section's page is right
    report = _report("v")
    sections = [AnnexSection(id=f"N.6.{i}", title=f"Section {i}", text=["t " * 200]) for i in range(1, 401)]
    report = report.model_copy(update={"annex": Annex(sections=sections)})
    path = tmp_path / "m.pdf"
    path.write_bytes(render_pdf(report))
    pages = _text(path)
    assert _body_start(pages) >= 5  # 400 entries need several pages of contents
    entries = _ids(_contents(path, pages))
    assert len(entries) == 400
    for i in range(1, 401):
        assert re.search(rf"^N\.6\.{i} Section {i}$", pages[entries[f"N.6.{i}"] - 1], re.M), i


def test_evidence_data_is_the_reports_json(pdf: tuple[Report, Path, list[str]]) -> None:
    # The expanded data is the item's JSON: its longest string value is printed whole (wrapped lines
    # joined), so nothing is cut off at a page or a line end
    report, _, pages = pdf
    text = _squash("".join(pages))
    item = max((e for e in report.evidence if e.data), key=lambda e: len(json.dumps(e.data)))
    values = [v for v in item.data.values() if isinstance(v, str) and v]
    for v in values:
        assert _squash(json.dumps(v, ensure_ascii=False)) in text, v[:40]


def test_pdf_worker_lays_out_in_its_own_process(tmp_path: Path) -> None:
    # Given a worker started as `--format …,pdf` starts it (importing while the audit would run)
    from dcsaudit.export import pdf as pdf_module

    report = _report("worker value 42")
    pdf_module.start_worker()
    worker = pdf_module._worker
    assert worker is not None and worker.poll() is None
    # When a report is submitted, Then the worker (not this process) lays it out, and is used up
    result = pdf_module.submit(report)
    assert pdf_module._worker is None
    data = result()
    assert worker.returncode == 0 and data.startswith(b"%PDF")
    (tmp_path / "w.pdf").write_bytes(data)
    text = _squash("".join(_text(tmp_path / "w.pdf")))
    assert _squash("N.6.1 General Configuration Parameters") in text and _squash("worker value 42") in text
    # and without a worker the same call lays it out in process
    assert pdf_module.submit(report)().startswith(b"%PDF")


def test_a_dead_pdf_worker_does_not_cost_the_pdf() -> None:
    # Given a worker that died after it was started (killed: out of memory, an operator)
    from dcsaudit.export import pdf as pdf_module

    pdf_module.start_worker()
    worker = pdf_module._worker
    assert worker is not None
    worker.kill()
    # When the run's report is submitted, Then the PDF is laid out in this process instead
    assert pdf_module.submit(_report("after the worker died"))().startswith(b"%PDF")
    worker.wait(timeout=10)
