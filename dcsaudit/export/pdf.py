"""annex.pdf: annex.html printed through a print stylesheet (templates/annex.print.css) by WeasyPrint.

The HTML is the one annex.html holds; printing adds what paper needs and a browser does not: a cover
with the run's metadata, a contents list with section titles and page numbers, header rows in
``<thead>`` (repeated on every page), and evidence data expanded (``<details>`` cannot be opened on
paper). WeasyPrint runs no scripts and is given a URL fetcher that fetches nothing: a hostile banner
in the report cannot make the renderer load a file or a URL.

Time (docs/benchmarks.md, "Export"): WeasyPrint lays the demo's annex out at roughly a third of a second
per page, and importing it costs about a second. A run that asks for a PDF therefore starts a worker
process when its options are read (:func:`start_worker`): it imports WeasyPrint and prints a small page
(fonts, Pango, cffi types) while the audit waits on the wire, then waits for the annex on its stdin.
:func:`submit` hands it the page and returns at once, so the DOCX (and the CI formats) are written in
the main process while the PDF is laid out on the other core. Without a worker the PDF is made in
process, as before. The worker exits when its stdin closes (the run ended without asking for the PDF).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable
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
    # A table with no rows is one line on paper: its caption followed by the reason (148 of the demo's
    # 169 tables; each line costs layout time).
    for empty in list(doc.find_class("empty")):
        previous = empty.getprevious()
        parent = empty.getparent()
        if previous is not None and parent is not None and previous.get("class") == "caption":
            previous.append(E.SPAN(" — " + (empty.text_content() or ""), **{"class": "empty"}))
            parent.remove(empty)
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


def _write_pdf(page: str) -> bytes:
    import weasyprint  # type: ignore[import-untyped]  # loads Pango: only when a PDF is asked for

    # No protocol allowed: not file:, not http: (the annex itself embeds everything it shows).
    fetcher = weasyprint.urls.URLFetcher(allowed_protocols=())
    pdf = weasyprint.HTML(string=page, url_fetcher=fetcher, base_url=".").write_pdf()
    assert isinstance(pdf, bytes)
    return pdf


def render_pdf(report: Report, annex_html: str) -> bytes:
    return submit(report, annex_html)()


# -- the worker process -------------------------------------------------------------------------------
WORKER_TIMEOUT = 600.0  # seconds for one annex (the demo's takes ~15 s on one core): then it is killed
_WARM_PAGE = ("<!DOCTYPE html><html><head><style>{css}</style></head><body><section class='cover' "
              "data-deployment='d'><h1>✔ ✘ ∅ — D</h1></section><table><thead><tr><th>a</th></tr></thead>"
              "<tr><td><span class='p'>✔</span>warm-up <code>{{\"k\": 1}}</code></td></tr></table></body></html>")
_worker: subprocess.Popen[bytes] | None = None
_worker_lock = threading.Lock()


def start_worker() -> None:
    """Start (once) the process that will print this run's annex.pdf; harmless when it cannot start."""
    global _worker
    with _worker_lock:
        if _worker is not None and _worker.poll() is None:
            return
        try:
            _worker = subprocess.Popen([sys.executable, "-m", "dcsaudit.export.pdf"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError:
            _worker = None  # submit() prints in this process instead


def _take_worker() -> subprocess.Popen[bytes] | None:
    global _worker
    with _worker_lock:
        worker, _worker = _worker, None
    return worker if worker is not None and worker.poll() is None else None


def submit(report: Report, annex_html: str) -> Callable[[], bytes]:
    """Start printing the annex; the returned function waits for the PDF's bytes. With a worker the
    layout runs in that process (on the other core); otherwise in this one, when the result is asked for."""
    page = print_html(report, annex_html)
    worker = _take_worker()
    if worker is None:
        return lambda: _write_pdf(page)
    box: dict[str, tuple[bytes, bytes]] = {}
    errors: list[str] = []

    def talk() -> None:
        try:
            box["out"] = worker.communicate(page.encode("utf-8"), timeout=WORKER_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()
            errors.append(f"the PDF worker did not finish within {WORKER_TIMEOUT:.0f} s")
        except OSError as exc:
            errors.append(f"the PDF worker failed: {exc.strerror or exc}")

    thread = threading.Thread(target=talk, name="pdf-worker", daemon=True)
    thread.start()

    def result() -> bytes:
        thread.join()
        if errors or "out" not in box:
            raise RuntimeError(errors[0] if errors else "the PDF worker gave no result")
        out, err = box["out"]
        if worker.returncode != 0 or not out.startswith(b"%PDF"):
            # The worker never saw secrets; its last line names the exception type only.
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"the PDF worker failed: {last[0][:300]}")
        return out

    return result


def _worker_main() -> int:
    """``python -m dcsaudit.export.pdf``: warm up, then print the page read from stdin to stdout."""
    css = (resources.files("dcsaudit.templates") / "annex.print.css").read_text(encoding="utf-8")
    with contextlib.suppress(Exception):  # a warm-up failure shows again, for real, below
        _write_pdf(_WARM_PAGE.format(css=css))
    page = sys.stdin.buffer.read().decode("utf-8")
    if not page:
        return 0  # the run ended without a PDF
    try:
        pdf = _write_pdf(page)
    except Exception as exc:  # the message could quote the report: say the type only
        print(f"{type(exc).__name__} while printing the annex", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(pdf)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
