"""Page layout and rendering for the synthetic datasheet, with exact ground truth for every placed item.

The content (headings, paragraphs with cross-reference mentions, tables, figures, formulas) is laid out by this
module's own line breaker and table engine, so every block's page and bbox — and every mention's bbox — is known
exactly. Rendering writes the PDF with PyMuPDF: text through `TextWriter` with the built-in Nimbus (Helvetica)
fonts, rules and fills as vector paths, schematics as embedded vector PDF, plots as PNG, and OCR pages as one
scanned-looking image with no text layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pymupdf

from samples._ds_art import Art

PAGE_W, PAGE_H = 612.0, 792.0
MARGIN_X, TOP, BOTTOM = 54.0, 72.0, 738.0
COL_GAP = 18.0

FONTS = {"r": "helv", "b": "hebo", "i": "tiit"}
_FONT_OBJ: dict[str, pymupdf.Font] = {}


def font(key: str) -> pymupdf.Font:
    """The PyMuPDF font for a style key (r = regular, b = bold, i = italic serif)."""
    if key not in _FONT_OBJ:
        _FONT_OBJ[key] = pymupdf.Font(FONTS[key])
    return _FONT_OBJ[key]


_ADVANCE: dict[str, dict[str, float]] = {}


def text_width(s: str, key: str, size: float) -> float:
    """Width of a string in points: the sum of glyph advances, as PyMuPDF's `text_length` (no kerning), cached."""
    adv = _ADVANCE.setdefault(key, {})
    total = 0.0
    for ch in s:
        a = adv.get(ch)
        if a is None:
            a = adv[ch] = font(key).glyph_advance(ord(ch))
        total += a
    return total * size


def line_box(x: float, baseline: float, s: str, key: str, size: float) -> tuple[float, float, float, float]:
    """The bbox PyMuPDF reports for a span: font ascender above the baseline, descender below."""
    f = font(key)
    return (x, baseline - f.ascender * size, x + text_width(s, key, size), baseline - f.descender * size)


# ---------------------------------------------------------------- content model


@dataclass
class Ref:
    """An in-text mention of other content; `targets` are content elements (for pages: the element cited)."""

    kind: str  # table | figure | section | equation | page
    targets: list[Any]
    style: str
    external: bool = False


@dataclass
class Heading:
    level: int
    number: str
    title: str
    numbered: bool = True

    @property
    def text(self) -> str:
        return f"{self.number} {self.title}" if self.numbered else self.title


@dataclass
class Para:
    pieces: list[str | Ref]
    kind: str = "paragraph"  # or list_item
    implicit: Any = None  # element discussed without being named
    size: float = 9.0
    toc: bool = False


@dataclass
class CellSpec:
    text: str
    row_span: int = 1
    col_span: int = 1
    align: str = "l"


@dataclass
class TableEl:
    number: int
    title: str
    rows: list[list[CellSpec]]  # HTML-like rows; spans occupy later slots
    n_header: int
    style: str  # grid | rules | none
    col_weights: list[float] | None = None
    continued_caption: bool = True
    width_frac: float = 1.0

    @property
    def label(self) -> str:
        return f"Table {self.number}"


@dataclass
class FigureEl:
    label: str
    title: str
    art: Art
    max_w: float = 470.0
    max_h: float = 260.0
    caption_extra: list[str | Ref] = field(default_factory=list)  # mentions inside the caption

    @property
    def kind(self) -> str:
        return self.art.kind


@dataclass
class FigureRow:
    figures: list[FigureEl]


@dataclass
class Formula:
    number: int
    expr: str

    @property
    def label(self) -> str:
        return f"Equation {self.number}"


@dataclass
class TocEl:
    headings: list[Heading]


@dataclass
class PageBreak:
    pass


@dataclass
class Mode:
    """Switches layout mode at a page break: columns (1 or 2) and whether pages are scanned (OCR)."""

    columns: int = 1
    ocr: bool = False


# ---------------------------------------------------------------- layout results


@dataclass
class Placed:
    """One block as placed on a page (becomes a ground-truth block)."""

    kind: str
    page: int
    bbox: tuple[float, float, float, float]
    text: str = ""
    level: int | None = None
    label: str | None = None
    element: Any = None
    cells: list[dict[str, Any]] | None = None
    n_rows: int = 0
    n_cols: int = 0
    part: int = 0  # split tables: 0 = first part
    caption_of: Any = None  # captions: the element they name
    caption_part: int = 0
    mentions: list[dict[str, Any]] = field(default_factory=list)
    ocr: bool = False
    toc: bool = False
    style: str = ""


@dataclass
class PageOut:
    number: int
    ocr: bool = False
    columns: int = 1
    blocks: list[Placed] = field(default_factory=list)
    ops: list[tuple[Any, ...]] = field(default_factory=list)


# ---------------------------------------------------------------- formatting of mentions


def format_ref(ref: Ref, page_of: dict[int, int]) -> str:
    """The mention text for a reference (`page_of` maps id(element) → page from the previous layout pass)."""
    t, s = ref.targets, ref.style
    if ref.kind == "table":
        nums = [str(x.number) for x in t] if not ref.external else [str(x) for x in t]
        return _multi("Table", "Tables", "Tab.", nums, s)
    if ref.kind == "figure":
        nums = [x.label.split(" ", 1)[1] for x in t]
        return _multi("Figure", "Figures", "Fig.", nums, s, short_plural="Figs.")
    if ref.kind == "section":
        nums = [x.number for x in t]
    elif ref.kind == "equation":
        nums = [str(x.number) for x in t]
    elif ref.kind == "page":
        nums = [str(page_of.get(id(x), 999)) for x in t]  # 999 until a layout pass has placed the target
    else:
        raise ValueError(f"unknown reference kind {ref.kind}")
    styles = _STYLES[ref.kind]
    return styles.get(s, styles["default"]).format(*nums)


_STYLES = {
    "section": {
        "chapter": "Chapter {0}",
        "§": "§{0}",
        "§ ": "§ {0}",
        "and": "Sections {0} and {1}",
        "default": "Section {0}",
    },
    "equation": {
        "plain": "Equation {0}",
        "eq": "Eq. ({0})",
        "and": "Equations ({0}) and ({1})",
        "eqs": "Eqs. ({0}) and ({1})",
        "default": "Equation ({0})",
    },
    "page": {"p.": "p. {0}", "and": "pages {0} and {1}", "Page": "Page {0}", "default": "page {0}"},
}


_LABEL_STYLES = {
    "short": "{short} {0}",
    "and": "{plural} {0} and {1}",
    "short_and": "{short_plural} {0} and {1}",
    "range": "{plural} {0}\u2013{last}",
    "through": "{plural} {0} through {last}",
    "list": "{plural} {init}, and {last}",
}


def _multi(word: str, plural: str, short: str, nums: list[str], style: str, short_plural: str = "Tabs.") -> str:
    """A table or figure mention in one of the label styles ("Tables 5–7", "Figs. 4 and 5", …)."""
    template = _LABEL_STYLES.get(style, "{word} {0}")
    return template.format(
        *nums,
        word=word,
        plural=plural,
        short=short,
        short_plural=short_plural,
        last=nums[-1],
        init=", ".join(nums[:-1]),
    )


# ---------------------------------------------------------------- the layout engine


class Layout:
    """Places content elements into pages, recording ground truth as it goes."""

    def __init__(self, page_of: dict[int, int], header: tuple[str, str], footer: str) -> None:
        self.page_of_prev = page_of
        self.page_of: dict[int, int] = {}  # id(element) → page in this pass
        self.header, self.footer = header, footer
        self.pages: list[PageOut] = []
        self.columns = 1
        self.ocr = False
        self.col = 0
        self.slot: tuple[float, float] | None = None  # set while a caption is set under one figure of a row
        self._new_page()

    # -- frames

    def _frame_x(self) -> tuple[float, float]:
        """Left and right edge of the text frame: the page, the current column, or a figure's slot."""
        if self.slot is not None:
            return self.slot
        if self.columns == 1:
            return MARGIN_X, PAGE_W - MARGIN_X
        w = (PAGE_W - 2 * MARGIN_X - COL_GAP) / 2
        x0 = MARGIN_X + self.col * (w + COL_GAP)
        return x0, x0 + w

    @property
    def page(self) -> PageOut:
        return self.pages[-1]

    def _new_page(self) -> None:
        self.pages.append(PageOut(number=len(self.pages) + 1, ocr=self.ocr, columns=self.columns))
        self.col = 0
        self.y = TOP
        self._decorate(self.page)

    def advance(self) -> None:
        """Move to the next column, or to a new page."""
        if self.columns == 2 and self.col == 0:
            self.col = 1
            self.y = TOP
        else:
            self._new_page()

    def page_break(self) -> None:
        if self.y > TOP or self.col > 0:
            self._new_page()

    def room(self) -> float:
        return BOTTOM - self.y

    def _decorate(self, page: PageOut) -> None:
        left, right = self.header
        size = 8.0
        base = 44.0
        page.ops.append(("text", MARGIN_X, base, left, "b", size))
        rx = PAGE_W - MARGIN_X - text_width(right, "r", size)
        page.ops.append(("text", rx, base, right, "r", size))
        page.ops.append(("line", MARGIN_X, 52.0, PAGE_W - MARGIN_X, 52.0, 0.6))
        hb = line_box(MARGIN_X, base, left, "b", size)
        page.blocks.append(
            Placed(
                "page_header", page.number, (hb[0], hb[1], PAGE_W - MARGIN_X, hb[3]), f"{left} {right}", ocr=page.ocr
            )
        )
        fbase = 762.0
        num = str(page.number)
        page.ops.append(("line", MARGIN_X, 748.0, PAGE_W - MARGIN_X, 748.0, 0.6))
        page.ops.append(("text", MARGIN_X, fbase, self.footer, "r", 7.5))
        nx = PAGE_W - MARGIN_X - text_width(num, "b", 9)
        page.ops.append(("text", nx, fbase, num, "b", 9))
        fb = line_box(MARGIN_X, fbase, self.footer, "r", 7.5)
        page.blocks.append(
            Placed(
                "page_footer",
                page.number,
                (fb[0], fb[1] - 1, PAGE_W - MARGIN_X, fb[3] + 1),
                f"{self.footer} {num}",
                ocr=page.ocr,
            )
        )

    # -- elements

    def place(self, el: Any) -> None:
        if isinstance(el, Mode):
            self.page_break()
            self.columns, self.ocr = el.columns, el.ocr
            self.page.ocr, self.page.columns = el.ocr, el.columns
            for b in self.page.blocks:
                b.ocr = el.ocr
        elif isinstance(el, PageBreak):
            self.page_break()
        elif isinstance(el, Heading):
            self._heading(el)
        elif isinstance(el, Para):
            self._para(el)
        elif isinstance(el, TableEl):
            self._table(el)
        elif isinstance(el, FigureEl):
            self._figures([el])
        elif isinstance(el, FigureRow):
            self._figures(el.figures)
        elif isinstance(el, Formula):
            self._formula(el)
        elif isinstance(el, TocEl):
            self._toc(el)
        else:
            raise TypeError(f"cannot lay out {type(el).__name__}")

    def _heading(self, h: Heading) -> None:
        size = {1: 14.0, 2: 11.5, 3: 10.0}[h.level]
        gap_before = {1: 14.0, 2: 10.0, 3: 8.0}[h.level]
        need = gap_before + size * 1.3 + 4 * 11.5
        if self.y > TOP:
            self.y += gap_before
        if self.room() < need:
            self.advance()
        x0, x1 = self._frame_x()
        lines = _wrap(h.text, "b", size, x1 - x0, [])
        block_box = None
        for text, _spans in lines:
            base = self.y + font("b").ascender * size
            self.page.ops.append(("text", x0, base, text, "b", size))
            box = line_box(x0, base, text, "b", size)
            block_box = box if block_box is None else _union(block_box, box)
            self.y += size * 1.25
        self.y += 4
        assert block_box is not None
        self.page.blocks.append(
            Placed("heading", self.page.number, block_box, h.text, level=h.level, element=h, ocr=self.ocr)
        )
        self.page_of[id(h)] = self.page.number

    def _para(self, p: Para, caption_of: Any = None, key: str = "r", center: bool = False) -> None:
        text, spans = self._flatten(p.pieces)
        size = p.size
        lh = size * 1.28
        indent = 10.0 if p.kind == "list_item" else 0.0
        x0, x1 = self._frame_x()
        lines = _wrap(text, key, size, x1 - x0 - indent, spans)
        cur: Placed | None = None
        if p.kind == "list_item":
            self.y += 1
        for i, (ltext, lspans) in enumerate(lines):
            if self.room() < lh:
                self.advance()
                cur = None
            x0, x1 = self._frame_x()
            lx = x0 + indent
            if center:
                lx = (x0 + x1 - text_width(ltext, key, size)) / 2
            base = self.y + font(key).ascender * size
            if p.kind == "list_item" and i == 0:
                self.page.ops.append(("text", x0 + 1, base, "\u2022", "r", size))
            self.page.ops.append(("text", lx, base, ltext, key, size))
            box = line_box(lx, base, ltext, key, size)
            if p.kind == "list_item" and i == 0:
                box = (x0 + 1, box[1], box[2], box[3])
            if cur is None:
                kind = "caption" if caption_of is not None else p.kind
                cur = Placed(kind, self.page.number, box, "", element=p, caption_of=caption_of, ocr=self.ocr, toc=p.toc)
                self.page.blocks.append(cur)
            else:
                cur.bbox = _union(cur.bbox, box)
            prefix = "\u2022 " if (p.kind == "list_item" and i == 0) else ""
            cur.text = (cur.text + " " + prefix + ltext).strip() if cur.text else prefix + ltext
            for start, end, ref in lspans:
                mx = lx + text_width(ltext[:start], key, size)
                mw = text_width(ltext[start:end], key, size)
                cur.mentions.append({"text": ltext[start:end], "ref": ref, "bbox": (mx, box[1], mx + mw, box[3])})
            self.y += lh
        self.y += 5 if p.kind == "paragraph" else 2

    def _flatten(self, pieces: list[str | Ref]) -> tuple[str, list[tuple[int, int, Ref]]]:
        out, spans, pos = [], [], 0
        for piece in pieces:
            s = piece if isinstance(piece, str) else format_ref(piece, self.page_of_prev)
            if isinstance(piece, Ref):
                spans.append((pos, pos + len(s), piece))
            out.append(s)
            pos += len(s)
        return "".join(out), spans

    def _caption(self, el: Any, part: int = 0, continued: bool = False) -> Placed:
        label = el.label
        extra: list[str | Ref] = list(getattr(el, "caption_extra", []))
        title = el.title + (" (continued)" if continued else "")
        pieces: list[str | Ref] = [f"{label}. {title}", *extra]
        before = len(self.page.blocks)
        self._para(Para(pieces, size=8.5), caption_of=el, key="b", center=True)
        cap = self.page.blocks[-1]
        if len(self.page.blocks) != before + 1:
            raise RuntimeError("a caption was split across columns")
        cap.label = label
        cap.caption_part = part
        self.y -= 3
        return cap

    def _figures(self, figs: list[FigureEl]) -> None:
        x0, x1 = self._frame_x()
        gap = 16.0
        slot = (x1 - x0 - gap * (len(figs) - 1)) / len(figs)
        sizes = []
        for f in figs:
            w, h = f.art.width, f.art.height
            scale = min(1.0, min(slot, f.max_w) / w, f.max_h / h)
            sizes.append((w * scale, h * scale))
        height = max(h for _, h in sizes) + 28
        self.y += 4
        if self.room() < height:
            self.advance()
            x0, x1 = self._frame_x()
        top = self.y
        bottoms = []
        for k, (f, (w, h)) in enumerate(zip(figs, sizes, strict=True)):
            sx0 = x0 + k * (slot + gap)
            fx = sx0 + (slot - w) / 2
            rect = (fx, top, fx + w, top + h)
            self.page.ops.append(("art", rect, f.art))
            self.page.blocks.append(
                Placed(f.kind, self.page.number, rect, "", label=f.label, element=f, ocr=self.ocr, style=f.art.fmt)
            )
            self.page_of[id(f)] = self.page.number
            # caption centred under its own figure
            self.y = top + max(hh for _, hh in sizes) + 6
            self.slot = (sx0, sx0 + slot)
            try:
                self._caption(f)
            finally:
                self.slot = None
            bottoms.append(self.y)
        self.y = max(bottoms) + 8

    def _formula(self, f: Formula) -> None:
        size = 10.0
        if self.room() < 30:
            self.advance()
        x0, x1 = self._frame_x()
        self.y += 4
        base = self.y + font("i").ascender * size
        w = text_width(f.expr, "i", size)
        fx = (x0 + x1 - w) / 2
        num = f"({f.number})"
        nx = x1 - text_width(num, "r", size)
        self.page.ops.append(("text", fx, base, f.expr, "i", size))
        self.page.ops.append(("text", nx, base, num, "r", size))
        box = _union(line_box(fx, base, f.expr, "i", size), line_box(nx, base, num, "r", size))
        self.page.blocks.append(
            Placed("formula", self.page.number, box, f"{f.expr} {num}", label=f.label, element=f, ocr=self.ocr)
        )
        self.page_of[id(f)] = self.page.number
        self.y += size * 1.3 + 8

    def _toc(self, toc: TocEl) -> None:
        size = 9.0
        x0, x1 = self._frame_x()
        for h in toc.headings:
            if self.room() < 12:
                self.advance()
                x0, x1 = self._frame_x()
            indent = (h.level - 1) * 14.0
            num = str(self.page_of_prev.get(id(h), 99))
            title = h.text
            key = "b" if h.level == 1 else "r"
            base = self.y + font(key).ascender * size
            tw = text_width(title, key, size)
            nw = text_width(num, "r", size)
            dots_w = x1 - (x0 + indent + tw) - nw - 8
            n_dots = max(3, int(dots_w / text_width(".", "r", size)))
            dots = "." * n_dots
            self.page.ops.append(("text", x0 + indent, base, title, key, size))
            dx = x1 - nw - 4 - text_width(dots, "r", size)
            self.page.ops.append(("text", dx, base, dots, "r", size))
            self.page.ops.append(("text", x1 - nw, base, num, "r", size))
            box = (x0 + indent, base - font(key).ascender * size, x1, base - font(key).descender * size)
            self.page.blocks.append(
                Placed("paragraph", self.page.number, box, f"{title} {dots} {num}", ocr=self.ocr, toc=True)
            )
            self.y += size * 1.45

    # -- tables

    def _table(self, t: TableEl) -> None:
        x0, x1 = self._frame_x()
        width = (x1 - x0) * t.width_frac
        grid = _grid(t)
        n_rows, n_cols = len(t.rows), grid["n_cols"]
        col_w = _col_widths(grid, n_cols, width, t.col_weights)
        size, lh, pad = 7.5, 9.5, 2.5
        heights = _row_heights(grid, col_w, n_rows, size, lh, pad, t.n_header)
        groups = _row_groups(grid, n_rows, t.n_header)
        header_h = sum(heights[: t.n_header])
        cap_h = 15.0
        self.y += 4
        # keep the caption with the header and at least two row groups
        first_need = cap_h + header_h + sum(sum(heights[r] for r in g) for g in groups[:2]) + 4
        if self.room() < first_need:
            self.advance()
        part = 0
        gi = 0
        while gi < len(groups):
            if part == 0 or t.continued_caption:
                self._caption(t, part, continued=part > 0)
                self.y += 3
            else:
                self.y += 2
            x0, x1 = self._frame_x()
            tx0 = x0 + ((x1 - x0) - width) / 2 if t.width_frac < 1 else x0
            rows_here = list(range(t.n_header))
            avail = self.room() - header_h
            taken = 0.0
            while gi < len(groups):
                gh = sum(heights[r] for r in groups[gi])
                if taken + gh > avail and taken > 0:
                    break
                rows_here += groups[gi]
                taken += gh
                gi += 1
            placed = self._draw_table(t, grid, rows_here, col_w, heights, tx0, size, lh, pad)
            placed.part = part
            if part == 0:
                self.page_of[id(t)] = self.page.number
            placed.label = t.label if (part == 0 or t.continued_caption) else None
            placed.element = t
            part += 1
            if gi < len(groups):
                self.advance()
        self.y += 8

    def _draw_table(
        self,
        t: TableEl,
        grid: dict[str, Any],
        rows: list[int],
        col_w: list[float],
        heights: list[float],
        tx0: float,
        size: float,
        lh: float,
        pad: float,
    ) -> Placed:
        xs = [tx0]
        for w in col_w:
            xs.append(xs[-1] + w)
        ys = {}
        y = self.y
        for r in rows:
            ys[r] = y
            y += heights[r]
        bottom = y
        row_pos = {r: i for i, r in enumerate(rows)}
        cells_out = []
        ops = self.page.ops
        if t.style == "grid":
            hdr_bottom = ys[rows[t.n_header - 1]] + heights[rows[t.n_header - 1]] if t.n_header else self.y
            ops.append(("rect", xs[0], self.y, xs[-1], hdr_bottom, 0.85, 0.0))
        for cell in grid["cells"]:
            r, c = cell["row"], cell["col"]
            if r not in row_pos:
                continue
            span_rows = [rr for rr in range(r, r + cell["row_span"]) if rr in row_pos]
            cx0, cx1 = xs[c], xs[c + cell["col_span"]]
            cy0 = ys[r]
            cy1 = ys[span_rows[-1]] + heights[span_rows[-1]]
            header = r < t.n_header
            key = "b" if header else "r"
            lines = _wrap(cell["text"], key, size, cx1 - cx0 - 2 * pad, [])
            ty = cy0 + pad
            for ltext, _ in lines:
                base = ty + font(key).ascender * size
                if cell["align"] == "c" or header:
                    lx = (cx0 + cx1 - text_width(ltext, key, size)) / 2
                else:
                    lx = cx0 + pad
                ops.append(("text", lx, base, ltext, key, size))
                ty += lh
            if t.style == "grid":
                ops.append(("line", cx0, cy0, cx1, cy0, 0.5))
                ops.append(("line", cx0, cy1, cx1, cy1, 0.5))
                ops.append(("line", cx0, cy0, cx0, cy1, 0.5))
                ops.append(("line", cx1, cy0, cx1, cy1, 0.5))
            cells_out.append(
                {
                    "row": row_pos[r],
                    "col": c,
                    "row_span": len(span_rows),
                    "col_span": cell["col_span"],
                    "text": " ".join(lt for lt, _ in lines),
                    "header": header,
                    "bbox": [round(cx0, 2), round(cy0, 2), round(cx1, 2), round(cy1, 2)],
                }
            )
        if t.style == "rules":
            ops.append(("line", xs[0], self.y, xs[-1], self.y, 1.0))
            hy = ys[rows[t.n_header - 1]] + heights[rows[t.n_header - 1]]
            ops.append(("line", xs[0], hy, xs[-1], hy, 0.6))
            ops.append(("line", xs[0], bottom, xs[-1], bottom, 1.0))
        box = (xs[0], self.y, xs[-1], bottom)
        placed = Placed(
            "table",
            self.page.number,
            box,
            "",
            cells=cells_out,
            n_rows=len(rows),
            n_cols=len(col_w),
            ocr=self.ocr,
            style=t.style,
        )
        self.page.blocks.append(placed)
        self.y = bottom
        return placed


def _union(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float, float]:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _wrap(
    text: str, key: str, size: float, width: float, spans: list[tuple[int, int, Ref]]
) -> list[tuple[str, list[tuple[int, int, Ref]]]]:
    """Greedy line breaking at spaces outside mention spans; spans come back relative to their line."""
    protected = [(s, e) for s, e, _ in spans]
    words: list[tuple[int, int]] = []  # (start, end) char ranges of unbreakable words
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and (text[j] != " " or any(s <= j < e for s, e in protected)):
            j += 1
        words.append((i, j))
        i = j
    lines: list[tuple[int, int]] = []
    start = None
    end = 0
    used = 0.0
    space = text_width(" ", key, size)
    for ws, we in words:
        w = text_width(text[ws:we], key, size)
        if start is None:
            start, end, used = ws, we, w
            continue
        if used + space + w <= width:
            end, used = we, used + space + w
        else:
            lines.append((start, end))
            start, end, used = ws, we, w
    if start is not None:
        lines.append((start, end))
    out = []
    for ls, le in lines:
        lspans = [(s - ls, e - ls, r) for s, e, r in spans if s >= ls and e <= le]
        out.append((text[ls:le], lspans))
    return out or [("", [])]


def _grid(t: TableEl) -> dict[str, Any]:
    """Resolve HTML-like rows with spans into cells at grid positions."""
    occupied: set[tuple[int, int]] = set()
    cells = []
    n_cols = 0
    for r, row in enumerate(t.rows):
        c = 0
        for spec in row:
            while (r, c) in occupied:
                c += 1
            for dr in range(spec.row_span):
                for dc in range(spec.col_span):
                    occupied.add((r + dr, c + dc))
            cells.append(
                {
                    "row": r,
                    "col": c,
                    "row_span": spec.row_span,
                    "col_span": spec.col_span,
                    "text": spec.text,
                    "align": spec.align,
                }
            )
            c += spec.col_span
            n_cols = max(n_cols, c)
    return {"cells": cells, "n_cols": n_cols}


def _col_widths(grid: dict[str, Any], n_cols: int, width: float, weights: list[float] | None) -> list[float]:
    if weights:
        total = sum(weights)
        return [width * w / total for w in weights]
    natural = [20.0] * n_cols
    minimum = [14.0] * n_cols
    for cell in grid["cells"]:
        if cell["col_span"] != 1:
            continue
        c = cell["col"]
        natural[c] = max(natural[c], text_width(cell["text"], "b", 7.5) + 6)
        longest = max((text_width(w, "b", 7.5) for w in cell["text"].split()), default=0)
        minimum[c] = max(minimum[c], longest + 6)
    if sum(natural) <= width:
        extra = (width - sum(natural)) / n_cols
        return [w + extra for w in natural]
    spare = width - sum(minimum)
    want = [max(0.0, n - m) for n, m in zip(natural, minimum, strict=True)]
    tw = sum(want) or 1.0
    return [m + spare * w / tw for m, w in zip(minimum, want, strict=True)]


def _row_heights(
    grid: dict[str, Any], col_w: list[float], n_rows: int, size: float, lh: float, pad: float, n_header: int
) -> list[float]:
    heights = [lh + 2 * pad] * n_rows
    spanning = []
    for cell in grid["cells"]:
        w = sum(col_w[cell["col"] : cell["col"] + cell["col_span"]]) - 2 * pad
        key = "b" if cell["row"] < n_header else "r"
        need = len(_wrap(cell["text"], key, size, w, [])) * lh + 2 * pad
        if cell["row_span"] == 1:
            heights[cell["row"]] = max(heights[cell["row"]], need)
        else:
            spanning.append((cell, need))
    for cell, need in spanning:
        rows = range(cell["row"], cell["row"] + cell["row_span"])
        have = sum(heights[r] for r in rows)
        if have < need:
            heights[rows[-1]] += need - have
    return heights


def _row_groups(grid: dict[str, Any], n_rows: int, n_header: int) -> list[list[int]]:
    """Body rows grouped so that row-spanning cells never break across pages."""
    end_of = list(range(n_rows))
    for cell in grid["cells"]:
        last = cell["row"] + cell["row_span"] - 1
        for r in range(cell["row"], last + 1):
            end_of[r] = max(end_of[r], last)
    groups, r = [], n_header
    while r < n_rows:
        last = r
        k = r
        while k <= last:
            last = max(last, end_of[k])
            k += 1
        groups.append(list(range(r, last + 1)))
        r = last + 1
    return groups


# ---------------------------------------------------------------- rendering


class Renderer:
    """Paints laid-out pages into a PyMuPDF document."""

    def __init__(self, ocr_dpi: int = 200) -> None:
        self.doc = pymupdf.open()
        self.ocr_dpi = ocr_dpi
        self._vector: dict[int, pymupdf.Document] = {}

    def _vector_doc(self, art: Art) -> pymupdf.Document:
        key = id(art)
        if key not in self._vector:
            svg = pymupdf.open(stream=art.data, filetype="svg")
            self._vector[key] = pymupdf.open("pdf", svg.convert_to_pdf())
        return self._vector[key]

    def paint(self, page: pymupdf.Page, ops: list[tuple[Any, ...]]) -> None:
        writer = pymupdf.TextWriter(page.rect)
        shape = page.new_shape()
        for op in ops:
            if op[0] == "rect":
                _, x0, y0, x1, y1, gray, _w = op
                shape.draw_rect(pymupdf.Rect(x0, y0, x1, y1))
                shape.finish(fill=(gray, gray, gray), color=None, width=0)
        for op in ops:
            if op[0] == "line":
                _, x0, y0, x1, y1, w = op
                shape.draw_line((x0, y0), (x1, y1))
                shape.finish(color=(0, 0, 0), width=w)
        shape.commit()
        for op in ops:
            if op[0] == "art":
                _, rect, art = op
                r = pymupdf.Rect(rect)
                if art.fmt == "svg":
                    page.show_pdf_page(r, self._vector_doc(art), 0, keep_proportion=False)
                else:
                    page.insert_image(r, stream=art.data, keep_proportion=False)
            elif op[0] == "text":
                _, x, base, s, key, size = op
                writer.append((x, base), s, font=font(key), fontsize=size)
        writer.write_text(page)

    def add_page(self, out: PageOut, noise_seed: int) -> None:
        page = self.doc.new_page(width=PAGE_W, height=PAGE_H)
        if not out.ocr:
            self.paint(page, out.ops)
            return
        # a scanned page: paint into a scratch document, rasterise, and keep only the image
        scratch = pymupdf.open()
        sp = scratch.new_page(width=PAGE_W, height=PAGE_H)
        self.paint(sp, out.ops)
        pix = _speckle(sp.get_pixmap(dpi=self.ocr_dpi, colorspace=pymupdf.csGRAY), noise_seed)
        page.insert_image(page.rect, stream=pix.tobytes("jpg", jpg_quality=70))

    def finish(self, toc: list[list[Any]], title: str) -> bytes:
        self.doc.set_toc(toc)
        stamp = "D:20261129000000Z"
        self.doc.set_metadata(
            {
                "title": title,
                "author": "Ohmlens Instruments",
                "creator": "samples.make_datasheet",
                "producer": "PyMuPDF",
                "creationDate": stamp,
                "modDate": stamp,
            }
        )
        self.doc.subset_fonts()
        return self.doc.tobytes(garbage=3, deflate=True, no_new_id=True)


def _speckle(pix: pymupdf.Pixmap, seed: int) -> pymupdf.Pixmap:
    """A copy of a grayscale pixmap with a little deterministic scanner noise (grain and dust)."""
    import numpy as np

    arr = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)[:, : pix.width]
    rng = np.random.default_rng(seed)
    noisy = arr.astype(np.int16) - rng.integers(0, 18, size=arr.shape, dtype=np.int16)
    noisy[rng.random(arr.shape) < 0.0004] = 60
    out = np.ascontiguousarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return pymupdf.Pixmap(pymupdf.csGRAY, pix.width, pix.height, out.tobytes(), 0)
