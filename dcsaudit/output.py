"""Writes report.json (the models, directly), annex.md and annex.html (jinja2 from templates/).

Templates get only the serialised report (docs/design.md): StrictUndefined so a misspelt field
fails loudly, and autoescape for HTML so a hostile banner or AE title cannot inject markup.
"""

from __future__ import annotations

import contextlib
import hashlib
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


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Templates compiled once and kept between runs: compiling annex.md and annex.html cost every scan
    ≈ 0.1 s after its last packet (issue 16). jinja2's own per-user directory (``$TMPDIR/_jinja2-cache-UID``,
    created 0700, refused if another user owns it: the cache holds code); entries are checked against the
    template's source and jinja2's version. A cache that cannot be written only costs the compile."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


_ENV_OPTIONS: dict[str, Any] = {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}


def _compiled_templates(autoescape: bool) -> jinja2.BytecodeCache | None:
    # The compiled code also depends on the environment's options, which jinja2's key does not cover.
    options = hashlib.sha256(repr((sorted(_ENV_OPTIONS.items()), autoescape)).encode()).hexdigest()[:12]
    try:
        return _CompiledTemplates(pattern=f"dcsaudit-{options}-%s.cache")
    except (OSError, RuntimeError):  # no usable temporary directory, or one that is not ours
        return None


@cache  # one environment per kind, so its compiled templates are reused
def _env(autoescape: bool) -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: (resources.files("dcsaudit.templates") / name).read_text(encoding="utf-8"))
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, autoescape=autoescape,
                             bytecode_cache=_compiled_templates(autoescape), **_ENV_OPTIONS)
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


def _context(data: dict[str, Any]) -> dict[str, Any]:
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


def render(data: dict[str, Any], template: str, autoescape: bool) -> str:
    """``template`` filled from the serialised report (``Report.model_dump(mode="json")``)."""
    return _env(autoescape).get_template(template).render(**_context(data))


def write_outputs(report: Report, out_dir: Path, formats: tuple[str, ...] = DEFAULT_FORMATS) -> dict[str, Path]:
    """Writes the files of ``formats`` (``dcsaudit.export.FORMATS``: json, md, html, docx, pdf)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {FORMATS[f]: out_dir / FORMATS[f] for f in FORMATS if f in formats}
    _remove_stale_temporaries(out_dir, list(paths))
    documents = start_documents(report, formats)  # first: the PDF's worker lays out while we render
    # Rendered before anything is replaced: a template error leaves the previous outputs untouched.
    texts: dict[str, str | bytes] = {}
    data = report.model_dump(mode="json")  # once: the templates only read it
    if "report.json" in paths:
        texts["report.json"] = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if "annex.md" in paths:
        texts["annex.md"] = render(data, "annex.md.j2", autoescape=False)
    if "annex.html" in paths:
        texts["annex.html"] = render(data, "annex.html.j2", autoescape=True)
    texts.update(documents())
    # report.json last: its presence means the annexes beside it belong to it.
    for name in paths:
        atomic_write(paths[name], texts[name])
    return paths
