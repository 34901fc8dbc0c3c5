"""Writes report.json (the models, directly), annex.md and annex.html (jinja2 from templates/).

Templates get only the serialised report (docs/design.md): StrictUndefined so a misspelt field
fails loudly, and autoescape for HTML so a hostile banner or AE title cannot inject markup.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from dcsaudit.models.report import Report

PROVENANCE_MARK = {
    "verified": "✔",
    "declared": "D",
    "contradicted": "✘",
    "not_verifiable": "—",
    "not_observed": "∅",
    "label": "",
}
PROVENANCE_TEXT = {
    "verified": "verified on the wire",
    "declared": "declared by the vendor, not verifiable from the network",
    "contradicted": "declared value contradicted by observation",
    "not_verifiable": "not verifiable from the network",
    "not_observed": "observable, but not observed in this audit",
}


def report_schema() -> dict[str, Any]:
    """The published JSON Schema of report.json (kept in schemas/report.schema.json)."""
    schema = Report.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://dcsaudit.invalid/schemas/report.schema.json"
    return schema


def _env(autoescape: bool) -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: (resources.files("dcsaudit.templates") / name).read_text(encoding="utf-8"))
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=autoescape,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals.update(mark=PROVENANCE_MARK, provenance_text=PROVENANCE_TEXT)
    env.filters["md"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    return env


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _context(report: Report) -> dict[str, Any]:
    data = report.model_dump(mode="json")
    counts: dict[str, int] = {}
    for f in data["findings"]:
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    return {
        "r": data,
        "finding_counts": counts,
        "failing": [f for f in data["findings"] if f["status"] in ("fail", "error")],
        "evidence_by_id": {e["id"]: e for e in data["evidence"]},
    }


def render(report: Report, template: str, autoescape: bool) -> str:
    return _env(autoescape).get_template(template).render(**_context(report))


def write_outputs(report: Report, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report.json": out_dir / "report.json",
        "annex.md": out_dir / "annex.md",
        "annex.html": out_dir / "annex.html",
    }
    _atomic_write(paths["report.json"], json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    _atomic_write(paths["annex.md"], render(report, "annex.md.j2", autoescape=False))
    _atomic_write(paths["annex.html"], render(report, "annex.html.j2", autoescape=True))
    return paths
