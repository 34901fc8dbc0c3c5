"""Output formats beyond the text templates: the annex as a Word document and as a PDF, the signed
evidence bundle (manifest + detached signature) and redaction for publication (issue 14).

``FORMATS`` is the one list of output formats ``--format`` accepts (a new format is one row here and,
for a binary document, one renderer in ``RENDERERS``; the PDF goes to its worker process instead,
``export/pdf.py``); ``dcsaudit.output.write_outputs`` writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dcsaudit.models.report import Report

# --format name -> file written into the output directory, in the order they are written
# (report.json last: its presence means the documents beside it belong to it).
FORMATS: dict[str, str] = {
    "md": "annex.md",
    "html": "annex.html",
    "docx": "annex.docx",
    "pdf": "annex.pdf",
    # CI and scheduler formats (issue 13): dcsaudit.export_ci
    "sarif": "report.sarif",
    "junit": "report.junit.xml",
    "csv": "findings.csv",
    "json": "report.json",
}
DEFAULT_FORMATS: tuple[str, ...] = ("json", "md", "html")


def parse_formats(text: str) -> tuple[str, ...]:
    """``"json,md,pdf"`` -> the known names, in ``FORMATS`` order; ValueError names an unknown one."""
    asked = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not asked:
        raise ValueError("--format: give at least one of " + ", ".join(FORMATS))
    for name in asked:
        if name not in FORMATS:
            raise ValueError(f"--format: unknown format {name!r} (known: {', '.join(FORMATS)})")
    return tuple(name for name in FORMATS if name in asked)


def _docx(report: Report) -> bytes:
    from dcsaudit.export.docx import render_docx

    return render_docx(report)


# Binary documents made in this process: format -> renderer. Imported lazily: python-docx loads only
# when asked for.
def _ci(name: str) -> Callable[[Report], bytes]:
    def render(report: Report) -> bytes:
        from dcsaudit.export_ci import CI_FORMATS

        return str(CI_FORMATS[name][1](report)).encode("utf-8")

    return render


RENDERERS: dict[str, Callable[[Report], bytes]] = {
    "docx": _docx, "sarif": _ci("sarif"), "junit": _ci("junit"), "csv": _ci("csv")}


def start_documents(report: Report, formats: Iterable[str]) -> Callable[[], dict[str, bytes]]:
    """Submit the PDF (laid out in its worker process, ``pdf.start_worker``, while this one writes the
    rest); the returned function makes the other binary documents among ``formats`` and collects the PDF:
    file name -> content."""
    formats = list(formats)
    pending = None
    if "pdf" in formats:
        from dcsaudit.export.pdf import submit

        pending = submit(report)

    def collect() -> dict[str, bytes]:
        documents = {FORMATS[f]: RENDERERS[f](report) for f in formats if f in RENDERERS}
        if pending is not None:
            documents[FORMATS["pdf"]] = pending()
        return documents

    return collect
