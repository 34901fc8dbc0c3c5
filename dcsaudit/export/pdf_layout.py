"""annex.pdf laid out directly with fpdf2, without an HTML layout engine: the content of annex.html, made
for paper, in about a second for the demo's 55 pages (issue 14 allows 2 s for all the demo's documents).

Printing annex.html through WeasyPrint took ~12 s of CPU for the same pages (docs/benchmarks.md,
"Export"): general inline and table layout is what costs. This writer lays out only what the annex needs: tables with column widths
chosen once per table, greedy word wrap with cached glyph widths, one ``text()`` call per run of one
style on a line. The contents list takes ONE pass: its entry count is known before the body is laid
out (one line per entry, titles cut to one line), so its pages are reserved up front and filled with
page numbers at the end (fpdf2's ``insert_toc_placeholder``).

What paper needs and the browser page did not: a cover with the run's metadata, contents with titles
and page numbers, PDF bookmarks for the Annex N outline, header rows repeated on every page a table
runs onto, evidence data expanded on a full-width row under its item, evidence ids kept whole (an id is
one unbreakable token), "Page N of M". Report text is never interpreted (no markdown, no markup): a
hostile banner is drawn as the characters it is; control characters and characters the font lacks are
drawn as U+FFFD.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import TTFFont
from fpdf.outline import OutlineSection

from dcsaudit.export.marks import PROVENANCE_MARK, PROVENANCE_TEXT
from dcsaudit.export.remediation import by_severity, remediation
from dcsaudit.models.core import AnnexTable, Cell, Provenance
from dcsaudit.models.report import Report

# -- page geometry (mm) and type (pt): A4, small type so that wide annex tables fit -------------------------
PT = 25.4 / 72  # mm per point
PAGE_W, PAGE_H = 210.0, 297.0
LEFT = RIGHT = 13.0
TOP = BOTTOM = 16.0
BODY_W = PAGE_W - LEFT - RIGHT
BODY_BOTTOM = PAGE_H - BOTTOM
LEADING = 1.25  # line height / font size
PAD_X, PAD_Y = 1.1, 0.7  # cell padding (mm)

Colour = tuple[int, int, int]
INK: Colour = (0x1D, 0x1D, 0x1F)
GREY: Colour = (0x55, 0x55, 0x55)
DATA_GREY: Colour = (0x44, 0x44, 0x44)
NAVY: Colour = (0x13, 0x29, 0x4B)
LINK: Colour = (0x35, 0x52, 0x8A)
BORDER: Colour = (0xD0, 0xD4, 0xDA)
HEAD_FILL: Colour = (0xE8, 0xEC, 0xF2)
LABEL_FILL: Colour = (0xF4, 0xF6, 0xF9)
CONTRA_FILL: Colour = (0xFD, 0xEC, 0xEA)
BAD: Colour = (0xB3, 0x26, 0x1E)
MARK_COLOUR: dict[str, Colour] = {
    "verified": (0x1B, 0x7F, 0x3B), "contradicted": BAD, "declared": (0x8A, 0x5A, 0x00),
    "not_verifiable": (0x6B, 0x6B, 0x6B), "not_observed": (0x4A, 0x5B, 0xBF),
}

# DejaVu: it holds ✔ ✘ ∅ and the letters of most scripts a banner or AE title may carry.
FONT_FILES = {"R": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf",
              "M": "DejaVuSansMono.ttf"}
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF",
             "/usr/local/share/fonts", "/usr/share/fonts/truetype")
FAMILY = {"R": ("dv", ""), "B": ("dv", "B"), "I": ("dv", "I"), "M": ("dvm", "")}


def font_dir() -> Path:
    """Where the DejaVu faces are ($DCSAUDIT_FONT_DIR first); Debian: fonts-dejavu-core."""
    candidates = [os.environ.get("DCSAUDIT_FONT_DIR", ""), *FONT_DIRS]
    for d in candidates:
        if d and all((Path(d) / f).is_file() for f in FONT_FILES.values()):
            return Path(d)
    raise RuntimeError("annex.pdf needs the DejaVu fonts (Debian: fonts-dejavu-core); "
                       "set DCSAUDIT_FONT_DIR to the directory holding DejaVuSans.ttf")


@dataclass(frozen=True, slots=True)
class Style:
    font: str  # a key of FONT_FILES
    size: float  # pt
    colour: Colour = INK


BODY = Style("R", 8.5)
TABLE = Style("R", 7.5)
TABLE_B = Style("B", 7.5)
NOTE = Style("I", 7.0, GREY)
EV = Style("R", 6.5, LINK)
DATA = Style("M", 6.0, DATA_GREY)


@dataclass(slots=True)
class Frag:
    x: float  # from the line's left edge (mm)
    w: float
    style: Style
    text: str


Target = int | str  # an fpdf2 link id, or "#name" for a named destination (set later: forward links)


@dataclass(slots=True)
class Line:
    h: float
    size: float  # largest font size on the line (pt): places the baseline
    frags: list[Frag]
    links: list[tuple[float, float, Target]] | None = None  # x, width, target (over merged text)


@dataclass(slots=True)
class Piece:
    """A run of one style in a paragraph; ``atomic`` pieces are never broken (evidence ids)."""

    style: Style
    text: str
    link: Target | None = None
    atomic: bool = False


@dataclass(slots=True)
class Box:
    """One table cell: its x, width, fill and wrapped lines."""

    x: float
    w: float
    lines: list[Line]
    fill: Colour | None = None
    indent: float = 0.0  # of the text inside the cell (evidence data sits under the Observation)

    @property
    def h(self) -> float:
        return sum(line.h for line in self.lines) + 2 * PAD_Y


@dataclass(slots=True)
class Row:
    boxes: list[Box]
    anchor: str | None = None  # a named destination set where the row is drawn (an evidence item)
    joined: bool = False  # continues the row above (evidence data): no top border

    @property
    def h(self) -> float:
        return max(b.h for b in self.boxes)


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_TOKEN = re.compile(r"\S+\s*|\s+")


class Writer(FPDF):
    """fpdf2 with the annex's fonts, footer and a small flow/table layout of its own."""

    def __init__(self, deployment: str = "") -> None:
        """Parses the four DejaVu faces (~0.3 s): the PDF worker makes its Writer before the report comes."""
        super().__init__(orientation="P", unit="mm", format="A4")
        self.deployment = deployment
        self.set_margins(LEFT, TOP, RIGHT)
        self.set_auto_page_break(False)  # this writer breaks pages itself (rows, headings)
        self.set_compression(True)
        d = font_dir()
        for key, name in FONT_FILES.items():
            family, style = FAMILY[key]
            self.add_font(family, style, str(d / name))
        self.widths: dict[str, dict[int, float]] = {}
        self.defaults: dict[str, float] = {}
        self.cmaps: dict[str, frozenset[int]] = {}
        for key in FONT_FILES:
            family, style = FAMILY[key]
            font = self.fonts[family + style]
            assert isinstance(font, TTFFont)
            self.widths[key] = {int(c): float(w) for c, w in font.cw.items()}  # units of 1/1000 em
            self.defaults[key] = float(font.desc.missing_width or 600)
            self.cmaps[key] = frozenset(font.cmap)
        self.word_cache: dict[tuple[str, str], float] = {}
        self.cur: tuple[str, float] | None = None
        self.cur_colour: Colour | None = None
        self.y0 = TOP
        self.evidence_links: dict[str, str] = {}  # id -> "#name" (forward links: named)
        self.toc: list[tuple[int, str, int, int]] = []  # level, title, page, link
        self.toc_pages = 1

    # -- page furniture ------------------------------------------------------------------------------
    def footers(self) -> None:
        """"Page N of M" and the deployment on every page but the cover, drawn once M is known (fpdf2's
        {nb} alias is only replaced in cell()/multi_cell() text, not in text())."""
        last = self.page
        total = self.pages_count
        style = Style("R", 8.0, GREY)
        name = self.clip(self.clean(self.deployment, "R"), style, BODY_W - 40.0)
        for n in range(2, total + 1):
            self.page = n
            self.current_font_is_set_on_page = False
            self.cur, self.cur_colour = None, None
            self._use(style)
            y = PAGE_H - 9.0
            self.text(LEFT, y, name)
            label = f"Page {n} of {total}"
            self.text(PAGE_W - RIGHT - self.width(label, "R", 8.0), y, label)
        self.page = last
        self.current_font_is_set_on_page = False
        self.cur, self.cur_colour = None, None

    def new_page(self) -> None:
        self.add_page()
        self.cur, self.cur_colour = None, None
        self.y0 = TOP

    # -- text ---------------------------------------------------------------------------------------
    def clean(self, text: str, font: str) -> str:
        """Text as it is drawn: control characters (and glyphs the face lacks) become U+FFFD."""
        text = _CONTROL.sub("\ufffd", text.replace("\t", " "))
        if text.isascii():
            return text
        cmap = self.cmaps[font]
        return "".join(c if c == "\n" or ord(c) in cmap else "\ufffd" for c in text)

    def width(self, text: str, font: str, size: float) -> float:
        key = (font, text)
        units = self.word_cache.get(key)
        if units is None:
            cw, default = self.widths[font], self.defaults[font]
            units = sum(cw.get(ord(c), default) for c in text)
            if len(text) < 40:
                self.word_cache[key] = units
        return units * size * PT / 1000

    def clip(self, text: str, style: Style, w: float) -> str:
        """``text`` cut (with an ellipsis) to fit ``w`` mm on one line."""
        if self.width(text, style.font, style.size) <= w:
            return text
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.width(text[:mid] + "…", style.font, style.size) <= w:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo].rstrip() + "…"

    def wrap(self, pieces: Iterable[Piece], w: float) -> list[Line]:
        """Greedy word wrap of styled pieces into lines at most ``w`` mm wide. Over-long words are cut
        anywhere (like CSS overflow-wrap: anywhere); atomic pieces move to the next line whole."""
        lines: list[Line] = []
        frags: list[Frag] = []
        links: list[tuple[float, float, Target]] = []
        x = 0.0

        def flush() -> None:
            nonlocal frags, links, x
            size = max((f.style.size for f in frags), default=TABLE.size)
            lines.append(Line(size * LEADING * PT, size, frags, links or None))
            frags, links, x = [], [], 0.0

        def put(style: Style, text: str, tw: float, link: Target | None) -> None:
            # one text() per run of a style on a line; links are rectangles over parts of it
            nonlocal x
            if link is not None:
                links.append((x, tw, link))
            last = frags[-1] if frags else None
            if last is not None and last.style == style:
                last.text += text
                last.w += tw
            else:
                frags.append(Frag(x, tw, style, text))
            x += tw

        for p in pieces:
            font, size = p.style.font, p.style.size
            text = self.clean(p.text, font)
            for part_no, part in enumerate(text.split("\n")):
                if part_no:
                    flush()
                for tok in ([part] if p.atomic else _TOKEN.findall(part)):
                    word = tok.rstrip()
                    ww = self.width(word, font, size)
                    if x > 0 and x + ww > w:
                        flush()
                        tok = tok.lstrip()
                        if not tok:
                            continue
                    if ww > w and not p.atomic:  # cut a long word (a JSON line, a certificate digest)
                        cw, default, k = self.widths[font], self.defaults[font], size * PT / 1000
                        start, seg = 0, 0.0  # one pass, widths summed as it goes (linear in the word)
                        for i, c in enumerate(word):
                            cwid = cw.get(ord(c), default) * k
                            if x + seg + cwid > w and i > start:
                                put(p.style, word[start:i], seg, None)
                                flush()
                                start, seg = i, 0.0
                            seg += cwid
                        rest = tok[start:]
                        put(p.style, rest, self.width(rest, font, size), p.link)
                        continue
                    put(p.style, tok, self.width(tok, font, size), p.link)
        if frags or not lines:
            flush()
        return lines

    def _use(self, style: Style) -> None:
        if self.cur != (style.font, style.size):
            family, emphasis = FAMILY[style.font]
            self.set_font(family, emphasis, style.size)
            self.cur = (style.font, style.size)
        if self.cur_colour != style.colour:
            self.set_text_color(*style.colour)
            self.cur_colour = style.colour

    def draw_lines(self, lines: Sequence[Line], x: float, y: float) -> float:
        for line in lines:
            base = y + (line.h - line.size * PT) / 2 + line.size * PT * 0.8
            for f in line.frags:
                if f.text.strip():
                    self._use(f.style)
                    self.text(x + f.x, base, f.text.rstrip())
            for lx, lw, target in line.links or ():
                self.link(x + lx, y, lw, line.h, target)
            y += line.h
        return y

    # -- flow ---------------------------------------------------------------------------------------
    def need(self, h: float) -> None:
        """A new page unless ``h`` mm fit below the current position."""
        if self.y0 + h > BODY_BOTTOM and self.y0 > TOP + 0.1:
            self.new_page()

    def para(self, pieces: Sequence[Piece], before: float = 0.0, after: float = 1.0, indent: float = 0.0,
             keep: float = 0.0) -> None:
        lines = self.wrap(pieces, BODY_W - indent)
        self.y0 += before if self.y0 > TOP + 0.1 else 0.0
        self.need(min(sum(line.h for line in lines) + keep, BODY_BOTTOM - TOP))
        for line in lines:
            if self.y0 + line.h > BODY_BOTTOM:
                self.new_page()
            self.y0 = self.draw_lines([line], LEFT + indent, self.y0)
        self.y0 += after

    def heading(self, text: str, level: int, outline_level: int | None = None) -> None:
        size = {1: 16.0, 2: 13.0, 3: 11.0}.get(level, 9.5)
        style = Style("B", size, NAVY if level <= 2 else INK)
        lines = self.wrap([Piece(style, text)], BODY_W)
        h = sum(line.h for line in lines)
        self.y0 += (6.0 if level <= 2 else 3.5) if self.y0 > TOP + 0.1 else 0.0
        self.need(h + 14.0)  # with a few lines of what follows (break-after: avoid)
        self.set_y(self.y0)
        link = self.add_link(y=self.y0, page=self.page)
        if outline_level is not None:
            self.start_section(self.clean(text, "R"), level=outline_level, strict=False)
            self.toc.append((outline_level, text, self.page, link))
        self.y0 = self.draw_lines(lines, LEFT, self.y0)
        if level <= 2:
            self.set_draw_color(*NAVY)
            self.set_line_width(0.5)
            self.line(LEFT, self.y0 + 0.4, LEFT + BODY_W, self.y0 + 0.4)
            self.y0 += 1.2
        self.y0 += 1.5

    # -- tables -------------------------------------------------------------------------------------
    def draw_row(self, row: Row, y: float, h: float) -> None:
        self.set_draw_color(*BORDER)
        self.set_line_width(0.2)
        for b in row.boxes:
            if b.fill is not None:
                self.set_fill_color(*b.fill)
                self.rect(b.x, y, b.w, h, style="F")
            # borders as lines: a joined row (evidence data) has no rule above it
            if not row.joined:
                self.line(b.x, y, b.x + b.w, y)
            self.line(b.x, y + h, b.x + b.w, y + h)
        for x in {b.x for b in row.boxes} | {b.x + b.w for b in row.boxes}:
            self.line(x, y, x, y + h)
        for b in row.boxes:
            self.draw_lines(b.lines, b.x + b.indent + PAD_X, y + PAD_Y)

    def draw_table(self, header: Row, rows: Sequence[Row]) -> None:
        hh = header.h
        self.need(hh + self.lead(header, rows))
        self.draw_row(header, self.y0, hh)
        self.y0 += hh
        room = BODY_BOTTOM - TOP - hh
        for i, row in enumerate(rows):
            h = row.h
            following = rows[i + 1] if i + 1 < len(rows) else None
            # an item keeps the start of its evidence data (the joined row under it) on its page
            keep = min(following.h, 12.0) if following is not None and following.joined else 0.0
            if self.y0 + h + keep > BODY_BOTTOM and h + keep <= room:
                self.new_page()
                self.draw_row(header, self.y0, hh)
                self.y0 += hh
            if row.anchor is not None:
                self.set_link(name=row.anchor[1:], y=self.y0, page=self.page)
            if self.y0 + h <= BODY_BOTTOM:
                self.draw_row(row, self.y0, h)
                self.y0 += h
                continue
            self._split_row(row, header)

    def _split_row(self, row: Row, header: Row) -> None:
        """A row taller than a page (a long evidence item): as many lines as fit, the rest overleaf."""
        left = [list(b.lines) for b in row.boxes]
        for _ in range(sum(len(x) for x in left) + 2):  # each round draws at least one line
            avail = BODY_BOTTOM - self.y0 - 2 * PAD_Y
            parts: list[list[Line]] = []
            for lines in left:
                taken, used = 0, 0.0
                while taken < len(lines) and used + lines[taken].h <= avail:
                    used += lines[taken].h
                    taken += 1
                parts.append(lines[:taken])
                del lines[:taken]
            if not any(parts):
                self.new_page()
                self.draw_row(header, self.y0, header.h)
                self.y0 += header.h
                continue
            part = Row([Box(b.x, b.w, p, b.fill, b.indent) for b, p in zip(row.boxes, parts, strict=True)],
                       joined=row.joined)
            h = part.h
            self.draw_row(part, self.y0, h)
            self.y0 += h
            if not any(left):
                return
            self.new_page()
            self.draw_row(header, self.y0, header.h)
            self.y0 += header.h
            row = Row(row.boxes, joined=True)

    def lead(self, header: Row, rows: Sequence[Row]) -> float:
        """How much of the first row must fit under the header (no header alone at a page's foot): all
        of it when it fits on a page, else 20 mm (it is split)."""
        first = rows[0].h if rows else 0.0
        return first if first <= BODY_BOTTOM - TOP - header.h - 20.0 else 20.0

    def make_row(self, cells: Sequence[Sequence[Piece]], widths: Sequence[float],
                 fills: Sequence[Colour | None] | None = None, x0: float = LEFT) -> Row:
        boxes, x = [], x0
        for i, (pieces, w) in enumerate(zip(cells, widths, strict=True)):
            boxes.append(Box(x, w, self.wrap(pieces, w - 2 * PAD_X), fills[i] if fills else None))
            x += w
        return Row(boxes)

    def header_row(self, columns: Sequence[str], widths: Sequence[float]) -> Row:
        return self.make_row([[Piece(TABLE_B, c)] for c in columns], widths, [HEAD_FILL] * len(columns))

    def ev_pieces(self, ids: Sequence[str]) -> list[Piece]:
        out: list[Piece] = []
        for e in ids:
            out.append(Piece(EV, e, self.evidence_links.get(e), atomic=True))
            out.append(Piece(EV, " "))
        return out


# -- column widths --------------------------------------------------------------------------------------
def auto_widths(pdf: Writer, columns: Sequence[str], rows: Sequence[Sequence[Sequence[Piece]]],
                total: float = BODY_W) -> list[float]:
    """Column widths as an HTML auto table would roughly choose them: each column between its longest
    word (capped) and its longest unbroken content, the surplus shared in proportion."""
    n = len(columns)
    longest = [0.0] * n
    natural = [0.0] * n
    for cells in [[[Piece(TABLE_B, c)] for c in columns], *rows]:
        for i, pieces in enumerate(cells[:n]):
            line = 0.0  # the widest hard line of the cell (value, notes); evidence ids wrap under it
            for p in pieces:
                font, size = p.style.font, p.style.size
                if p.atomic:
                    longest[i] = max(longest[i], pdf.width(p.text, font, size))
                    continue
                if p.style is EV:
                    continue
                for k, part in enumerate(p.text.split("\n")):
                    if k:
                        natural[i], line = max(natural[i], line), 0.0
                    line += pdf.width(part, font, size)
                    for word in part.split():
                        longest[i] = max(longest[i], min(pdf.width(word, font, size), 30.0))
            natural[i] = max(natural[i], line)
    pad = 2 * PAD_X + 0.5
    lo = [max(w + pad, 10.0) for w in longest]
    hi = [max(w + pad, lo[i]) for i, w in enumerate(natural)]
    if sum(hi) <= total:
        return [w * total / sum(hi) for w in hi]
    if sum(lo) >= total:
        return [w * total / sum(lo) for w in lo]
    spare = total - sum(lo)
    extra = [h - low for h, low in zip(hi, lo, strict=True)]
    return [low + spare * e / sum(extra) for low, e in zip(lo, extra, strict=True)]


def fixed_widths(fractions: Sequence[float], total: float = BODY_W) -> list[float]:
    return [f * total / sum(fractions) for f in fractions]


# -- content --------------------------------------------------------------------------------------------
def caption(table: AnnexTable) -> str:
    return f"Table {table.id}. {table.title}" if table.numbered else table.title


def cell_pieces(pdf: Writer, cell: Cell) -> list[Piece]:
    if cell.provenance == Provenance.LABEL:
        return [Piece(TABLE, cell.value)]
    p = cell.provenance.value
    out = [Piece(Style("B", TABLE.size, MARK_COLOUR[p]), PROVENANCE_MARK[p] + " "), Piece(TABLE, cell.value)]
    if cell.provenance == Provenance.CONTRADICTED:
        out.append(Piece(NOTE, f"\ndeclared: {cell.declared} · observed: {cell.observed}"))
    if cell.note:
        out.append(Piece(NOTE, "\n" + cell.note))
    if cell.evidence:
        out.append(Piece(EV, "\n"))
        out += pdf.ev_pieces(cell.evidence)
    return out


def cell_fill(cell: Cell) -> Colour | None:
    if cell.provenance == Provenance.LABEL:
        return LABEL_FILL
    return CONTRA_FILL if cell.provenance == Provenance.CONTRADICTED else None


def _cover(pdf: Writer, report: Report) -> None:
    run = report.run
    fails = sum(1 for f in report.findings if f.status in ("fail", "error"))
    pdf.y0 = 60.0
    title = Style("B", 20.0, NAVY)
    pdf.para([Piece(title, f"{report.deployment} — DICOM Conformance Statement, security sections")], after=6.0)
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
    key_style, value_style = Style("B", 10.0), Style("R", 10.0)
    for k, v in rows:
        value = pdf.wrap([Piece(value_style, v)], BODY_W - 40.0)
        pdf.draw_lines(pdf.wrap([Piece(key_style, k)], 38.0), LEFT, pdf.y0)
        pdf.y0 = pdf.draw_lines(value, LEFT + 40.0, pdf.y0) + 1.5


TOC_LINE = 8.0 * LEADING * PT + 0.35
TOC_HEAD = 13.0 * LEADING * PT + 4.0


def _toc_pages(entries: int) -> int:
    per_page = int((BODY_BOTTOM - TOP) // TOC_LINE)
    first = int((BODY_BOTTOM - TOP - TOC_HEAD) // TOC_LINE)
    return 1 if entries <= first else 1 + math.ceil((entries - first) / per_page)


def _render_toc(pdf: FPDF, _outline: list[OutlineSection]) -> None:
    """The contents, filled in after the body: one line per entry (so its page count is known up front)."""
    assert isinstance(pdf, Writer)
    pdf.cur, pdf.cur_colour = None, None
    pdf.y0 = TOP
    start = pdf.page
    pdf.heading("Contents", 2)
    pdf.y0 = TOP + TOC_HEAD  # exactly as _toc_pages counts
    for level, title, page, link in pdf.toc:
        if pdf.y0 + TOC_LINE > BODY_BOTTOM:
            pdf.add_page()  # moves to the next reserved page
            pdf.cur, pdf.cur_colour = None, None
            pdf.y0 = TOP
        style = Style("B" if level == 0 else "R", 8.0)
        indent = min(level, 3) * 5.0
        number = str(page)
        nw = pdf.width(number, "R", 8.0)
        text = pdf.clip(pdf.clean(title, style.font), style, BODY_W - indent - nw - 8.0)
        tw = pdf.width(text, style.font, 8.0)
        dots_w = BODY_W - indent - tw - nw - 2.0
        dot = pdf.width(" .", "R", 8.0)
        dots = " ." * max(int(dots_w / dot), 0)
        line = Line(TOC_LINE, 8.0, [
            Frag(indent, tw, style, text),
            Frag(BODY_W - nw - pdf.width(dots, "R", 8.0) - 1.0, 0.0, Style("R", 8.0, GREY), dots),
            Frag(BODY_W - nw, nw, Style("R", 8.0), number),
        ])
        pdf.draw_lines([line], LEFT, pdf.y0)
        pdf.link(LEFT, pdf.y0, BODY_W, TOC_LINE, link)
        pdf.y0 += TOC_LINE
    while pdf.page < start + pdf.toc_pages - 1:  # fpdf2 wants every reserved page used
        pdf.add_page()


def outline_levels(ids: Sequence[str]) -> list[int]:
    """Bookmark levels without gaps (a PDF outline item's parent is the last item one level up): a
    section is one level below its nearest listed ancestor ("N.6.2" for "N.6.2.1"), top level when none
    of its ancestors is listed (the outline starts at N.6.1: there is no N.6 section)."""
    stack: list[tuple[str, int]] = []
    levels = []
    for sid in ids:
        while stack and not sid.startswith(stack[-1][0] + "."):
            stack.pop()
        level = stack[-1][1] + 1 if stack else 0
        stack.append((sid, level))
        levels.append(level)
    return levels


def _annex(pdf: Writer, report: Report) -> None:
    levels = outline_levels([s.id for s in report.annex.sections])
    for s, level in zip(report.annex.sections, levels, strict=True):
        pdf.heading(f"{s.id} {s.title}", min(s.id.count(".") + 1, 6), outline_level=level)
        for line in s.text:
            pdf.para([Piece(NOTE, line)], after=1.0)
        for t in s.tables:
            cap = [Piece(Style("B", 8.5), caption(t))]
            if not t.rows:  # one line: caption — reason (as the print page does)
                cap.append(Piece(Style("I", 8.5, GREY), f" — No rows: {t.empty_reason or 'nothing observed'}."))
                pdf.para(cap, before=1.0, after=1.5)
                for n in t.notes:
                    pdf.para([Piece(NOTE, n)], after=1.0)
                continue
            cells = [[cell_pieces(pdf, c) for c in row] for row in t.rows]
            widths = auto_widths(pdf, t.columns, cells)
            header = pdf.header_row(t.columns, widths)
            rows = []
            for row, pieces in zip(t.rows, cells, strict=True):
                padded = list(pieces) + [[] for _ in range(len(t.columns) - len(pieces))]
                fills = [cell_fill(c) for c in row] + [None] * (len(t.columns) - len(row))
                rows.append(pdf.make_row(padded[:len(t.columns)], widths, fills[:len(t.columns)]))
            pdf.para(cap, before=1.0, after=1.0, keep=header.h + pdf.lead(header, rows))
            pdf.draw_table(header, rows)
            pdf.y0 += 1.5
            for n in t.notes:
                pdf.para([Piece(NOTE, n)], after=1.0)


def _failed(pdf: Writer, report: Report) -> None:
    failing = by_severity([f.model_dump(mode="json") for f in report.findings if f.status in ("fail", "error")])
    if not failing:
        return
    pdf.heading("Failed checks", 2, outline_level=0)
    texts = remediation()
    widths = fixed_widths([18, 7, 8, 12, 23, 23, 9])
    header = pdf.header_row(["Check", "Status", "Severity", "Target", "Summary", "Remediation", "Evidence"], widths)
    rows = []
    for f in failing:
        remedy = texts.get(f["check_id"])
        rem = [Piece(TABLE, remedy["text"]), Piece(NOTE, "\n" + "; ".join(remedy["references"]))] if remedy else []
        status = Style("B", TABLE.size, BAD)
        rows.append(pdf.make_row([
            [Piece(TABLE, f["check_id"])], [Piece(status, f["status"] + (" · gating" if f["gating"] else ""))],
            [Piece(TABLE, f["severity"])], [Piece(TABLE, f["target"])], [Piece(TABLE, f["summary"])], rem,
            pdf.ev_pieces(f["evidence"])], widths))
    pdf.draw_table(header, rows)


def _findings(pdf: Writer, report: Report) -> None:
    pdf.heading("All findings", 2, outline_level=0)
    widths = fixed_widths([20, 8, 8, 14, 33, 17])
    header = pdf.header_row(["Check", "Status", "Severity", "Target", "Summary", "References"], widths)
    colour = {"fail": BAD, "error": BAD, "pass": MARK_COLOUR["verified"]}
    rows = [pdf.make_row([
        [Piece(TABLE, f.check_id), Piece(NOTE, "\n" + f.title)],
        [Piece(Style("B", TABLE.size, colour.get(f.status, INK)), f.status + (" · gating" if f.gating else ""))],
        [Piece(TABLE, f.severity)], [Piece(TABLE, f.target)], [Piece(TABLE, f.summary)],
        [Piece(EV, "; ".join(f.references))]], widths) for f in report.findings]
    pdf.draw_table(header, rows)


def _evidence(pdf: Writer, report: Report) -> None:
    pdf.heading("Evidence", 2, outline_level=0)
    widths = fixed_widths([8, 21, 18, 4, 10, 33, 6])
    header = pdf.header_row(["Id", "Probe", "Target", "OK", "Reason", "Observation", "ms"], widths)
    rows: list[Row] = []
    indent = BODY_W * 0.10
    for e in report.evidence:
        row = pdf.make_row([
            [Piece(TABLE, e.id, atomic=True)], [Piece(TABLE, e.probe)], [Piece(TABLE, e.target)],
            [Piece(TABLE, "yes" if e.ok else "no")], [Piece(TABLE, e.reason.value if e.reason else "")],
            [Piece(TABLE, e.summary)], [Piece(TABLE, f"{e.duration_ms:.1f}")]], widths)
        row.anchor = pdf.evidence_links.get(e.id)
        rows.append(row)
        if e.data:
            # the <details> of annex.html, open: compact JSON as annex.html holds it, on a full-width row
            data = json.dumps(e.data, sort_keys=True, ensure_ascii=False, default=str)
            box = Box(LEFT, BODY_W, pdf.wrap([Piece(DATA, data)], BODY_W - indent - 2 * PAD_X), indent=indent)
            rows.append(Row([box], joined=True))
    pdf.draw_table(header, rows)


def _legend(pdf: Writer, report: Report) -> None:
    pieces = [Piece(Style("B", 8.5), "Provenance: ")]
    for key, text in PROVENANCE_TEXT.items():
        pieces += [Piece(Style("B", 8.5, MARK_COLOUR[key]), PROVENANCE_MARK[key] + " "), Piece(BODY, text + ";   ")]
    pdf.para(pieces, after=2.0)
    counts: dict[str, int] = {}
    for f in report.findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    open_endpoints = sum(1 for e in report.endpoints if getattr(e, "state", None) == "open")
    summary = (f"{open_endpoints} open endpoints · " +
               " · ".join(f"{counts.get(s, 0)} {s.replace('_', ' ')}" for s in ("fail", "error", "pass",
                                                                                  "not_applicable")))
    pdf.para([Piece(Style("B", 8.5), "Summary: "), Piece(BODY, summary)], after=2.0)


def render_pdf(report: Report, pdf: Writer | None = None) -> bytes:
    """annex.pdf for ``report``: cover, contents, failed checks, the Annex N sections, all findings and
    the evidence with its data."""
    pdf = pdf or Writer()  # one Writer, one document
    pdf.deployment = report.deployment
    pdf.set_title(f"{report.deployment} — DICOM Conformance Statement, security sections")
    pdf.set_creator(f"{report.run.tool} {report.run.tool_version}")
    pdf.evidence_links = {e.id: f"#{e.id}" for e in report.evidence}
    pdf.new_page()
    _cover(pdf, report)
    pdf.new_page()
    has_failed = any(f.status in ("fail", "error") for f in report.findings)
    pdf.toc_pages = _toc_pages(len(report.annex.sections) + 2 + has_failed)  # + findings, evidence
    pdf.insert_toc_placeholder(_render_toc, pages=pdf.toc_pages)
    pdf.cur, pdf.cur_colour, pdf.y0 = None, None, TOP
    _legend(pdf, report)
    _failed(pdf, report)
    _annex(pdf, report)
    _findings(pdf, report)
    _evidence(pdf, report)
    pdf.footers()
    return bytes(pdf.output())
