"""annex.pdf: annex.html printed through a print stylesheet (templates/annex.print.css) by WeasyPrint.

The HTML is the one annex.html holds; printing adds what paper needs and a browser does not: a cover
with the run's metadata, a contents list with section titles and page numbers, header rows in
``<thead>`` (repeated on every page), and evidence data expanded (``<details>`` cannot be opened on
paper). WeasyPrint runs no scripts and is given a URL fetcher that fetches nothing: a hostile banner
in the report cannot make the renderer load a file or a URL.
"""

from __future__ import annotations

from importlib import resources

from lxml import html as lxml_html
from lxml.html import HtmlElement
from lxml.html import builder as E

from dcsaudit.models.report import Report


def _cover(report: Report) -> HtmlElement:
    run = report.run
    fails = sum(1 for f in report.findings if f.status in ("fail", "error"))
    rows = [
        ("Deployment", report.deployment),
        ("Standard", report.annex.standard),
        ("Measured by", f"{run.tool} {run.tool_version}"),
        ("Run", f"{report.started_at.isoformat()} – {report.finished_at.isoformat()}"),
        ("Command", run.command),
        ("Policy", run.policy),
        ("Exit status", "—" if run.exit_status is None else str(run.exit_status)),
        ("Complete", "yes" if run.complete else f"no: {run.interrupted or 'interrupted'}"),
        ("Endpoints", str(len(report.endpoints))),
        ("Findings", f"{len(report.findings)} ({fails} failed or errored)"),
        ("Evidence items", str(len(report.evidence))),
    ]
    dl = E.DL(*[part for k, v in rows for part in (E.DT(k), E.DD(v))])
    cover = E.SECTION(E.H1(f"{report.deployment} — DICOM Conformance Statement, security sections"), dl,
                      E.CLASS("cover"))
    cover.set("data-deployment", report.deployment)
    return cover


def _toc(report: Report, extra: list[tuple[str, str]]) -> HtmlElement:
    links = [E.A(f"{s.id} {s.title}", href=f"#{s.id}", **{"class": f"d{min(s.id.count('.') + 1, 6)}"})
             for s in report.annex.sections]
    links += [E.A(title, href=f"#{anchor}", **{"class": "d2"}) for anchor, title in extra]
    return E.SECTION(E.H2("Contents"), *links, E.CLASS("toc"))


def print_html(report: Report, annex_html: str) -> str:
    """annex.html made ready for paper (cover, contents, thead, expanded evidence, print CSS)."""
    doc = lxml_html.document_fromstring(annex_html)
    css = (resources.files("dcsaudit.templates") / "annex.print.css").read_text(encoding="utf-8")
    head = doc.find("head")
    assert head is not None
    head.append(E.STYLE(css))
    body = doc.find("body")
    assert body is not None
    # The browser's first row of th cells becomes the table head WeasyPrint repeats on every page.
    for table in doc.iter("table"):
        first = next(iter(table), None)
        if first is not None and first.tag == "tr" and all(c.tag == "th" for c in first):
            table.remove(first)
            table.insert(0, E.THEAD(first))
    for anchor in ("failed", "findings", "evidence"):  # column widths: see annex.print.css
        heading = doc.get_element_by_id(anchor, None)
        following = heading.getnext() if heading is not None else None
        if following is not None and following.tag == "table":
            following.set("class", f"t-{anchor}")
    # Evidence data, expanded on a full-width row of its own under its item (a narrow column would
    # stretch 80 kB of JSON over a hundred pages).
    for details in list(doc.iter("details")):
        row = next((a for a in details.iterancestors("tr")), None)
        code = details.find("code")
        parent = details.getparent()
        if row is None or code is None or parent is None:
            details.set("open", "open")
            continue
        parent.remove(details)
        cell = E.TD(code, colspan=str(len(row)), **{"class": "evdata"})
        row.addnext(E.TR(cell, **{"class": "evdata"}))
    extra = [(anchor, title) for anchor, title in (("failed", "Failed checks"), ("findings", "All findings"),
                                                   ("evidence", "Evidence")) if doc.get_element_by_id(anchor, None) is not None]
    body.insert(0, _toc(report, extra))
    body.insert(0, _cover(report))
    return str(lxml_html.tostring(doc, encoding="unicode", doctype="<!DOCTYPE html>"))


def render_pdf(report: Report, annex_html: str) -> bytes:
    import weasyprint  # type: ignore[import-untyped]  # loads Pango: only when a PDF is asked for

    page = print_html(report, annex_html)
    # No protocol allowed: not file:, not http: (the annex itself embeds everything it shows).
    fetcher = weasyprint.urls.URLFetcher(allowed_protocols=())
    pdf = weasyprint.HTML(string=page, url_fetcher=fetcher, base_url=".").write_pdf()
    assert isinstance(pdf, bytes)
    return pdf
