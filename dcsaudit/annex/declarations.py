"""Vendor declarations: one key format for every table, checked at load, applied to the annex in one place.

A declaration is ``declared[<table id>][<key>] = <value>`` where the key is

- ``"<row label>"`` for the row's main value (the "Default Value" column of configuration tables, the
  "Value" column of N.7-1, or the only value column of a table that has one), or
- ``"<row label> | <column heading>"`` for any other column,

optionally followed by ``" @ <qualifier>"`` (an AE title, a port, or host:port) so that one AE or port
can be declared on its own. Table ids, row labels and column headings are those of the catalog
(``dcsaudit/data/annex_declarable.yaml``); anything else is a config error naming the key and the
closest valid one. ``dcsaudit declarations`` prints every valid key or a commented YAML skeleton.

The table builders never read declarations: :func:`apply` reconciles every cell of the built annex with
the declarations by position (row label, column heading), so the rule "observed beats declared, and a
disagreement is shown, never hidden" lives here and in ``cells``:

- observed and declared agree: verified (the declaration is kept beside it);
- a configuration table's "Default Value" differs from what this site runs: both are shown, and it is a
  contradiction only when the vendor declared the row FIXED (a configurable default says nothing about
  a site's configured value);
- otherwise different: contradicted, showing both;
- only declared: declared (D);
- a declared row the audit did not render: added as a row of declared cells.

Pure: imports models and yaml only (the config loader uses :func:`problems`).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from dcsaudit import packaged_yaml
from dcsaudit.models.core import Annex, AnnexTable, Cell, Provenance

QUALIFIER = " @ "
COLUMN = " | "


@dataclass(frozen=True)
class TableSpec:
    id: str
    title: str
    columns: tuple[str, ...]
    main: str | None  # the column a bare "<row label>" key declares
    rows: tuple[str, ...]
    note: str = ""
    template_cells: tuple[str, ...] = ()  # "<row> | <column>" cells holding the standard's own text


@cache
def catalog() -> dict[str, TableSpec]:
    raw = packaged_yaml.load(resources.files("dcsaudit.data").joinpath("annex_declarable.yaml").read_text("utf-8"))
    out: dict[str, TableSpec] = {}
    for tid, t in raw["tables"].items():
        out[str(tid)] = TableSpec(id=str(tid), title=str(t["title"]), columns=tuple(t["columns"]),
                                  main=t.get("main"), rows=tuple(str(r) for r in t["rows"]), note=str(t.get("note", "")),
                                  template_cells=tuple(t.get("template_cells", ())))
    return out


@dataclass(frozen=True)
class Key:
    row: str
    column: str  # always resolved (the main column for a bare key)
    qualifier: str | None


def parse_key(spec: TableSpec, key: str) -> Key | str:
    """The key's parts, or a message saying what is wrong with it."""
    text, _, qualifier = key.partition(QUALIFIER)
    row, sep, column = text.partition(COLUMN)
    row, column = row.strip(), column.strip()
    if row not in spec.rows:
        near = difflib.get_close_matches(row, spec.rows, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else f"; valid rows: {', '.join(spec.rows)}"
        return f"unknown row label{hint}"
    if not sep:
        if spec.main is None:
            return (f"table {spec.id} has several value columns: write {row + COLUMN + '<column>'!r} with one of "
                    f"{', '.join(c for c in spec.columns[1:])}")
        column = spec.main
    elif column not in spec.columns[1:]:
        near = difflib.get_close_matches(column, spec.columns[1:], n=1, cutoff=0.5)
        hint = f"; did you mean {row + COLUMN + near[0]!r}?" if near else f"; columns: {', '.join(spec.columns[1:])}"
        return f"unknown column heading {column!r}{hint}"
    if f"{row}{COLUMN}{column}" in spec.template_cells:
        return f"the cell {row + COLUMN + column!r} holds the standard's own text, not a declaration"
    return Key(row=row, column=column, qualifier=qualifier.strip() or None)


def problems(declared: dict[str, dict[str, str]]) -> list[str]:
    """Every declaration that matches nothing, one line each, with the closest valid key."""
    out = []
    specs = catalog()
    for tid, rows in declared.items():
        spec = specs.get(tid)
        if spec is None:
            near = difflib.get_close_matches(tid, list(specs), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            out.append(f"{tid}: not a table that takes declarations{hint} (tables: {', '.join(specs)})")
            continue
        for key in rows:
            parsed = parse_key(spec, key)
            if isinstance(parsed, str):
                out.append(f"{tid} {key!r}: {parsed}")
    return out


def valid_keys() -> list[tuple[str, str]]:
    """(table id, key) for every declarable cell, bare keys for main columns."""
    out = []
    for spec in catalog().values():
        for row in spec.rows:
            for col in spec.columns[1:]:
                if f"{row}{COLUMN}{col}" not in spec.template_cells:
                    out.append((spec.id, row if col == spec.main else f"{row}{COLUMN}{col}"))
    return out


def skeleton_yaml() -> str:
    """A commented YAML ``declared:`` section with every key of every declarable table, values empty."""
    lines = ["# Vendor declarations for dcsaudit (PS3.2 2024d Annex N). Fill in what the product does;",
             "# delete what you do not declare. Keys: \"<row label>\" for the row's main value,",
             "# \"<row label> | <column heading>\" for another column; append \" @ <AE title or port>\" to declare",
             "# one AE or port. Observed values are compared with these; see docs/design.md.",
             "declared:"]
    for spec in catalog().values():
        lines.append(f"  {spec.id}:  # Table {spec.id}. {spec.title}" + (f" — {spec.note}" if spec.note else ""))
        for row in spec.rows:
            for col in spec.columns[1:]:
                if f"{row}{COLUMN}{col}" in spec.template_cells:
                    continue
                key = row if col == spec.main else f"{row}{COLUMN}{col}"
                lines.append(f"    # {json.dumps(key, ensure_ascii=False)}: \"\"")  # JSON strings are YAML
    return "\n".join(lines) + "\n"


# -- applying declarations to a built annex ------------------------------------------------------------

_ENDPOINT = re.compile(r"(?P<ae>[^\s@;()]+)@(?P<host>[^\s:;()]+):(?P<port>\d+)")


def _norm(v: str) -> str:
    t = " ".join(v.split()).casefold()
    return {"yes": "y", "no": "n"}.get(t, t)


def _parts(observed: str) -> list[tuple[set[str], str]]:
    """Per-AE parts of a value ("8 (A@h:1); 9 (B@h:2)" or "A@h:1: 8; B@h:2: 9"), each with its names.

    A value that names no AE is one part with no names.
    """
    parts = []
    for piece in observed.split("; "):
        m = re.fullmatch(rf"(?P<v>.*) \((?P<w>{_ENDPOINT.pattern})\)", piece) or \
            re.fullmatch(rf"(?P<w>{_ENDPOINT.pattern}): (?P<v>.*)", piece)
        if m is None:
            return [(set(), observed)]
        names = {m.group("ae"), m.group("port"), f"{m.group('host')}:{m.group('port')}", m.group("w")}
        parts.append((names, m.group("v")))
    return parts


def _names(text: str) -> set[str]:
    names: set[str] = set()
    for m in _ENDPOINT.finditer(text):
        names |= {m.group("ae"), m.group("port"), f"{m.group('host')}:{m.group('port')}"}
    for m in re.finditer(r"\b(?:\d{1,3}(?:\.\d{1,3}){3}|[\w.-]+):(\d{1,5})\b", text):
        names |= {m.group(0), m.group(1)}
    return names


def _row_label(row: list[Cell]) -> str:
    """The row's label without an endpoint suffix: "TLS versions accepted (127.0.0.1:2762)" -> "TLS versions accepted"."""
    label = row[0].value if row else ""
    return re.sub(r"\s*\((?:[^()]*@)?[\w.-]+:\d+\)$", "", label)


def _is_heading(row: list[Cell]) -> bool:
    return bool(row) and all(c.provenance == Provenance.LABEL and not c.value for c in row[1:])


def row_keys(t: AnnexTable) -> list[str | None]:
    """The declaration row key of each rendered row (None for heading rows and template placeholders).

    Rows under a "Remote ..." heading (N.11-5) are keyed "Remote <row>"; an endpoint suffix is dropped.
    """
    out: list[str | None] = []
    prefix = ""
    for row in t.rows:
        if _is_heading(row):
            prefix = "Remote " if row[0].value.startswith("Remote") else ""
            out.append(None)
        elif not row or row[0].value.startswith("["):  # "[List specific ...]": the template's own prompt
            out.append(None)
        else:
            out.append(prefix + _row_label(row))
    return out


def _claims(table: dict[str, str], spec: TableSpec) -> dict[tuple[str, str], list[tuple[str | None, str]]]:
    out: dict[tuple[str, str], list[tuple[str | None, str]]] = {}
    for key, value in table.items():
        parsed = parse_key(spec, key)
        if isinstance(parsed, Key):
            out.setdefault((parsed.row, parsed.column), []).append((parsed.qualifier, str(value)))
    return out


def _declared_cell(claim: str, note: str = "") -> Cell:
    return Cell(value=claim, provenance=Provenance.DECLARED, declared=claim, note=note)


def _reconcile(cell: Cell, claims: list[tuple[str | None, str]], names: set[str], fixed: bool | None,
               is_default: bool) -> Cell:
    """One cell against the declarations that address it (qualified ones for the names it carries first)."""
    if cell.provenance in (Provenance.DECLARED, Provenance.CONTRADICTED) or \
            (cell.provenance == Provenance.LABEL and cell.value):
        return cell
    original = cell
    if cell.provenance == Provenance.LABEL:  # an empty template cell: nothing observed, nothing to say
        cell = Cell(value="", provenance=Provenance.NOT_VERIFIABLE)
    qualified = [(q, v) for q, v in claims if q is not None and q in names]
    general = [(q, v) for q, v in claims if q is None]
    if cell.provenance in (Provenance.NOT_OBSERVED, Provenance.NOT_VERIFIABLE):
        chosen = qualified or general
        if not chosen:  # only declarations for other AEs/ports: this cell stays as built
            return original
        claim = "; ".join(f"{v} ({q})" if q else v for q, v in chosen)
        if cell.provenance == Provenance.NOT_OBSERVED:
            note = f"not observed in this audit: {cell.note}" if cell.note else "not observed in this audit"
        else:
            note = cell.note or "not verifiable from the network"
        return _declared_cell(claim, note=note)
    # Observed: compare per AE/port part where the value names them.
    observed = cell.value
    parts = _parts(observed)
    differing: list[str] = []
    shown: list[str] = []
    for part_names, value in parts:
        # A part that names no AE is about whatever the row, table title or value names.
        want = [v for q, v in qualified if q in (part_names or names)] or [v for _, v in general]
        if not want:
            continue
        shown.extend(want)
        if _norm(want[0]) != _norm(value):
            differing.append(want[0])
    if not shown:
        return cell
    declared = "; ".join(dict.fromkeys(shown))
    if not differing:
        return cell.model_copy(update={"declared": declared})
    if is_default and not fixed:
        note = (f"vendor default: {declared}; this site runs the observed value"
                + (" (the row is declared configurable)" if fixed is False else ""))
        return cell.model_copy(update={"declared": declared, "note": f"{cell.note}; {note}".strip("; ")})
    return cell.model_copy(update={"provenance": Provenance.CONTRADICTED, "declared": declared, "observed": observed})


def _is_fixed(claims: dict[tuple[str, str], list[tuple[str | None, str]]], row: str) -> bool | None:
    got = claims.get((row, "Configurable"))
    if not got:
        return None
    return any(_norm(v) in ("fixed", "n/a") for _, v in got)


def _apply_table(t: AnnexTable, spec: TableSpec, declared: dict[str, str]) -> AnnexTable:
    claims = _claims(declared, spec)
    if not claims:
        return t
    columns = list(t.columns) if t.columns else list(spec.columns)
    rows = [list(r) for r in t.rows]
    seen_rows: set[str] = set()
    for r_i, (label, row) in enumerate(zip(row_keys(t), rows, strict=True)):
        if label is None:
            continue
        seen_rows.add(label)
        names = _names(" ".join([row[0].value if row else "", t.title]))
        fixed = _is_fixed(claims, label)
        for c_i, col in enumerate(columns[1:], start=1):
            if c_i >= len(row) or (label, col) not in claims:
                continue
            cell_names = names | _names(row[c_i].value)
            rows[r_i][c_i] = _reconcile(row[c_i], claims[(label, col)], cell_names, fixed,
                                        is_default=col == "Default Value")
    # Declared rows the audit did not render are shown as declared, in the catalog's order.
    missing = [r for r in spec.rows if r not in seen_rows and any(k[0] == r for k in claims)]
    remote_at = next((i for i, r in enumerate(rows) if r and r[0].value.startswith("Remote") and _is_heading(r)),
                     len(rows))
    for label in missing:
        new = [Cell(value=label, provenance=Provenance.LABEL)]
        for col in columns[1:]:
            got = claims.get((label, col))
            new.append(_declared_cell("; ".join(f"{v} ({q})" if q else v for q, v in got)) if got
                       else Cell(value="", provenance=Provenance.NOT_VERIFIABLE, note="not declared"))
        if label.startswith("Remote"):
            rows.append(new)
        else:  # local rows stay above the "Remote" heading (N.11-5)
            rows.insert(remote_at, new)
            remote_at += 1
    return t.model_copy(update={"columns": columns, "rows": rows, "empty_reason": "" if rows else t.empty_reason})


def apply(annex: Annex, declared: dict[str, dict[str, str]]) -> Annex:
    """The annex with every declaration reconciled against the cell it addresses."""
    if not declared:
        return annex
    specs = catalog()
    sections = []
    for s in annex.sections:
        tables = [(_apply_table(t, specs[t.id], declared[t.id]) if t.id in declared and t.id in specs and t.numbered
                   else t) for t in s.tables]
        sections.append(s.model_copy(update={"tables": tables}))
    return annex.model_copy(update={"sections": sections})
