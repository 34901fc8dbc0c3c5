"""Layering of the shipped source (docs/design.md "Layout and recipes"), checked on the syntax tree.

1. Outside the probes (``dcsaudit/probes/``) and listeners (``dcsaudit/listeners/``), nothing reads
   ``Evidence.data``: evidence data is for display. Checks, the annex and audit-message correlation read
   the typed results on endpoints, application entities and the audit trail, so renaming a key in a
   probe cannot silently change a verdict.
2. Checks (``checks/``) and the annex (``dcsaudit/annex/``) do not import probes or listeners.

How (1) decides: ``ast`` knows no types, so it cannot tell an ``Evidence`` from anything else. Instead of
guessing from variable names (``ev``, ``e``, ``x``: a rename would slip through), every read of a member
named ``data`` is flagged: ``x.data`` in any form (``x.data[...]``, ``x.data.get(...)``, ``f(x.data)``,
``for k in x.data``), ``getattr(x, "data")``, and ``something["data"]`` (a dumped Evidence). Today no
other object in the scanned code has a ``data`` member, so there are no false positives; a legitimate
one later goes into ``DATA_ALLOWED`` with its reason. Writing evidence (``evidence.add(..., data=...)``)
is a keyword argument, not a read, and stays allowed everywhere.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dcsaudit"
# dcsaudit/checks is a symlink to ../checks (for mypy): checks/ is walked once, under its own name.
SCANNED = (PACKAGE, ROOT / "checks")
NOT_SCANNED = (PACKAGE / "probes", PACKAGE / "listeners")

# file (relative to the repository) -> why it may read a `data` member.
DATA_ALLOWED: dict[str, str] = {
    "dcsaudit/export/pdf_layout.py": "display: annex.pdf prints each evidence item's data under it, as "
                                     "annex.html's <details> does (the template reads it through jinja2)",
}

# Layers that must not import probes or listeners, and the modules they must not import.
NO_PROBES = (ROOT / "checks", PACKAGE / "annex")
FORBIDDEN_IMPORTS = ("dcsaudit.probes", "dcsaudit.listeners")
# The rule book sits below probes, listeners, checks and the annex: it imports none of them.
RULES = (PACKAGE / "rules",)
RULES_FORBIDDEN = ("dcsaudit.probes", "dcsaudit.listeners", "dcsaudit.checks", "dcsaudit.annex",
                   "dcsaudit.runner", "dcsaudit.cli")


def _sources(roots: tuple[Path, ...], skip: tuple[Path, ...] = ()) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):  # does not follow the checks symlink
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if here / d not in skip and not (here / d).is_symlink()
                                 and d != "__pycache__")
            out.extend(here / f for f in sorted(filenames) if f.endswith(".py"))
    return out


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def data_reads(source: str) -> list[tuple[int, str]]:
    """(line, code) of every read of a member named ``data`` (see the module docstring)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "data":
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "data"):
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
              and node.slice.value == "data"):
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "data"):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(set(found))


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source`` (the file's own dotted name is ``module``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                pkg = module.split(".")[:-node.level]
                base = ".".join([*pkg, *([base] if base else [])])
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{a.name}") for a in node.names)  # from dcsaudit import probes
    return found


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "checks":  # installed as dcsaudit.checks
        parts = ["dcsaudit", *parts]
    return ".".join(parts)


def test_the_walk_sees_the_readers_of_the_past() -> None:
    # The layers this guards are in the walk, and the probes are not.
    files = {_rel(p) for p in _sources(SCANNED, NOT_SCANNED)}
    assert {"checks/dicom_exposure.py", "dcsaudit/annex/audit_tables.py", "dcsaudit/auditmsg/correlate.py",
            "dcsaudit/runner.py"} <= files
    assert not any(f.startswith(("dcsaudit/probes/", "dcsaudit/listeners/", "dcsaudit/checks/")) for f in files)


def test_no_evidence_data_read_outside_probes() -> None:
    offenders = []
    for path in _sources(SCANNED, NOT_SCANNED):
        if _rel(path) in DATA_ALLOWED:
            continue
        offenders.extend(f"{_rel(path)}:{line}: {code}" for line, code in data_reads(path.read_text(encoding="utf-8")))
    assert not offenders, ("Evidence.data is for display; read the typed result on the endpoint / AE / trail "
                           "instead (see tests/test_layering.py):\n" + "\n".join(offenders))


def _forbidden(name: str, forbidden: tuple[str, ...] = FORBIDDEN_IMPORTS) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def _offenders(roots: tuple[Path, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    offenders: dict[str, list[str]] = {}
    for path in _sources(roots):
        bad = [f"{line}: {mod}" for line, mod in imported_modules(path.read_text(encoding="utf-8"), _module_name(path))
               if _forbidden(mod, forbidden)]
        if bad:
            offenders[_rel(path)] = bad
    return offenders


def test_checks_and_annex_do_not_import_probes() -> None:
    offenders = _offenders(NO_PROBES, FORBIDDEN_IMPORTS)
    assert not offenders, f"checks and annex may import models, rules and AuditData, not probes: {offenders}"


def test_rule_book_imports_no_layer_above_it() -> None:
    assert _sources(RULES), "the rule book is where docs/design.md says"
    offenders = _offenders(RULES, RULES_FORBIDDEN)
    assert not offenders, f"dcsaudit/rules may import models (and pure parsers), nothing above: {offenders}"


@pytest.mark.parametrize("code, flagged", [
    ("ev.data.get('kind')", True),
    ("e.data['tls_version']", True),
    ("_alt_matches(ev.data, a)", True),
    ("x = [e.data for e in evidence]", True),
    ("getattr(ev, 'data')", True),
    ("ev.model_dump()['data']", True),
    ("report.get('data')", True),
    ("data.endpoints", False),  # AuditData named `data`: not a member named data
    ("ctx.evidence.add('p', t, True, 's', data={'k': 1})", False),  # writing evidence is allowed
    ("ev.summary", False),
])
def test_the_detector(code: str, flagged: bool) -> None:
    assert bool(data_reads(code)) is flagged


def test_the_import_detector() -> None:
    src = "from dcsaudit.probes.tls import profiles\nfrom dcsaudit import probes\nfrom ..probes import x\nimport dcsaudit.models\n"
    mods = [m for _, m in imported_modules(src, "dcsaudit.annex.t")]
    assert [m for m in mods if _forbidden(m)] == ["dcsaudit.probes.tls", "dcsaudit.probes.tls.profiles",
                                                  "dcsaudit.probes", "dcsaudit.probes", "dcsaudit.probes.x"]
