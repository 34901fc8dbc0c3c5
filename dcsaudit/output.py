"""Writes report.json (the models, directly), annex.md and annex.html (jinja2 from templates/).

Templates get only the serialised report (docs/design.md): StrictUndefined so a misspelt field
fails loudly, and autoescape for HTML so a hostile banner or AE title cannot inject markup.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from dcsaudit.export import DEFAULT_FORMATS, FORMATS, start_documents
from dcsaudit.export.marks import PROVENANCE_MARK, PROVENANCE_TEXT
from dcsaudit.export.remediation import by_severity, remediation
from dcsaudit.models.report import Report


def report_schema() -> dict[str, Any]:
    """The published JSON Schema of report.json (kept in schemas/report.schema.json)."""
    schema = Report.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://dcsaudit.invalid/schemas/report.schema.json"
    return schema


@cache  # one environment per kind, so its compiled templates are reused
def _env(autoescape: bool) -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: (resources.files("dcsaudit.templates") / name).read_text(encoding="utf-8"))
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=autoescape,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals.update(mark=PROVENANCE_MARK, provenance_text=PROVENANCE_TEXT)
    env.filters["md"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def current_umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else by setting it back."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, content: str | bytes | Iterable[bytes]) -> None:
    """Temporary file in the same directory, flushed to disk, then renamed over ``path``: a reader (or
    a run killed mid-write) sees the previous complete file or the new complete one, never a part.
    The file gets the mode the umask gives a new file (0644 under 022), not mkstemp's 0600.
    ``content`` may be chunks (streamed: they may be read from ``path`` itself while it is written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, (str, bytes)):
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            else:
                for chunk in content:
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_stale_temporaries(out_dir: Path, names: list[str]) -> None:
    """Temporary files a killed run left behind (``.report.json.XXXX``)."""
    for name in names:
        for stale in out_dir.glob(f".{name}.*"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _context(report: Report) -> dict[str, Any]:
    data = report.model_dump(mode="json")
    counts: dict[str, int] = {}
    for f in data["findings"]:
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    return {
        "r": data,
        "finding_counts": counts,
        # Most severe first, each with its remediation text (dcsaudit/data/remediation.yaml).
        "failing": by_severity([f for f in data["findings"] if f["status"] in ("fail", "error")]),
        "remediation": remediation(),
        "evidence_by_id": {e["id"]: e for e in data["evidence"]},
    }


def render(report: Report, template: str, autoescape: bool) -> str:
    return _env(autoescape).get_template(template).render(**_context(report))


def write_outputs(report: Report, out_dir: Path, formats: tuple[str, ...] = DEFAULT_FORMATS) -> dict[str, Path]:
    """Writes the files of ``formats`` (``dcsaudit.export.FORMATS``: json, md, html, docx, pdf)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {FORMATS[f]: out_dir / FORMATS[f] for f in FORMATS if f in formats}
    _remove_stale_temporaries(out_dir, list(paths))
    documents = start_documents(report, formats)  # first: the PDF's worker lays out while we render
    # Rendered before anything is replaced: a template error leaves the previous outputs untouched.
    texts: dict[str, str | bytes] = {}
    if "report.json" in paths:
        texts["report.json"] = json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    if "annex.md" in paths:
        texts["annex.md"] = render(report, "annex.md.j2", autoescape=False)
    if "annex.html" in paths:
        texts["annex.html"] = render(report, "annex.html.j2", autoescape=True)
    texts.update(documents())
    # report.json last: its presence means the annexes beside it belong to it.
    for name in paths:
        atomic_write(paths[name], texts[name])
    return paths
