"""Table extraction: ruled and borderless tables as cell grids, and tables split across pages.

One page is read from what is cheap to get: its vector rulings (`get_cdrawings`) and its text. A page
with no ruling structure and no rows of column-aligned text is left after a few milliseconds. On the
others, word boxes are grouped into text rows, rows into candidate regions (ruled frames, stacks of
rules, runs of column-aligned rows), and each region into a grid: columns from vertical rules and from
whitespace corridors shared by the rows, logical rows from horizontal rules and from how wrapped lines
continue a cell, spanning cells where a text crosses a column boundary, header rows above the first
data row. Regions whose grid does not look like a table (prose, lists, chart axes) are dropped.

All coordinates are PDF points in the displayed page frame (`page.rect`, top-left origin), rotation
applied, as the reference scorers read them.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

import pymupdf

from pipelines.document import Block, Cell, Document, Link, Table

BBox = tuple[float, float, float, float]

CELL_GAP_EM = 0.55  # a gap wider than this many word heights separates two cells on a row
COLUMN_GAP_EM = 0.9  # a gap this wide marks a row as multi-column when looking for tables
RULE_TOL = 2.5  # points: rules closer than this touch
MARGIN = 0.06  # top and bottom share of the page where running headers and footers sit
CAPTION_RE = re.compile(r"^\s*(Table|Tab\.|Figure|Fig\.?|Chart|Source|Note)s?\b", re.IGNORECASE)
NUMERIC_RE = re.compile(r"^[\s(<>≤≥±~+\-–−]*[$€£%]?\s*\d[\d.,\s]*\s*[%‰]?[)*]?\s*[a-zA-Zµ°%]{0,3}$")
MONO_FONT_RE = re.compile(r"Mono|Courier|Consol|Menlo|Code|Typewriter|CMTT|LMTT", re.IGNORECASE)
BULLET_RE = re.compile(r"^([•◦▪▫●○■□►▸‣⁃∙·\-–*]|\(?\d{1,3}[.)]|\(?[a-z][.)]|\d+(\.\d+)+\.?)$")


class _Word:
    """One word box and its text."""

    __slots__ = ("x0", "y0", "x1", "y1", "text", "h")

    def __init__(self, x0: float, y0: float, x1: float, y1: float, text: str) -> None:
        self.x0, self.y0, self.x1, self.y1, self.text = x0, y0, x1, y1, text
        self.h = y1 - y0


class _Words:
    """A group of words and its bounding box (computed once: groups are built whole)."""

    __slots__ = ("words", "x0", "y0", "x1", "y1")

    def __init__(self, words: list[_Word]) -> None:
        self.words = words
        self.x0 = min(w.x0 for w in words)
        self.y0 = min(w.y0 for w in words)
        self.x1 = max(w.x1 for w in words)
        self.y1 = max(w.y1 for w in words)


class _Chunk(_Words):
    """Words of one row that sit close together: one cell's line of text (or a spanning text)."""

    __slots__ = ()

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


class _Row(_Words):
    """One visual line of text across the page (or across a region).

    `core0`/`core1` bound the line's typical word, so a cell centred beside two lines (and grouped
    with one of them) does not make that line look taller than it is.
    """

    __slots__ = ("chunks", "h", "core0", "core1")

    def __init__(self, words: list[_Word]) -> None:
        super().__init__(words)
        self.chunks: list[_Chunk] = []
        self.h = statistics.median(w.h for w in words)
        self.core0 = statistics.median(w.y0 for w in words)
        self.core1 = statistics.median(w.y1 for w in words)


@dataclass
class _Rules:
    """Axis-parallel rulings of a page: (y, x0, x1) horizontals, (x, y0, y1) verticals, shaded areas."""

    h: list[tuple[float, float, float]]
    v: list[tuple[float, float, float]]
    fills: list[BBox]
    art: list[BBox]  # curves and slanted lines: evidence of a chart or drawing, not of a table


# ---------------------------------------------------------------------------------------------- page reading


def _is_light(color: tuple | None) -> bool:
    return color is None or (len(color) >= 3 and min(color[:3]) > 0.97)


def _merge_segments(segs: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Join collinear pieces (a ruling drawn cell by cell) into whole rules."""
    out: list[tuple[float, float, float]] = []
    segs = sorted(segs)
    i = 0
    while i < len(segs):
        j = i
        while j + 1 < len(segs) and segs[j + 1][0] - segs[j][0] <= 1.0:
            j += 1
        pos = statistics.median(s[0] for s in segs[i : j + 1])
        cur: list[float] | None = None
        for _, a, b in sorted(segs[i : j + 1], key=lambda s: s[1]):
            if cur is not None and a <= cur[1] + RULE_TOL:
                cur[1] = max(cur[1], b)
            else:
                if cur is not None:
                    out.append((pos, cur[0], cur[1]))
                cur = [a, b]
        if cur is not None:
            out.append((pos, cur[0], cur[1]))
        i = j + 1
    return out


Matrix = tuple[float, float, float, float, float, float]


def _box(x0: float, y0: float, x1: float, y1: float, mat: Matrix | None) -> BBox:
    """A box (given by two corners) in the displayed page frame, normalised."""
    if mat is not None:
        a, b, c, d, e, f = mat
        x0, y0, x1, y1 = a * x0 + c * y0 + e, b * x0 + d * y0 + f, a * x1 + c * y1 + e, b * x1 + d * y1 + f
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _page_rules(page: pymupdf.Page, mat: Matrix | None, drawings: list[dict] | None = None) -> _Rules:
    """Rulings, shaded areas and artwork of a page from its vector drawings (`get_cdrawings()`)."""
    h: list[tuple[float, float, float]] = []
    v: list[tuple[float, float, float]] = []
    fills: list[BBox] = []
    art: list[BBox] = []
    page_area = abs(page.rect)

    def add_rect(r: BBox, stroked: bool, filled: bool) -> None:
        x0, y0, x1, y1 = r
        w, ht = x1 - x0, y1 - y0
        if ht <= 3 and w > 3:
            h.append(((y0 + y1) / 2, x0, x1))
        elif w <= 3 and ht > 3:
            v.append(((x0 + x1) / 2, y0, y1))
        elif w > 3 and ht > 3:
            if stroked:
                h.extend([(y0, x0, x1), (y1, x0, x1)])
                v.extend([(x0, y0, y1), (x1, y0, y1)])
            if filled and w * ht < 0.4 * page_area:  # a larger one is a page background
                fills.append(r)

    for path in page.get_cdrawings() if drawings is None else drawings:
        kind = path.get("type", "")
        stroked = "s" in kind and not _is_light(path.get("color"))
        filled = "f" in kind and not _is_light(path.get("fill")) and path.get("fill_opacity", 1.0) > 0.05
        if not stroked and not filled:
            continue
        items = path["items"]
        if not stroked and all(item[0] == "l" for item in items):
            # a filled polygon: an axis-parallel one is a rule or a shaded box, any other is artwork
            r = _box(*path["rect"], mat)
            if all(abs(p[0] - q[0]) <= 0.5 or abs(p[1] - q[1]) <= 0.5 for _, p, q in items):
                add_rect(r, False, True)
            else:
                art.append(r)
            continue
        for item in items:
            op = item[0]
            if op == "l":
                x0, y0, x1, y1 = _box(*item[1], *item[2], mat)
                if y1 - y0 <= 1.0 and x1 - x0 > 3:
                    h.append(((y0 + y1) / 2, x0, x1))
                elif x1 - x0 <= 1.0 and y1 - y0 > 3:
                    v.append(((x0 + x1) / 2, y0, y1))
                else:
                    art.append((x0, y0, x1, y1))
            elif op == "re":
                add_rect(_box(*item[1], mat), stroked, filled)
            elif op == "qu":
                xs = [p[0] for p in item[1]]
                ys = [p[1] for p in item[1]]
                add_rect(_box(min(xs), min(ys), max(xs), max(ys), mat), stroked, filled)
            else:
                pts = [p for p in item[1:] if isinstance(p, (tuple, list))]
                if pts:
                    xs = [p[0] for p in pts]
                    ys = [p[1] for p in pts]
                    art.append(_box(min(xs), min(ys), max(xs), max(ys), mat))
    return _Rules(_merge_segments(h), _merge_segments(v), fills, art)


def _page_words(page: pymupdf.Page, mat: Matrix | None) -> list[_Word]:
    words = []
    for x0, y0, x1, y1, text, *_ in page.get_text("words"):
        if mat is not None:
            x0, y0, x1, y1 = _box(x0, y0, x1, y1, mat)
        if y1 <= y0 or x1 <= x0 or (x1 - x0 < 0.3 * (y1 - y0) and len(text) > 2):
            continue  # empty, or vertical text that is not part of a row
        words.append(_Word(x0, y0, x1, y1, text))
    return words


def _group_rows(words: list[_Word]) -> list[_Row]:
    """Words into visual lines: a word joins a line whose core band it overlaps by half its height.

    Words taller than usual (a superscript fused to its word, mixed type sizes) are placed last, into
    the line they overlap most, so they do not pull two lines together.
    """
    if not words:
        return []
    usual = 1.3 * statistics.median(w.h for w in words)
    rows: list[tuple[float, float, list[_Word]]] = []
    for w in sorted((w for w in words if w.h <= usual), key=lambda w: ((w.y0 + w.y1) / 2, w.x0)):
        for k in range(len(rows) - 1, max(-1, len(rows) - 8), -1):
            c0, c1, ws = rows[k]
            if min(c1, w.y1) - max(c0, w.y0) >= 0.5 * min(w.h, c1 - c0):
                ws.append(w)
                break
        else:
            rows.append((w.y0, w.y1, [w]))
    for w in (w for w in words if w.h > usual):
        best = max(rows, key=lambda r: min(r[1], w.y1) - max(r[0], w.y0), default=None)
        if best is not None and min(best[1], w.y1) - max(best[0], w.y0) >= 0.5 * (best[1] - best[0]):
            best[2].append(w)
        else:
            rows.append((w.y0, w.y1, [w]))
    out = [_Row(sorted(ws, key=lambda w: w.x0)) for _, _, ws in rows]
    out.sort(key=lambda r: (r.y0 + r.y1) / 2)
    return out


def _split_chunks(row: _Row, v_rules: list[tuple[float, float, float]], gap_em: float) -> list[_Chunk]:
    """Cut a row where words are far apart or a vertical rule runs between them."""
    cy = (row.y0 + row.y1) / 2
    cuts = [x for x, a, b in v_rules if a - 1 <= cy <= b + 1]
    groups = [[row.words[0]]]
    for a, b in zip(row.words, row.words[1:]):
        if b.x0 - a.x1 > gap_em * min(a.h, b.h) or any(a.x1 - 1 <= x <= b.x0 + 1 for x in cuts):
            groups.append([b])
        else:
            groups[-1].append(b)
    return [_Chunk(g) for g in groups]


# ---------------------------------------------------------------------------------------------- regions


def _union(boxes: list[BBox]) -> BBox:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _overlap(a: BBox, b: BBox) -> float:
    """Intersection area over the smaller box's area."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def _ruled_regions(rules: _Rules, rows: list[_Row], line_h: float) -> list[BBox]:
    """Boxes of connected rulings: grids, frames, stacks of parallel rules, touching shaded cells."""
    items: list[BBox] = [(a, y, b, y) for y, a, b in rules.h if b - a > 2 * line_h]
    items += [(x, a, x, b) for x, a, b in rules.v if b - a > line_h]
    items += list(rules.fills)
    n = len(items)
    if n < 2:
        return []
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def gridded(r: BBox) -> bool:
        tol = RULE_TOL
        return any(r[0] - tol <= x <= r[2] + tol and y0 - tol <= r[1] <= y1 + tol for x, y0, y1 in v)

    v = [(x, a, b) for x, a, b in rules.v if b - a > line_h]

    def stacked(a: BBox, b: BBox) -> bool:
        """Free-standing parallel rules over each other with the same extent and table rows between them."""
        if a[1] != a[3] or b[1] != b[3] or b[1] - a[1] > 40 * line_h:
            return False
        if abs(a[0] - b[0]) > line_h or abs(a[2] - b[2]) > line_h or gridded(a) or gridded(b):
            return False
        if any(a[1] < y < b[1] and x1 > a[0] and x0 < a[2] for y, x0, x1 in rules.h):
            return False  # only neighbouring rules stack
        between = [r for r in rows if a[1] < (r.y0 + r.y1) / 2 < b[1]]
        if not between:
            return b[1] - a[1] < 2 * line_h
        if any(r.x0 < a[0] - line_h or r.x1 > a[2] + line_h or CAPTION_RE.match(r.words[0].text) for r in between):
            return False
        return sum(len(r.chunks) >= 2 for r in between) >= 0.5 * len(between)

    tol = RULE_TOL
    order = sorted(range(n), key=lambda i: items[i][1])
    for ii, i in enumerate(order):
        a = items[i]
        for j in order[ii + 1 :]:
            b = items[j]
            if b[1] > a[3] + max(tol, 40 * line_h):
                break
            touch = b[0] <= a[2] + tol and a[0] <= b[2] + tol and b[1] <= a[3] + tol
            if touch or stacked(a, b):
                parent[find(i)] = find(j)
    groups: dict[int, list[BBox]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(items[i])
    out = []
    for g in groups.values():
        box = _union(g)
        if len(g) >= 2 and box[2] - box[0] > 3 * line_h and box[3] - box[1] > line_h:
            out.append(box)
    return out


def _word_in(w: _Word, box: BBox) -> bool:
    cx, cy = (w.x0 + w.x1) / 2, (w.y0 + w.y1) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def _rows_in(words: list[_Word], box: BBox) -> list[_Row]:
    return _group_rows([w for w in words if _word_in(w, box)])


def _is_prose(chunk: _Chunk, width: float) -> bool:
    """A line of running text: many words over a good part of the page width."""
    return len(chunk.words) >= 5 and chunk.x1 - chunk.x0 > 0.25 * width


def _aligned_regions(rows: list[_Row], page: pymupdf.Rect) -> list[BBox]:
    """Runs of rows that break into two or more chunks at the same whitespace corridors.

    A run may pass through single-chunk rows set tight in the same type size (wrapped cells, section
    labels); it ends at a caption, running text, a larger type size, a wide vertical gap or the page's
    top and bottom margins (running headers and footers).
    """
    out: list[BBox] = []
    run: list[tuple[_Row, bool]] = []

    def flush() -> None:
        while run and not run[-1][1]:
            run.pop()  # trailing single-chunk rows belong to what follows, not to the table
        multi = [r for r, m in run if m]
        if len(multi) >= 2 and _has_corridor(multi):
            out.append(_union([(r.x0, r.y0, r.x1, r.y1) for r, _ in run]))
        run.clear()

    page_width = page.width
    for row in rows:
        cy = (row.y0 + row.y1) / 2
        if CAPTION_RE.match(row.words[0].text) or not MARGIN * page.height < cy < (1 - MARGIN) * page.height:
            flush()  # a caption, or a running header or footer line
            continue
        h = statistics.median(r.h for r, m in run if m) if run else row.h
        if run and (row.h > 1.25 * h or row.y0 - run[-1][0].y1 > 2.5 * h):
            flush()
            h = row.h
        # two lines of running text side by side are a two-column page, not a table row
        multi = len(row.chunks) >= 2 and sum(_is_prose(c, page_width) for c in row.chunks) < 2
        if multi and not _is_list_item(row) and not _is_justified(row):
            run.append((row, True))
        elif run and len(row.chunks) == 1 and not _is_prose(row.chunks[0], page_width):
            if row.y0 - run[-1][0].y1 <= 1.2 * h:
                run.append((row, False))
            else:
                flush()
        else:
            flush()
    flush()
    return out


def _split_at_gutters(words: list[_Word], rows: list[_Row], page_width: float) -> list[list[_Word]]:
    """Words of each page column: gutters are whitespace strips with running text on both sides."""
    prose = [c for r in rows for c in r.chunks if _is_prose(c, page_width)]
    if len(prose) < 6:
        return [words]
    gutters = []
    for g0, g1 in _corridors([c for r in rows for c in r.chunks], max(1, len(rows) // 20)):
        left = sum(1 for c in prose if g0 - 0.1 * page_width < c.x1 <= g0 + 1)
        right = sum(1 for c in prose if g1 - 1 <= c.x0 < g1 + 0.1 * page_width)
        if left >= 3 and right >= 3:
            gutters.append((g0 + g1) / 2)
    if not gutters:
        return [words]
    parts: list[list[_Word]] = [[] for _ in range(len(gutters) + 1)]
    for w in words:
        parts[sum(1 for g in gutters if (w.x0 + w.x1) / 2 > g)].append(w)
    return [p for p in parts if p]


def _is_justified(row: _Row) -> bool:
    """A line of justified prose: single words spread with one and the same stretched space."""
    if len(row.chunks) < 4 or any(len(c.words) > 2 for c in row.chunks):
        return False
    gaps = [b.x0 - a.x1 for a, b in zip(row.chunks, row.chunks[1:])]
    mid = statistics.median(gaps)
    return sum(abs(g - mid) < 0.15 * row.h for g in gaps) >= 0.7 * len(gaps)


def _is_list_item(row: _Row) -> bool:
    """A bullet or number followed by text: a list, not a table row."""
    return len(row.chunks) == 2 and BULLET_RE.match(row.chunks[0].text) is not None


def _has_corridor(rows: list[_Row]) -> bool:
    """Whether the rows share at least one vertical strip of whitespace with text on both sides."""
    gaps = _corridors([c for r in rows for c in r.chunks], tolerance=0)
    return bool(gaps)


def _corridors(chunks: list[_Chunk], tolerance: int) -> list[tuple[float, float]]:
    """X-intervals covered by at most `tolerance` chunks, between text on both sides."""
    if not chunks:
        return []
    events: list[tuple[float, int]] = []
    for c in chunks:
        events.append((c.x0, 1))
        events.append((c.x1, -1))
    events.sort()
    lo = min(c.x0 for c in chunks)
    hi = max(c.x1 for c in chunks)
    gaps: list[tuple[float, float]] = []
    depth = 0
    start: float | None = None
    for x, d in events:
        prev = depth
        depth += d
        if prev > tolerance >= depth and x < hi:
            start = x
        elif prev <= tolerance < depth and start is not None:
            if x - start > 1.0 and start > lo:
                gaps.append((start, x))
            start = None
    return gaps


# ---------------------------------------------------------------------------------------------- structure


@dataclass
class _Grid:
    bbox: BBox
    cols: list[float]  # n_cols + 1 boundaries
    cells: list[Cell]
    n_rows: int


_Placed = tuple[int, int, list[_Word]]  # first column, last column, words of one cell line


def _column_bounds(
    rows: list[_Row], v_rules: list[float], box: BBox, rules_only: bool, short_rules: list[float]
) -> list[float]:
    """Column boundaries: vertical rules crossing the region and whitespace corridors of its rows.

    With `rules_only` (a grid whose columns are all drawn) whitespace inside a ruled column, such as
    the stretched spaces of justified cell text, does not make a column. A corridor's boundary sits
    where the alignment of its neighbours puts the cell edge: just right of a right-aligned column,
    just left of a left-aligned one, else in the middle. Numbers of one width line up on both sides;
    they count as right-aligned, text of one width as left-aligned. `short_rules` are vertical rules
    through part of the table (header cell borders); one inside a corridor fixes its boundary.
    """
    chunks = [c for r in rows for c in r.chunks]
    multi = [r for r in rows if len(r.chunks) >= 2]
    bounds: list[tuple[float, float, bool]] = [(x, x, True) for x in v_rules]  # (lo, hi, drawn)
    if not rules_only:
        tol = max(0, int(0.12 * len(multi)))
        for g0, g1 in _corridors([c for r in multi for c in r.chunks] or chunks, tol):
            if not any(g0 - 2 <= x <= g1 + 2 for x in v_rules):
                bounds.append((g0, g1, False))
    bounds.sort()
    if not rules_only and len(multi) >= 4:
        bounds = _drop_lone_columns(bounds, rows)
    body = [c for r in multi for c in r.chunks]
    seps = []
    for i, (g0, g1, drawn) in enumerate(bounds):
        if drawn:
            seps.append(g0)
            continue
        prev_hi = bounds[i - 1][1] if i else -1e9
        next_lo = bounds[i + 1][0] if i + 1 < len(bounds) else 1e9
        left = [c for c in body if prev_hi < c.x1 <= g0 + 0.5]
        right = [c for c in body if g1 - 0.5 <= c.x0 < next_lo]
        pad = min(3.0, (g1 - g0) / 4)
        flush_right = _aligned([c.x1 for c in left]) and (
            not _aligned([c.x0 for c in left]) or sum(_is_numeric(c.text) for c in left) > 0.5 * len(left)
        )
        flush_left = _aligned([c.x0 for c in right]) and (
            not _aligned([c.x1 for c in right]) or sum(_is_numeric(c.text) for c in right) <= 0.5 * len(right)
        )
        if flush_right and not flush_left:
            want = g0 + pad
        elif flush_left and not flush_right:
            want = g1 - pad
        else:
            want = (g0 + g1) / 2
        seps.append(_settle(g0, g1, want, chunks, short_rules))
    lo = min(box[0], min(c.x0 for c in chunks))
    hi = max(box[2], max(c.x1 for c in chunks))
    edges = [lo] + [s for s in seps if lo < s < hi] + [hi]
    # columns that never hold text are not columns
    keep = [edges[0]]
    for a, b in zip(edges, edges[1:]):
        if any(c.x0 < b and c.x1 > a and min(c.x1, b) - max(c.x0, a) > 0.5 for c in chunks):
            keep.append(b)
        elif len(keep) > 1:
            keep[-1] = (keep[-1] + b) / 2
    keep[-1] = edges[-1]
    return keep


def _settle(g0: float, g1: float, want: float, chunks: list[_Chunk], short_rules: list[float]) -> float:
    """Where in the corridor (g0, g1) the boundary goes: on a rule drawn there, else at `want` unless
    that cuts a text (a wide header over the corridor), then in the middle of the nearest free stretch."""
    drawn = [x for x in short_rules if g0 - 1 <= x <= g1 + 1]
    if drawn:
        return min(drawn, key=lambda x: abs(x - want))
    free: list[tuple[float, float]] = []
    x = g0
    for a, b in sorted((max(c.x0, g0), min(c.x1, g1)) for c in chunks if c.x0 < g1 and c.x1 > g0):
        if a > x:
            free.append((x, a))
        x = max(x, b)
    if x < g1:
        free.append((x, g1))
    if not free or any(a <= want <= b for a, b in free):
        return want
    a, b = min(free, key=lambda f: min(abs(f[0] - want), abs(f[1] - want)))
    return (a + b) / 2


def _aligned(edges: list[float]) -> bool:
    """Whether most of these text edges line up (a left- or right-aligned column)."""
    if len(edges) < 3:
        return False
    mid = statistics.median(edges)
    return sum(abs(e - mid) <= 1.5 for e in edges) >= 0.7 * len(edges)


def _drop_lone_columns(bounds: list[tuple[float, float, bool]], rows: list[_Row]) -> list[tuple[float, float, bool]]:
    """Whitespace columns that hold text on one row only are a header floating over a wide column.

    The corridors on both sides of such a column become one, so the floating text falls into the
    column it belongs to; beside a drawn rule, the whitespace boundary goes.
    """
    out = list(bounds)
    i = 0
    while i + 1 < len(out):
        a, b = out[i], out[i + 1]
        users = sum(1 for r in rows if any(c.x0 < b[0] and c.x1 > a[1] for c in r.chunks))
        if users > 1 or (a[2] and b[2]):
            i += 1
        elif a[2]:
            del out[i + 1]  # a rule stays where it is drawn: drop the whitespace boundary
        elif b[2]:
            del out[i]
        else:
            out[i : i + 2] = [(a[0], b[1], False)]
    return out


def _place(chunk: _Chunk, cols: list[float]) -> list[_Placed]:
    """The column span of a chunk; a chunk whose words fall into separate columns is cut there."""
    out: list[_Placed] = []
    for w in chunk.words:
        c0 = _col_of(w.x0 + 0.5, cols)
        c1 = _col_of(w.x1 - 0.5, cols)
        if out and out[-1][1] >= c0:
            prev = out[-1]
            out[-1] = (prev[0], max(prev[1], c1), prev[2] + [w])
        else:
            out.append((c0, c1, [w]))
    return out


def _merge_placed(placed: list[_Placed]) -> list[_Placed]:
    """Pieces of one line that land in the same column are one cell line."""
    out: list[_Placed] = []
    for c0, c1, ws in placed:
        if out and c0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], c1), out[-1][2] + ws)
        else:
            out.append((c0, c1, ws))
    return out


def _widen_to_rules(
    row: _Row, placed: list[_Placed], cols: list[float], v_rules: list[tuple[float, float, float]]
) -> list[_Placed]:
    """In a grid with drawn columns, a cell reaches from the rule left of its text to the rule right of
    it on its own line: where column rules stop short of a row ("Finland" over four columns), the
    cell spans the columns between the rules that do cross it."""
    cy = (row.y0 + row.y1) / 2
    crossing = sorted(x for x, a, b in v_rules if a - 1 <= cy <= b + 1)
    inner = [x for x in crossing if cols[0] + 3 < x < cols[-1] - 3]
    if not inner:
        return placed  # no column rule crosses this line: nothing says where its cells end
    n = len(cols) - 1
    out = []
    for c0, c1, ws in placed:
        left = max((x for x in crossing if x <= min(w.x0 for w in ws) + 1), default=cols[0])
        right = min((x for x in crossing if x >= max(w.x1 for w in ws) - 1), default=cols[-1])
        first = next((i for i in range(n) if cols[i + 1] > left + 2), c0)
        last = max((i for i in range(n) if cols[i] < right - 2), default=c1)
        out.append((min(c0, first), max(c1, last), ws))
    return _merge_placed(out)


def _col_of(x: float, cols: list[float]) -> int:
    n = len(cols) - 1
    for i in range(n):
        if x < cols[i + 1]:
            return i
    return n - 1


def _logical_rows(
    lines: list[tuple[_Row, list[_Placed]]], h_rules: list[float]
) -> tuple[list[list[list[_Placed]]], list[tuple[float, float]]]:
    """Group visual lines into table rows.

    Horizontal rules across the region cut it into bands. Where nearly every band holds at most one
    line of data (several cells, numbers among them), the table rules each row and such a band is one
    row: its other lines are wrapped cell text, as in a multi-line header. Elsewhere a line joins the
    row above when it overlaps it vertically, or when it only continues cells of that row: fewer cells
    than a full line, no numbers, all in columns the row uses, set tight under it and not opening a row
    of its own.

    Returns:
        The rows (each a list of placed lines) and each row's vertical band (first line's core top to
        last line's core bottom).
    """
    band = [sum(1 for y in h_rules if y < (r.y0 + r.y1) / 2) for r, _ in lines]
    data_per_band: dict[int, int] = {}
    for b, (_, placed) in zip(band, lines):
        data = len(placed) >= 2 and any(c0 > 0 and _is_numeric(" ".join(w.text for w in ws)) for c0, _, ws in placed)
        data_per_band[b] = data_per_band.get(b, 0) + data
    n_bands = len(data_per_band)
    row_ruled = n_bands >= 3 and sum(n <= 1 for n in data_per_band.values()) >= 0.7 * n_bands
    full = statistics.median(len(p) for _, p in lines)
    logical: list[list[list[_Placed]]] = []
    bands: list[tuple[float, float]] = []
    prev: _Row | None = None
    used_by_row: set[int] = set()
    for i, (r, placed) in enumerate(lines):
        used = {c for c0, c1, _ in placed for c in range(c0, c1 + 1)}
        if prev is not None and band[i] == band[i - 1]:
            gap = r.core0 - prev.core1
            same_band_row = row_ruled and data_per_band[band[i]] <= 1
            overlap_v = gap < -0.3 * min(r.h, prev.h)
            continues = (
                len(placed) < full
                and used <= used_by_row
                and gap < 0.6 * r.h
                and not _starts_row(placed)
                and not any(_is_numeric(" ".join(w.text for w in ws)) for _, _, ws in placed)
            )
            if same_band_row or overlap_v or continues:
                logical[-1].append(placed)
                bands[-1] = (bands[-1][0], max(bands[-1][1], r.core1))
                used_by_row |= used
                prev = r
                continue
        logical.append([placed])
        bands.append((r.core0, r.core1))
        used_by_row = set(used)
        prev = r
    return logical, bands


def _cells_of(logical: list[list[list[_Placed]]], h_edges: list[tuple[float, float, float]]) -> list[Cell]:
    """One cell per column slot of each row; lines of a slot join with newlines."""
    cells: list[Cell] = []
    for ri, group in enumerate(logical):
        slots: dict[tuple[int, int], list[list[_Word]]] = {}
        for placed in group:
            for c0, c1, ws in placed:
                key = next((k for k in slots if k[0] <= c1 and c0 <= k[1]), None)
                if key is None:
                    slots[(c0, c1)] = [ws]
                else:
                    merged = (min(key[0], c0), max(key[1], c1))
                    slots[merged] = slots.pop(key) + [ws]
        for (c0, c1), wl in sorted(slots.items()):
            all_w = [w for ws in wl for w in ws]
            cells.append(
                Cell(
                    row=ri,
                    col=c0,
                    text="\n".join(" ".join(w.text for w in ws) for ws in wl),
                    col_span=c1 - c0 + 1,
                    bbox=_union([(w.x0, w.y0, w.x1, w.y1) for w in all_w]),
                )
            )
    return _join_row_spans(cells, h_edges)


def _centred_spans(cells: list[Cell], bands: list[tuple[float, float]]) -> None:
    """A one-line cell set midway between two rows, with the neighbouring slot empty, spans both rows
    ("6" beside the "OTSL" and "HTML" rows it belongs to)."""
    taken = {(c.row, k) for c in cells for k in range(c.col, c.col + c.col_span)}
    mid = [(a + b) / 2 for a, b in bands]
    for c in cells:
        if c.bbox is None or c.row_span != 1 or "\n" in c.text:
            continue
        cy = (c.bbox[1] + c.bbox[3]) / 2
        cols = range(c.col, c.col + c.col_span)
        for other in (c.row - 1, c.row + 1):
            if not 0 <= other < len(bands) or any((other, k) in taken for k in cols):
                continue
            pitch = abs(mid[other] - mid[c.row])
            if abs(cy - (mid[other] + mid[c.row]) / 2) < 0.2 * pitch < abs(cy - mid[c.row]) - 0.05 * pitch:
                c.row = min(c.row, other)
                c.row_span = 2
                taken.update((other, k) for k in cols)
                break


CONNECTOR_RE = re.compile(r"(-|,|&|/|\b(and|or|of|the|for|to|in|with|on|by))$", re.IGNORECASE)


def _join_row_spans(cells: list[Cell], h_edges: list[tuple[float, float, float]]) -> list[Cell]:
    """A label wrapped over rows that carry their own data ("Chronic fatigue" / "syndrome" beside
    "Count" / "Percentage"): the continuation joins the cell above, which then spans both rows.
    Never across a rule drawn under that cell."""

    def ruled_between(a: Cell, b: Cell) -> bool:
        if a.bbox is None or b.bbox is None:
            return False
        x0, x1 = max(a.bbox[0], b.bbox[0]), min(a.bbox[2], b.bbox[2])
        return any(a.bbox[3] - 1 <= y <= b.bbox[1] + 1 and p <= x1 and q >= x0 for y, p, q in h_edges)

    at = {(c.row, c.col): c for c in cells}
    per_row: dict[int, int] = {}
    numeric: dict[int, list[bool]] = {}
    for c in cells:
        per_row[c.row] = per_row.get(c.row, 0) + 1
        numeric.setdefault(c.col, []).append(_is_numeric(c.text))
    n_rows = max(per_row) + 1 if per_row else 0
    # a label column that names groups of rows is empty on many rows; one filled on every row is not
    text_cols = {col for col, flags in numeric.items() if sum(flags) <= 0.3 * len(flags) and len(flags) <= 0.7 * n_rows}
    out: list[Cell] = []
    for c in sorted(cells, key=lambda c: (c.row, c.col)):
        above = next((a for r in range(c.row - 1, -1, -1) if (a := at.get((r, c.col)))), None)
        if (
            above is not None
            and above in out
            and above.row + above.row_span == c.row
            and not ruled_between(above, c)
            and above.col_span == c.col_span
            and per_row[c.row] >= 2
            and c.col in text_cols
            and re.search(r"[^\W\d_]{3}", c.text) is not None
            and (c.text[:1].islower() or CONNECTOR_RE.search(above.text) is not None)
        ):
            above.text += "\n" + c.text
            above.row_span += 1
            if above.bbox and c.bbox:
                above.bbox = _union([above.bbox, c.bbox])
            at[(c.row, c.col)] = above
            continue
        out.append(c)
    return out


def _structure(rows: list[_Row], rules: _Rules, box: BBox) -> _Grid | None:
    """Lay the rows of one region out as a grid of cells."""
    width, height = box[2] - box[0], box[3] - box[1]
    v_in = [
        (x, min(b, box[3]) - max(a, box[1]))
        for x, a, b in rules.v
        if box[0] + 3 < x < box[2] - 3 and min(b, box[3]) - max(a, box[1]) > 0.3 * height
    ]
    # two or more column lines through (nearly) the whole table: all its columns are drawn
    rules_only = len({round(x) for x, span in v_in if span > 0.8 * height}) >= 2
    short = [x for x, a, b in rules.v if box[0] < x < box[2] and min(b, box[3]) - max(a, box[1]) > 3]
    cols = _column_bounds(rows, [x for x, _ in v_in], box, rules_only, short)
    n_cols = len(cols) - 1
    if n_cols < 2:
        return None
    lines = [(r, _merge_placed([p for c in r.chunks for p in _place(c, cols)])) for r in rows]
    if rules_only:
        v_box = [v for v in rules.v if box[0] - 3 <= v[0] <= box[2] + 3]
        lines = [(r, _widen_to_rules(r, placed, cols, v_box)) for r, placed in lines]
    # row boundaries: rules across the table and the top and bottom edges of shaded bands
    edges = rules.h + _merge_segments([(y, f[0], f[2]) for f in rules.fills for y in (f[1], f[3])])
    h_in = sorted(
        {round(y, 1) for y, a, b in edges if box[1] < y < box[3] and min(b, box[2]) - max(a, box[0]) > 0.6 * width}
    )
    logical, bands = _logical_rows(lines, h_in)
    cells = _cells_of(logical, edges)
    _centred_spans(cells, bands)
    n_rows = len(logical)
    header = _header_rows(cells, n_rows, n_cols)
    _header_row_spans(cells, header)
    for c in cells:
        c.header = c.row < header
    bbox = _union([c.bbox for c in cells if c.bbox])
    return _Grid(bbox=bbox, cols=cols, cells=cells, n_rows=n_rows)


def _starts_row(placed: list[_Placed]) -> bool:
    """A line that opens a new row: text in the first column starting with a capital or a digit."""
    first = placed[0]
    t = first[2][0].text
    return first[0] == 0 and (t[:1].isupper() or t[:1].isdigit())


def _is_numeric(text: str) -> bool:
    return NUMERIC_RE.match(text.strip()) is not None or text.strip() in {"-", "–", "—", "n/a", "x", ":"}


def _header_rows(cells: list[Cell], n_rows: int, n_cols: int) -> int:
    """How many leading rows are header: those above the first data row.

    A data row is nearly full and carries numbers in most of its filled data columns; a row with a
    cell spanning some (not all) columns is a header row (a group label). Without any number the
    first row is the header.
    """
    by_row: dict[int, list[Cell]] = {}
    for c in cells:
        by_row.setdefault(c.row, []).append(c)
    widest = max((len(v) for v in by_row.values()), default=0)
    for r in range(n_rows):
        row = by_row.get(r, [])
        if any(1 < c.col_span < n_cols for c in row):
            continue
        data = [c for c in row if c.col > 0]
        if len(row) >= 0.6 * widest and data and sum(_is_numeric(c.text) for c in data) >= max(1, len(data) / 2):
            return min(r, n_rows - 1)
    return 1 if n_rows > 1 else 0


def _header_row_spans(cells: list[Cell], header: int) -> None:
    """A stub header cell (no header text left of it on other header rows) with nothing above or below
    it inside the header spans those rows ("Country" beside "2007" over "n | %")."""
    if header < 2:
        return
    taken = {(r, k) for c in cells for r in range(c.row, c.row + c.row_span) for k in range(c.col, c.col + c.col_span)}
    for c in sorted((c for c in cells if c.row < header), key=lambda c: c.row):
        cols = range(c.col, c.col + c.col_span)
        # only a stub cell, left of everything in the header rows it would join
        if any(o is not c and o.row < header and o.col <= c.col and o.row != c.row for o in cells):
            continue
        while c.row > 0 and all((c.row - 1, k) not in taken for k in cols):
            c.row -= 1
            c.row_span += 1
            taken.update((c.row, k) for k in cols)
        while c.row + c.row_span < header and all((c.row + c.row_span, k) not in taken for k in cols):
            taken.update((c.row + c.row_span, k) for k in cols)
            c.row_span += 1


def _inside_count(items: list[BBox], box: BBox) -> int:
    return sum(1 for a in items if box[0] <= (a[0] + a[2]) / 2 <= box[2] and box[1] <= (a[1] + a[3]) / 2 <= box[3])


def _in_drawing(box: BBox, rules: _Rules) -> bool:
    """Whether short segments and artwork crowd around a borderless text block (a drawing's labels)."""
    pad = min(0.1 * max(box[2] - box[0], box[3] - box[1]), 12.0)
    near = (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad)
    width = box[2] - box[0]
    segments = [(a, y, b, y) for y, a, b in rules.h if b - a < 0.8 * width]
    segments += [(x, a, x, b) for x, a, b in rules.v]
    hits = sum(
        1 for s in segments + rules.art if s[0] <= near[2] and s[2] >= near[0] and s[1] <= near[3] and s[3] >= near[1]
    )
    return hits >= 4


def _plausible(grid: _Grid, rules: _Rules, region: BBox, mono: list[BBox]) -> bool:
    """Reject grids that are prose, lists, code, charts or diagrams rather than tables."""
    if grid.n_rows < 2 or len(grid.cols) < 3:
        return False
    n_cols = len(grid.cols) - 1
    filled = len(grid.cells)
    if filled < 4 or filled < 0.3 * grid.n_rows * n_cols:
        return False
    if sum(len(c.text) > 80 for c in grid.cells) > 0.3 * filled:
        return False
    if _inside_count(rules.art, _union([grid.bbox, region])) >= 3:
        return False  # curves, slanted lines, arrow heads: a chart, a diagram or a schematic
    area = (region[2] - region[0]) * (region[3] - region[1])
    text_area = (grid.bbox[2] - grid.bbox[0]) * (grid.bbox[3] - grid.bbox[1])
    if text_area < 0.25 * area:
        return False  # a few labels among many lines: a drawing, not a ruled table
    frame = _union([grid.bbox, region])
    fw, fh = frame[2] - frame[0], frame[3] - frame[1]
    long_rules = [(a, y, b, y) for y, a, b in rules.h if b - a > 0.5 * fw]
    long_rules += [(x, a, x, b) for x, a, b in rules.v if b - a > 0.5 * fh]
    ruled = _inside_count(long_rules, frame)
    inner = grid.bbox[0] + 2, grid.bbox[1] + 2, grid.bbox[2] - 2, grid.bbox[3] - 2
    if _inside_count(long_rules, inner) == 0 and sum(
        any(_overlap(c.bbox, m) > 0.5 for m in mono) for c in grid.cells if c.bbox
    ) >= 0.8 * len(grid.cells):
        return False  # monospaced text without inner rules: a code listing
    if ruled < 2 and grid.n_rows < 3:
        return False  # two borderless lines are too little evidence
    if ruled < 2 and _in_drawing(grid.bbox, rules):
        return False  # labels of a schematic or a chart that happen to line up
    if ruled < 2 and n_cols == 2:
        # two borderless columns without numbers: a definition list or legend unless it is long
        firsts = [c for c in grid.cells if c.col == 0]
        if sum(c.text.rstrip().endswith(":") for c in firsts) > 0.5 * len(firsts):
            return False
        data = [c for c in grid.cells if c.col > 0 and not c.header]
        if not any(_is_numeric(c.text) for c in data) and grid.n_rows < 5:
            return False
    return True


# ---------------------------------------------------------------------------------------------- public API


def _table_text(table: Table) -> str:
    return "\n".join(" | ".join(t.replace("\n", " ") for t in row) for row in table.grid())


def _dict_words(text: dict, mat: Matrix | None) -> list[_Word]:
    """Approximate word boxes from a text dict: spans cut at runs of two or more spaces.

    Positions inside a span are interpolated by character count; good enough to see whether a page
    has column-aligned text at all, before paying for exact word boxes.
    """
    out: list[_Word] = []
    for block in text.get("blocks", []):
        for line in block.get("lines", []):
            dx, dy = line.get("dir", (1.0, 0.0))
            if mat is not None:
                dx, dy = mat[0] * dx + mat[2] * dy, mat[1] * dx + mat[3] * dy
            if abs(dy) > 0.1:
                continue  # a line that does not run across the displayed page
            for span in line.get("spans", []):
                t = span.get("text", "")
                x0, y0, x1, y1 = span["bbox"]
                n = max(len(t), 1)
                for m in re.finditer(r"\S+(?: \S+)*", t):
                    a = x0 + (x1 - x0) * m.start() / n
                    b = x0 + (x1 - x0) * m.end() / n
                    bx = _box(a, y0, b, y1, mat)
                    if bx[2] > bx[0] and bx[3] > bx[1]:
                        out.append(_Word(*bx, m.group()))
    return out


def _regions(words: list[_Word], rules: _Rules, page: pymupdf.Rect) -> list[BBox]:
    """Candidate table regions: ruled frames with text, and runs of column-aligned rows."""
    rows = _group_rows(words)
    if not rows:
        return []
    line_h = statistics.median(r.h for r in rows)
    for r in rows:
        r.chunks = _split_chunks(r, rules.v, COLUMN_GAP_EM)
    ruled = [b for b in _ruled_regions(rules, rows, line_h) if len(_rows_in(words, b)) >= 2]
    # text outside the ruled regions may still hold borderless tables; look in each page column apart
    free_words = [w for w in words if not any(_word_in(w, b) for b in ruled)] if ruled else words
    aligned: list[BBox] = []
    for part in _split_at_gutters(free_words, rows, page.width):
        part_rows = _group_rows(part) if len(part) != len(words) else rows
        for r in part_rows:
            r.chunks = _split_chunks(r, rules.v, COLUMN_GAP_EM)
        aligned += _aligned_regions(part_rows, page)
    return _merge_regions(ruled + aligned)


def extract_tables(
    page: pymupdf.Page, page_number: int, text: dict | None = None, drawings: list[dict] | None = None
) -> list[Block]:
    """Table blocks of one page.

    The page's drawings and its text dict decide first, cheaply, whether any region could hold a
    table; only then are exact word boxes extracted and the regions laid out as grids.

    Args:
        page: the PyMuPDF page.
        page_number: 1-based page number (for block ids and `Block.page`).
        text: `page.get_text("dict")` when the caller already has it; it is reused, not recomputed.
        drawings: `page.get_cdrawings()` (page frame, not rotated), likewise.

    Returns:
        Blocks of kind "table" with ids `p{page_number}-t{i}`, each carrying a `Table` of cells and a
        plain-text rendering; bboxes in PDF points of the displayed page, top-left origin.
    """
    mat = tuple(page.rotation_matrix) if page.rotation else None
    rules = _page_rules(page, mat, drawings)
    if text is None:
        text = page.get_text("dict")
    if not _regions(_dict_words(text, mat), rules, page.rect):
        return []
    words = _page_words(page, mat)
    mono = [
        _box(*span["bbox"], mat)
        for block in text.get("blocks", [])
        for line in block.get("lines", [])
        for span in line.get("spans", [])
        if MONO_FONT_RE.search(span.get("font", ""))
    ]
    return _tables(words, rules, page.rect, page_number, mono)


def tables_from_ocr(lines: list[tuple[str, BBox]], page_rect: pymupdf.Rect, page_number: int) -> list[Block]:
    """Table blocks of a scanned page from its OCR text lines.

    Args:
        lines: (text, bbox) per OCR text line, bbox in PDF points of the displayed page.
        page_rect: the displayed page rectangle.
        page_number: 1-based page number.

    Returns:
        Blocks as `extract_tables` makes them. A scan has no vector rulings, so only tables whose
        text lines up in columns are found.
    """
    words = [_Word(*box, text.strip()) for text, box in lines if text.strip() and box[2] > box[0] and box[3] > box[1]]
    return _tables(words, _Rules([], [], [], []), page_rect, page_number, [])


def _tables(
    words: list[_Word], rules: _Rules, page_rect: pymupdf.Rect, page_number: int, mono: list[BBox]
) -> list[Block]:
    """Find the regions among these words and rulings, lay each out as a grid, keep the plausible ones."""
    if len(words) < 4:
        return []
    blocks: list[Block] = []
    taken: list[BBox] = []
    for box in sorted(_regions(words, rules, page_rect), key=lambda b: (b[1], b[0])):
        sub = _rows_in(words, box)
        if len(sub) < 2:
            continue
        for r in sub:
            r.chunks = _split_chunks(r, rules.v, CELL_GAP_EM)
        grid = _structure(sub, rules, box)
        if grid is None or not _plausible(grid, rules, box, mono):
            continue
        if any(_overlap(grid.bbox, t) > 0.5 for t in taken):
            continue
        taken.append(grid.bbox)
        table = Table(n_rows=grid.n_rows, n_cols=len(grid.cols) - 1, cells=grid.cells)
        blocks.append(
            Block(
                id=f"p{page_number}-t{len(blocks)}",
                kind="table",
                page=page_number,
                bbox=tuple(round(v, 2) for v in grid.bbox),
                text=_table_text(table),
                table=table,
            )
        )
    return blocks


def _merge_regions(boxes: list[BBox]) -> list[BBox]:
    """Fuse candidate boxes that overlap (a ruled frame and the aligned rows inside it)."""
    out = [tuple(b) for b in boxes]
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                if _overlap(out[i], out[j]) > 0.3:
                    out[i] = _union([out[i], out[j]])
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return out


RUNNING_KINDS = frozenset({"page_header", "page_footer"})
CONTINUED_RE = re.compile(r"\(?\b(continued|cont'?d|cont\.|suite|fortsetzung)\b", re.IGNORECASE)
TABLE_LABEL_RE = re.compile(r"^\s*(Table|Tab\.)\s*([A-Z]?\d+([.\-–]\d+)*)", re.IGNORECASE)


def _column_centres(table: Table) -> list[float] | None:
    """X-centre of each column from its single-column cells (None where boxes are missing)."""
    spans: dict[int, list[float]] = {}
    for c in table.cells:
        if c.col_span == 1 and c.bbox is not None:
            spans.setdefault(c.col, []).extend([c.bbox[0], c.bbox[2]])
    if len(spans) < table.n_cols:
        return None
    return [(min(spans[i]) + max(spans[i])) / 2 for i in range(table.n_cols)]


def _first_row(table: Table) -> list[str]:
    return [re.sub(r"\W+", "", t).lower() for t in (table.grid() or [[]])[0]]


def _label(block: Block) -> str | None:
    m = TABLE_LABEL_RE.match(block.label or block.text)
    return m.group(2) if m else None


def _continues(
    first: Block, second: Block, between: list[Block], first_label: str | None, heights: tuple[float, float]
) -> bool:
    """Whether `second` (top of the next page) carries on `first` (bottom of the page before)."""
    a, b = first.table, second.table
    if a is None or b is None:
        return False
    announced = False  # "Table 4. Pin Functions (continued)" names the first part
    for blk in between:
        if blk.kind in RUNNING_KINDS:
            continue
        if blk.kind == "caption" and (CONTINUED_RE.search(blk.text) or (first_label and _label(blk) == first_label)):
            announced = announced or bool(first_label and _label(blk) == first_label and CONTINUED_RE.search(blk.text))
            continue
        return False  # a caption of another table, a paragraph or a figure sits between them
    if (heights[0] and first.bbox[3] < 0.5 * heights[0]) or (heights[1] and second.bbox[1] > 0.5 * heights[1]):
        return False  # not at the foot of one page and the head of the next
    if announced:
        return True  # the document says so, even where a short part's columns came out differently
    if a.n_cols != b.n_cols:
        return False
    ca, cb = _column_centres(a), _column_centres(b)
    width = max(first.bbox[2] - first.bbox[0], second.bbox[2] - second.bbox[0], 1.0)
    if ca is not None and cb is not None and any(abs(x - y) > 0.08 * width for x, y in zip(ca, cb)):
        return False
    # the later part either repeats the header or starts straight with data
    return b.header_rows() == 0 or _first_row(b) == _first_row(a)


def merge_split_tables(doc: Document) -> Document:
    """Link a table continued on the next page to its first part.

    Where a table ends in the lower half of page N and another starts in the upper half of page N+1
    with the same column count and compatible column positions, a repeated header or none, and
    nothing between them but running headers/footers or a "(continued)" caption, the later table's
    `continues` names the earlier block and a `continues` link (later → earlier) joins them. Chains
    across several pages follow.
    """
    order = {blk.id: i for i, blk in enumerate(doc.blocks)}
    tables = doc.tables()
    linked = {lk.source for lk in doc.links if lk.kind == "continues"}
    for first, second in zip(tables, tables[1:]):
        if second.page != first.page + 1 or second.id in linked:
            continue
        i, j = order[first.id], order[second.id]
        between = doc.blocks[i + 1 : j]
        label = None
        for k in range(i - 1, -1, -1):  # the caption above the first part, on its page
            if doc.blocks[k].page != first.page:
                break
            if doc.blocks[k].kind == "caption":
                label = _label(doc.blocks[k])
                break
        sizes = doc.page_sizes
        heights = (
            sizes[first.page - 1][1] if len(sizes) >= first.page else 0.0,
            sizes[second.page - 1][1] if len(sizes) >= second.page else 0.0,
        )
        if _continues(first, second, between, label, heights):
            second.table.continues = first.id  # type: ignore[union-attr]
            doc.links.append(Link(source=second.id, target=first.id, kind="continues"))
            linked.add(second.id)
    return doc
