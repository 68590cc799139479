"""Links: captions to their tables and figures, and every in-text mention to the block it names.

`link_document` is a pipeline stage (`Document → Document`). It

1. reads each caption ("Table 3. Absolute maximum ratings", "Figure 7-2 …", "Fig. 4:"), sets its `label`
   ("Table 3", "Figure 7-2"), pairs it with the nearest table or figure/schematic on the same page (tables
   usually sit below their caption, figures above) and labels that block too (`caption` links);
2. labels display equations that end in a number "(3)" as "Equation 3";
3. finds every mention of a table, figure, section, equation or page in paragraph, list and caption text
   ("see Table 3", "Fig. 7-2", "(Figures 4 and 5)", "Tables 5–7", "Section 8.3", "§8.3", "Eq. (3)",
   "on page 12") and resolves it (`xref` links, one per target of a multi-target mention). Mentions that
   cannot be resolved — no such label, or a reference into another document ("Table 4 of the EVM User's
   Guide") — are kept with `target=None`, never guessed;
4. links paragraphs that point at a table or figure without naming it ("the following table", "the curves
   below") to the nearest one in that direction (`semantic` links, lower score).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipelines.document import Block, Document, Link

TEXT_KINDS = frozenset({"paragraph", "list_item", "caption"})
TABLE_KINDS = frozenset({"table"})
FIGURE_KINDS = frozenset({"figure", "schematic"})
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2212"

# ---------------------------------------------------------------- captions

CAPTION_RE = re.compile(
    r"^\s*(?P<kw>Tables?|Tab\.|Figures?|Figs?\.?|Schematics?)\s*"
    r"(?P<num>(?:[A-Z][-.]?)?\d+(?:[-.\u2010\u2011\u2013]\d+)*)(?P<sub>[a-z])?"
    r"\s*(?P<delim>[.:\u2013\u2014|-]|(?=\s)|$)",
    re.IGNORECASE,
)
EQUATION_NUMBER_RE = re.compile(r"\((\d{1,3})\)\s*$")
MATH_RELATION_RE = re.compile(r"[=<>\u2264\u2265\u2248\u221d]")
MAX_CAPTION_GAP = 120.0  # points between a caption and its table or figure
PROMOTE_GAP = 40.0  # a paragraph that reads like a caption must sit this close to a table/figure
LONG_CAPTION = 160  # an unpaired "caption" longer than this is a paragraph that starts with a mention


def _norm_num(num: str) -> str:
    return re.sub(f"[{_DASHES}]", "-", num)


def caption_label(text: str, strict: bool = False) -> tuple[str, str] | None:
    """The (kind, label) a caption text names, e.g. ("table", "Table 3"), or None.

    Args:
        text: the caption text.
        strict: require punctuation after the number ("Table 3." / "Figure 2:"), as a paragraph must have to
            be taken for a caption ("Table 3 lists …" is a sentence, not a caption).
    """
    m = CAPTION_RE.match(text)
    if not m:
        return None
    if strict and m.group("delim") in ("", None):
        return None
    kw = m.group("kw").lower()
    num = _norm_num(m.group("num"))
    if kw.startswith("tab"):
        return "table", f"Table {num}"
    return "figure", f"Figure {num}"


def reads_as_sentence(text: str) -> bool:
    """A "caption" that is really a sentence starting with a mention: "Table 38 when sizing …", "Fig. 4 shows …".

    Real captions put punctuation after the number or go on with a capitalised title ("Figure 3 Block Diagram").
    """
    m = CAPTION_RE.match(text)
    if not m or m.group("delim") not in ("", None):
        return False
    rest = text[m.end() :].lstrip()
    return bool(re.match(r"[a-z(]", rest))


def _continues_paragraph(prev: Block | None, b: Block) -> bool:
    """Whether a block is the next line of the paragraph before it (flush left, no gap)."""
    if prev is None or prev.kind not in ("paragraph", "list_item"):
        return False
    return abs(prev.bbox[0] - b.bbox[0]) < 2.0 and -4.0 <= b.bbox[1] - prev.bbox[3] <= 3.0


def _x_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Horizontal overlap as a fraction of the narrower box."""
    inter = min(a[2], b[2]) - max(a[0], b[0])
    narrow = max(1.0, min(a[2] - a[0], b[2] - b[0]))
    return max(0.0, inter) / narrow


def _pair_cost(cap: Block, kind: str, target: Block) -> float | None:
    """Cost of attaching a caption to a block; None when they cannot belong together."""
    c, t = cap.bbox, target.bbox
    if t[1] >= c[3] - 2:  # target below the caption
        gap, below = t[1] - c[3], True
    elif t[3] <= c[1] + 2:  # target above
        gap, below = c[1] - t[3], False
    else:  # overlapping vertically: only a caption drawn inside the figure's box
        if not (t[0] - 2 <= c[0] and c[2] <= t[2] + 2):
            return None
        gap, below = 0.0, kind == "table"
    if gap > MAX_CAPTION_GAP:
        return None
    ov = _x_overlap(c, t)
    if ov <= 0.05:
        return None
    preferred = below if kind == "table" else not below
    cost = gap + (0.0 if preferred else 25.0) + (1.0 - ov) * 40.0
    if (kind == "table") != (target.kind in TABLE_KINDS):
        cost += 150.0  # e.g. a table drawn as a picture
    return cost


def attach_captions(doc: Document) -> list[Link]:
    """Label captions and their tables/figures; returns the caption links.

    Paragraphs that read like a caption ("Table 3. Title", with punctuation after the number) and sit right next
    to a table or figure are turned into captions first.
    """
    by_page: dict[int, list[Block]] = {}
    for b in doc.blocks:
        by_page.setdefault(b.page, []).append(b)
        if b.kind in TABLE_KINDS | FIGURE_KINDS | {"caption"}:
            b.label = None  # captions are the only source of these labels: recompute them all
    links: list[Link] = []
    unmatched: list[tuple[Block, str, str]] = []
    taken: set[str] = set()
    for _page, blocks in sorted(by_page.items()):
        targets = [b for b in blocks if b.kind in TABLE_KINDS | FIGURE_KINDS]
        captions: list[tuple[Block, str, str]] = []
        prev: Block | None = None
        for b in blocks:
            demoted = b.kind == "caption" and (reads_as_sentence(b.text) or _continues_paragraph(prev, b))
            if demoted:
                b.kind = "paragraph"  # a sentence that begins with a mention was split off as a caption
            if b.kind not in ("page_header", "page_footer"):
                prev = b
            if b.kind == "caption":
                found = caption_label(b.text)
            elif b.kind == "paragraph" and not demoted and len(b.text) < 250:
                found = caption_label(b.text, strict=True)
                if found and not any(
                    (cost := _pair_cost(b, found[0], t)) is not None and cost < PROMOTE_GAP for t in targets
                ):
                    found = None
                if found:
                    b.kind = "caption"
            else:
                found = None
            if found:
                b.label = found[1]
                captions.append((b, found[0], found[1]))
        pairs = []
        for ci, (cap, kind, _label) in enumerate(captions):
            for t in targets:
                cost = _pair_cost(cap, kind, t)
                if cost is not None:
                    pairs.append((cost, ci, t.id))
        pairs.sort()
        done: set[int] = set()
        for _cost, ci, tid in pairs:
            if ci in done or tid in taken:
                continue
            cap, _kind, label = captions[ci]
            target = doc.block(tid)
            target.label = label
            links.append(Link(cap.id, tid, "caption", label))
            done.add(ci)
            taken.add(tid)
        for ci in range(len(captions)):
            if ci in done:
                continue
            cap = captions[ci][0]
            if len(cap.text) > LONG_CAPTION:
                cap.kind, cap.label = "paragraph", None  # "Figure 11-20. When the pin …": a sentence, not a caption
            else:
                unmatched.append(captions[ci])
    links += _attach_across_pages(unmatched, by_page, taken)
    return links


def _attach_across_pages(
    unmatched: list[tuple[Block, str, str]], by_page: dict[int, list[Block]], taken: set[str]
) -> list[Link]:
    """A table caption that ends a page belongs to the first table of the next page; a figure caption that opens a
    page, to the last figure of the previous page."""
    links = []
    for cap, kind, label in unmatched:
        page_blocks = [b for b in by_page.get(cap.page, []) if b.kind not in ("page_header", "page_footer")]
        target = None
        if kind == "table" and page_blocks and page_blocks[-1] is cap:
            nxt = [b for b in by_page.get(cap.page + 1, []) if b.kind in TABLE_KINDS and b.id not in taken]
            target = nxt[0] if nxt else None
        elif kind == "figure" and page_blocks and page_blocks[0] is cap:
            prev = [b for b in by_page.get(cap.page - 1, []) if b.kind in FIGURE_KINDS and b.id not in taken]
            target = prev[-1] if prev else None
        if target is not None:
            target.label = label
            taken.add(target.id)
            links.append(Link(cap.id, target.id, "caption", label, score=0.8))
    return links


def label_equations(doc: Document) -> None:
    """Label display equations numbered at the right ("… (3)") as "Equation 3"."""
    for b in doc.blocks:
        if b.kind == "formula" or (b.kind == "paragraph" and len(b.text) < 160 and MATH_RELATION_RE.search(b.text)):
            m = EQUATION_NUMBER_RE.search(b.text)
            if m:
                b.label = f"Equation {int(m.group(1))}"
                if b.kind == "paragraph":
                    b.kind = "formula"


# ---------------------------------------------------------------- mentions

_SEP = r"(?:\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or|to|through|thru)\s+|\s*[\u2013\u2014]\s*|\s*&\s*|-(?=\(?\d))"
_LABEL_NUM = r"(?:[A-Z][-.]?)?\d+(?:[-.\u2010\u2011]\d+)*(?![\w-])"
_SECTION_NUM = r"[A-Z]?\d+(?:\.\d+)*(?![\w-])"
_EQ_NUM = r"\(\d{1,3}\)|\d{1,3}(?![\w-])(?!\.\d)"
_PAGE_NUM = r"\d{1,5}(?!\w)(?!\.\d)"

_KINDS: list[tuple[str, str, str]] = [
    ("table", r"(?i:tables?|tabs?\.)", _LABEL_NUM),
    ("figure", r"(?i:figures?|figs?\.)", _LABEL_NUM),
    ("section", r"(?i:sections?|sects?\.|chapters?)|\u00a7\u00a7?", _SECTION_NUM),
    ("equation", r"(?i:equations?|eqs?\.|eqns?\.)", _EQ_NUM),
    ("page", r"(?:[Pp]ages?|pp?\.)", _PAGE_NUM),
]
MENTION_RE = re.compile(
    "|".join(
        rf"(?P<{kind}>(?<![\w-])(?P<{kind}_kw>{kw})\s*(?P<{kind}_nums>(?:{num})(?:{_SEP}(?:{num}))*))"
        for kind, kw, num in _KINDS
    )
)
_ITEM_RE = {kind: re.compile(rf"({num})|({_SEP})") for kind, _kw, num in _KINDS}
_RANGE_WORDS = ("to", "through", "thru")

EXTERNAL_AFTER_RE = re.compile(
    r"^\)?\s*(?:of|in|from)\s+(?:the\s+)?(?:[\w\-/®™]+\s+){0,6}?"
    r"(?:user'?s?\s+guide|guide|data\s*sheet|datasheet|application\s+(?:note|report)|app\s+note|standard|"
    r"specification|manual|handbook|book|paper|report|(?-i:[A-Z]{2,}[\w\-]*\d[\w\-]*))",
    re.IGNORECASE,
)
PAGE_DISTRACTOR_RE = re.compile(
    r"(?:register|memory|flash|eeprom|ram|rom|code|display|config(?:uration)?|web|bank|buffer)\s*$",
    re.IGNORECASE,
)


@dataclass
class Mention:
    """One mention found in a block's text: its span, kind and the keys it names."""

    kind: str
    start: int
    end: int
    keys: list[str]  # "Table 3", "Figure 7-2", "8.3", "Equation 3", "12"
    text: str
    ranged: bool = False
    external: bool = False


def _split_items(kind: str, nums: str) -> tuple[list[str], list[str], list[int]]:
    """The numbers of a mention, the separators between them, and where each number ends in `nums`."""
    items: list[str] = []
    seps: list[str] = []
    ends: list[int] = []
    for m in _ITEM_RE[kind].finditer(nums):
        if m.group(1):
            items.append(m.group(1))
            ends.append(m.end())
        else:
            seps.append(m.group(2).strip().lower())
    return items, seps[: max(0, len(items) - 1)], ends


def _shape(num: str) -> tuple[int, bool]:
    return (len(re.findall(r"[-.]", _norm_num(num))), num[:1].isalpha())


def _expand_range(a: str, b: str) -> list[str] | None:
    """All numbers from a to b when they differ only in their last component (7-4…7-6, 5…7), else None."""
    pa = re.split(r"([-.])", _norm_num(a))
    pb = re.split(r"([-.])", _norm_num(b))
    if len(pa) != len(pb) or pa[:-1] != pb[:-1] or not (pa[-1].isdigit() and pb[-1].isdigit()):
        return None
    lo, hi = int(pa[-1]), int(pb[-1])
    if not 0 <= hi - lo <= 50:
        return None
    prefix = "".join(pa[:-1])
    return [f"{prefix}{n}" for n in range(lo, hi + 1)]


def find_mentions(text: str) -> list[Mention]:
    """Every table/figure/section/equation/page mention in a text, in order."""
    out: list[Mention] = []
    for m in MENTION_RE.finditer(text):
        kind = next(k for k, _kw, _n in _KINDS if m.group(k))
        items, seps, ends = _split_items(kind, m.group(f"{kind}_nums"))
        if not items:
            continue
        # a list keeps going only while its items look alike ("Table 3, 4.5 V" is one table)
        first = _shape(items[0].strip("()"))
        keep = 1
        while keep < len(items) and _shape(items[keep].strip("()")) == first:
            keep += 1
        items, seps = items[:keep], seps[: keep - 1]
        end = m.start(f"{kind}_nums") + ends[keep - 1]
        mention_text = text[m.start(kind) : end]
        keys, ranged = _keys(kind, items, seps)
        mention = Mention(kind, m.start(kind), end, keys, mention_text, ranged)
        if kind == "page" and PAGE_DISTRACTOR_RE.search(text[: m.start(kind)]):
            continue
        ext = EXTERNAL_AFTER_RE.match(text[end:])
        mention.external = ext is not None and not re.search(r"\b(?:this|these|our|present)\b", ext.group(0), re.I)
        out.append(mention)
    return out


def _keys(kind: str, items: list[str], seps: list[str]) -> tuple[list[str], bool]:
    """Expand ranges ("5–7", "7-4 through 7-6") and make the lookup keys for one mention."""
    nums = [i.strip("()") for i in items]
    out: list[str] = []
    ranged = False
    i = 0
    while i < len(nums):
        if i < len(seps) and (seps[i] in _RANGE_WORDS or seps[i] in ("\u2013", "\u2014", "-")) and i + 1 < len(nums):
            span = _expand_range(nums[i], nums[i + 1])
            if span:
                out += span
                ranged = True
                i += 2
                continue
        out.append(nums[i])
        i += 1
    if kind == "table":
        return [f"Table {_norm_num(n)}" for n in out], ranged
    if kind == "figure":
        return [f"Figure {_norm_num(n)}" for n in out], ranged
    if kind == "equation":
        return [f"Equation {int(n)}" for n in out], ranged
    return out, ranged


# ---------------------------------------------------------------- resolution


MERGED_HEADING_RE = re.compile(r"^\s*(\d+(?:\.\d+)+)\s*(?=[A-Z][a-z]{2,})")
TOC_ENTRY_RE = re.compile(r"^\s*[A-Z]?\d+(?:\.\d+)*\.?\s+\S.*?(?:\s|\.{2,})\d{1,4}\s*$")


class _Resolver:
    """Lookup tables from labels, section numbers and page numbers to target blocks."""

    def __init__(self, doc: Document) -> None:
        self.labels: dict[str, Block] = {}
        self.caption_labels: dict[str, Block] = {}
        for b in doc.blocks:
            if not b.label:
                continue
            if b.kind in TABLE_KINDS | FIGURE_KINDS | {"formula"}:
                held = self.labels.get(b.label)
                # a split table carries its label on every part: the first part is the target
                if held is None or (held.table and held.table.continues and not (b.table and b.table.continues)):
                    self.labels[b.label] = b
            elif b.kind == "caption":
                self.caption_labels.setdefault(b.label, b)
        self.sections = self._sections(doc)
        self.pages = self._pages(doc)
        self.page_map = _printed_page_map(doc)

    @staticmethod
    def _sections(doc: Document) -> dict[str, Block]:
        """Section number → heading block; entries of a table of contents lose to the headings themselves."""
        outline_ids = {o.block for o in doc.outline if o.block}
        toc_lines: dict[int, int] = {}
        for b in doc.blocks:
            if TOC_ENTRY_RE.match(b.text):
                toc_lines[b.page] = toc_lines.get(b.page, 0) + 1
        toc_pages = {p for p, n in toc_lines.items() if n >= 5}
        found: dict[str, tuple[float, Block]] = {}
        for b in doc.blocks:
            if b.kind != "heading":
                continue
            m = re.match(
                r"^\s*(?:(?:section|chapter)\s+|\u00a7\s*)?([A-Z]?\d+(?:\.\d+)*)\.?\s+\S",
                b.text,
                re.IGNORECASE,
            )
            if not m or "...." in b.text:
                continue
            num = m.group(1)
            depth = num.count(".") + 1
            rank = (0 if b.id in outline_ids else 2) + (0 if b.level in (None, depth) else 1)
            rank += 4 if b.page in toc_pages or TOC_ENTRY_RE.match(b.text) else 0
            if num not in found or rank < found[num][0]:
                found[num] = (rank, b)
        # headings merged into their paragraph (common on OCRed pages): "15.4 Discussion At 24-V input …"
        for b in doc.blocks:
            if b.kind not in ("paragraph", "list_item"):
                continue
            m = MERGED_HEADING_RE.match(b.text)
            if m and found.get(m.group(1), (99,))[0] > 3 and not TOC_ENTRY_RE.match(b.text):
                found[m.group(1)] = (3.5, b)  # beats a table-of-contents entry, loses to a real heading
        return {k: v for k, (_r, v) in found.items()}

    @staticmethod
    def _pages(doc: Document) -> dict[int, Block]:
        first: dict[int, Block] = {}
        fallback: dict[int, Block] = {}
        for b in doc.blocks:
            fallback.setdefault(b.page, b)
            if b.kind not in ("page_header", "page_footer"):
                first.setdefault(b.page, b)
        return {**fallback, **first}

    def resolve(self, m: Mention) -> list[tuple[Block | None, float]]:
        if m.external:
            return [(None, 0.0)] * len(m.keys)
        out: list[tuple[Block | None, float]] = []
        for key in m.keys:
            base = 0.95 if m.ranged else 1.0
            if m.kind in ("table", "figure", "equation"):
                b = self.labels.get(key)
                hyphen_range = self._hyphen_range(key) if b is None else None
                if hyphen_range:
                    out += [(t, 0.9) for t in hyphen_range]
                elif b is not None:
                    out.append((b, base))
                elif key in self.caption_labels:
                    out.append((self.caption_labels[key], 0.8 * base))
                else:
                    out.append((None, 0.0))
            elif m.kind == "section":
                b = self.sections.get(key)
                out.append((b, base) if b is not None else (None, 0.0))
            else:
                page = self.page_map.get(int(key), int(key))
                b = self.pages.get(page)
                out.append((b, 0.9 * base) if b is not None else (None, 0.0))
        return out

    def _hyphen_range(self, key: str) -> list[Block] | None:
        """ "Tables 5-7" written with a hyphen: a range when no "Table 5-7" exists but Tables 5 to 7 do."""
        m = re.fullmatch(r"(Table|Figure) (\d+)-(\d+)", key)
        if not m or not 0 < int(m.group(3)) - int(m.group(2)) <= 20:
            return None
        blocks = [self.labels.get(f"{m.group(1)} {n}") for n in range(int(m.group(2)), int(m.group(3)) + 1)]
        return [b for b in blocks if b is not None] if all(blocks) else None


def _printed_page_map(doc: Document) -> dict[int, int]:
    """Printed page number → physical page, read from numbers in running headers/footers.

    Only used when the printed numbers follow the physical ones with one constant offset on most pages
    (front matter numbered separately, say); otherwise printed numbers are taken as physical.
    """
    offsets: dict[int, int] = {}
    seen: dict[int, int] = {}
    for b in doc.blocks:
        if b.kind not in ("page_header", "page_footer"):
            continue
        for tok in re.findall(r"(?<![\w.,-])\d{1,4}(?![\w.,-])", b.text):
            n = int(tok)
            if 0 < n <= 10 * max(1, doc.page_count):
                seen.setdefault(b.page, n)
    for page, n in seen.items():
        offsets[page - n] = offsets.get(page - n, 0) + 1
    if not offsets:
        return {}
    offset, votes = max(offsets.items(), key=lambda kv: kv[1])
    if offset == 0 or votes < max(3, len(seen) // 2):
        return {}
    return {n: n + offset for n in range(1, doc.page_count + 1)}


# ---------------------------------------------------------------- implicit mentions

DEICTIC_RE = re.compile(
    r"\b(?:the|this)\s+(?:(?:following|next|preceding|previous)\s+(?P<k1>table|figure|diagram|graph|plot|curves?|"
    r"schematic|circuit)|(?P<k2>table|figure|diagram|graph|plot|curves?|schematic|circuit|values)\s+"
    r"(?P<dir>below|above))\b",
    re.IGNORECASE,
)


_STOPWORDS = frozenset(
    "the and for with from over into vs versus of to in on at by a an typical example design output input".split()
)


def _title_word(caption: str) -> str | None:
    """The first content word of a caption's title ("Figure 10-5. Efficiency vs Output Current" → "efficiency")."""
    m = CAPTION_RE.match(caption)
    title = caption[m.end() :] if m else caption
    for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", title):
        if w.lower() not in _STOPWORDS:
            return w.lower()
    return None


def _implicit_links(doc: Document, caption_of: dict[str, Block], named: set[str]) -> list[Link]:
    """Paragraphs that discuss a table or figure without naming it.

    Deictic phrases ("the following table", "the curves below") point to the nearest one in that direction.
    A paragraph that names nothing but sits next to a captioned table or figure and opens with the caption's
    first title word ("Efficiency stays above 90 % …" under "Efficiency vs Output Current") discusses it.
    """
    order = {b.id: i for i, b in enumerate(doc.blocks)}
    links = []
    for b in doc.blocks:
        if b.kind not in ("paragraph", "list_item"):
            continue
        m = DEICTIC_RE.search(b.text)
        if not m:
            if b.id not in named:
                links += _topical_link(doc, b, order, caption_of)
            continue
        noun = (m.group("k1") or m.group("k2")).lower()
        backwards = (
            (m.group("dir") or "").lower() == "above"
            or "preceding" in m.group(0).lower()
            or "previous" in m.group(0).lower()
        )
        want = TABLE_KINDS if noun in ("table", "values") else FIGURE_KINDS
        i = order[b.id]
        seq: Iterable[Block] = reversed(doc.blocks[:i]) if backwards else doc.blocks[i + 1 :]
        for t in seq:
            if abs(t.page - b.page) > 1:
                break
            if t.kind in want:
                links.append(Link(b.id, t.id, "semantic", m.group(0), score=0.6))
                break
    return links


def _topical_link(doc: Document, b: Block, order: dict[str, int], caption_of: dict[str, Block]) -> list[Link]:
    first = re.match(r"\W*([A-Za-z][A-Za-z-]+)", b.text)
    if not first:
        return []
    word = first.group(1).lower()
    i = order[b.id]
    near = [t for t in doc.blocks[max(0, i - 4) : i + 5] if t.page == b.page and t.id in caption_of]
    near.sort(key=lambda t: (abs(order[t.id] - i), order[t.id] > i))  # closest first, the one above on a tie
    for t in near:
        if _title_word(caption_of[t.id].text) == word:
            return [Link(b.id, t.id, "semantic", word, score=0.4)]
    return []


# ---------------------------------------------------------------- the stage


def link_document(doc: Document) -> Document:
    """Attach captions, label equations and resolve every mention; replaces earlier caption/xref links."""
    doc.links = [lk for lk in doc.links if lk.kind not in ("caption", "xref")]
    caption_links = attach_captions(doc)
    label_equations(doc)
    resolver = _Resolver(doc)
    xrefs: list[Link] = []
    named: set[str] = set()  # blocks that mention a table or figure by label
    for b in doc.blocks:
        if b.kind not in TEXT_KINDS or not b.text:
            continue
        for m in find_mentions(b.text):
            if m.kind in ("table", "figure"):
                named.add(b.id)
            if b.kind == "caption" and m.start <= 2 and b.label and m.keys == [b.label]:
                continue  # the caption's own label
            seen: set[str | None] = set()
            for target, score in resolver.resolve(m):
                tid = target.id if target is not None else None
                if tid is not None and tid in seen:
                    continue
                seen.add(tid)
                xrefs.append(Link(b.id, tid, "xref", m.text, round(score, 3)))
    existing = {(lk.source, lk.target, lk.text) for lk in doc.links if lk.kind == "semantic"}
    caption_of = {lk.target: doc.block(lk.source) for lk in caption_links if lk.target}
    implicit = [lk for lk in _implicit_links(doc, caption_of, named) if (lk.source, lk.target, lk.text) not in existing]
    doc.links += caption_links + xrefs + implicit
    return doc
