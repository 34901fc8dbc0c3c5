"""Extract the outline of PS3.2 Annex N sections N.6, N.7, N.8 and N.11 from the standard's text.

Writes ``dcsaudit/data/annex_n_outline.json``: every section heading and table caption, in the
standard's order, as ``{"kind": "section"|"table", "id": ..., "title": ...}``. The annex builder walks
this outline so that every section and table of the template appears in the standard's numbering and
order (PS3.2 Annex N: sections that do not apply are kept and marked). Run it again when the standard
edition changes:

    .venv/bin/python scripts/annex_outline.py ../shared/reference/ps3.2-2024d-conformance.txt

Only headings present in the text are taken; the text drops a few intermediate headings (e.g. N.7.1,
N.8.1), and none is invented for them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# N.11 headings carry their old Annex letter ("N.11.2.5 A.C.2.5 Secure Transport ..."): dropped.
SECTION = re.compile(r"^(N\.(?:6|7|8|11)(?:\.\d+)*)\s+(?:A\.C(?:\.\d+)*\s+)?(\S.*)$")
SECTION_ALONE = re.compile(r"^(N\.(?:6|7|8|11)(?:\.\d+)*)\s*$")  # number on its own line, title on the next
TABLE = re.compile(r"^Table (N\.(?:6|7|8|11)(?:\.\d+)*-\d+)\.\s+(\S.*)$")
START = re.compile(r"^N\.6\.1\s")  # Annex N's own N.6 (earlier parts of PS3.2 have no "N.6.1" line)
STOP = re.compile(r"^N\.12\s")


def extract(text: str) -> list[dict[str, str]]:
    lines = [ln.rstrip() for ln in text.splitlines()]
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    inside = False
    for i, line in enumerate(lines):
        if not inside:
            if START.match(line):
                inside = True
            else:
                continue
        if STOP.match(line):
            break
        kind, m = "table", TABLE.match(line)
        if m is None:
            kind, m = "section", SECTION.match(line)
        if m is not None:
            ident, title = m.group(1), m.group(2).strip()
        elif (alone := SECTION_ALONE.match(line)) and i + 1 < len(lines) and lines[i + 1].strip() not in ("", "|"):
            # A number alone on its line followed by table-cell bars is a Reference cell, not a heading.
            kind, ident, title = "section", alone.group(1), lines[i + 1].strip()
        else:
            continue
        if (kind, ident) in seen:  # a caption is repeated in the prose that introduces it
            continue
        seen.add((kind, ident))
        out.append({"kind": kind, "id": ident, "title": title})
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: annex_outline.py PS3.2-TEXT", file=sys.stderr)
        return 2
    outline = extract(Path(argv[1]).read_text(encoding="utf-8"))
    target = Path(__file__).resolve().parent.parent / "dcsaudit" / "data" / "annex_n_outline.json"
    target.write_text(json.dumps({"standard": "DICOM PS3.2 2024d Annex N", "entries": outline}, indent=1) + "\n",
                      encoding="utf-8")
    print(f"{len(outline)} entries -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
