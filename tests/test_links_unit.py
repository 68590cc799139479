"""Links on hand-built documents: caption attachment, mention grammar, resolution, unresolved listing."""

from __future__ import annotations

import pytest

from pipelines.document import Block, Document, Link, OutlineEntry, Table
from pipelines.links import caption_label, find_mentions, link_document


def blk(bid: str, kind: str, page: int, bbox: tuple[float, float, float, float], text: str = "", **kw) -> Block:
    return Block(bid, kind, page, bbox, text, **kw)


def table(bid: str, page: int, bbox: tuple[float, float, float, float], continues: str | None = None) -> Block:
    return Block(bid, "table", page, bbox, table=Table(2, 2, [], continues=continues))


def xrefs(doc: Document) -> list[tuple[str, str | None, str]]:
    return [(lk.source, lk.target, lk.text) for lk in doc.links if lk.kind == "xref"]


def captions(doc: Document) -> dict[str, str | None]:
    return {lk.source: lk.target for lk in doc.links if lk.kind == "caption"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Table 3. Absolute Maximum Ratings", ("table", "Table 3")),
        ("Figure 7-2. Functional Block Diagram", ("figure", "Figure 7-2")),
        ("Fig. 4: Efficiency", ("figure", "Figure 4")),
        ("Figure 7\u20132 Start-up", ("figure", "Figure 7-2")),
        ("TABLE 12 ELECTRICAL CHARACTERISTICS", ("table", "Table 12")),
        ("Table A-1. Register reset values", ("table", "Table A-1")),
        ("The table lists values", None),
    ],
)
def test_caption_label(text: str, expected: tuple[str, str] | None) -> None:
    assert caption_label(text) == expected


def test_caption_label_strict_needs_punctuation() -> None:
    assert caption_label("Table 3 lists the limits.", strict=True) is None
    assert caption_label("Table 3. Limits", strict=True) == ("table", "Table 3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see Table 3.", [("Table 3", ["Table 3"])]),
        ("as Fig. 7-2 shows", [("Fig. 7-2", ["Figure 7-2"])]),
        ("(Figures 4 and 5)", [("Figures 4 and 5", ["Figure 4", "Figure 5"])]),
        ("Tables 5\u20137 list", [("Tables 5\u20137", ["Table 5", "Table 6", "Table 7"])]),
        ("Tables 5, 6, and 8", [("Tables 5, 6, and 8", ["Table 5", "Table 6", "Table 8"])]),
        ("Figures 7-4 through 7-6", [("Figures 7-4 through 7-6", ["Figure 7-4", "Figure 7-5", "Figure 7-6"])]),
        ("Figs. 10-2 and 10-3", [("Figs. 10-2 and 10-3", ["Figure 10-2", "Figure 10-3"])]),
        ("Section 8.3.", [("Section 8.3", ["8.3"])]),
        ("in \u00a78.3 and \u00a7 9.1", [("\u00a78.3", ["8.3"]), ("\u00a7 9.1", ["9.1"])]),
        ("Sections 8.2 and 8.3", [("Sections 8.2 and 8.3", ["8.2", "8.3"])]),
        ("Chapter 8 covers", [("Chapter 8", ["8"])]),
        ("Eq. (3) gives", [("Eq. (3)", ["Equation 3"])]),
        ("Equation 3.", [("Equation 3", ["Equation 3"])]),
        ("Eqs. (3) and (4)", [("Eqs. (3) and (4)", ["Equation 3", "Equation 4"])]),
        ("Equations (3)\u2013(5)", [("Equations (3)\u2013(5)", ["Equation 3", "Equation 4", "Equation 5"])]),
        ("shown on page 12.", [("page 12", ["12"])]),
        ("pp. 12-14", [("pp. 12-14", ["12", "13", "14"])]),
        ("Table 3, 4.5 V input", [("Table 3", ["Table 3"])]),
        ("a figure of merit, this section, the next page", []),
        ("Writes to register page 1 need a key", []),
        ("a 3-page note", []),
    ],
)
def test_find_mentions(text: str, expected: list[tuple[str, list[str]]]) -> None:
    assert [(m.text, m.keys) for m in find_mentions(text)] == expected


def test_external_references_are_flagged() -> None:
    ms = find_mentions(
        "Measured data are in Table 4 of the OL-EVM User's Guide; widths follow Section 6.2 of IPC-2221."
    )
    assert [(m.text, m.external) for m in ms] == [("Table 4", True), ("Section 6.2", True)]
    assert not find_mentions("See Table 4 of this document.")[0].external


def _sample_doc() -> Document:
    """Three pages: a captioned table (caption above), two side-by-side figures (captions below), headings,
    an equation, a TOC entry and paragraphs that mention all of them."""
    blocks = [
        blk("p1-b0", "page_header", 1, (54, 35, 558, 46), "OL3521 datasheet"),
        blk("p1-b1", "heading", 1, (54, 60, 300, 75), "1 Contents", level=1),
        blk("p1-b2", "paragraph", 1, (54, 80, 558, 92), "8.3 Soft Start ............ 3"),
        blk("p1-b3", "paragraph", 1, (54, 100, 558, 160), "Limits are in Table 3 (see Figures 7-1 and 7-2)."),
        blk("p1-b4", "list_item", 1, (54, 170, 558, 182), "\u2022 Tables 3\u20134 and Section 8.3 and Eq. (2)"),
        blk("p1-b5", "paragraph", 1, (54, 190, 558, 202), "Table 9 does not exist; neither does page 40."),
        blk("p1-b6", "paragraph", 1, (54, 210, 558, 222), "The layout on page 3 and \u00a78.3 and Chapter 8."),
        blk("p1-b7", "page_footer", 1, (54, 750, 558, 762), "Copyright 1"),
        blk("p2-b0", "caption", 2, (200, 60, 400, 72), "Table 3. Absolute Maximum Ratings"),
        table("p2-b1", 2, (54, 78, 558, 300)),
        blk("p2-b2", "figure", 2, (54, 320, 290, 500)),
        blk("p2-b3", "schematic", 2, (320, 320, 558, 500)),
        blk("p2-b4", "caption", 2, (100, 506, 250, 518), "Figure 7-1. Efficiency"),
        blk("p2-b5", "caption", 2, (360, 506, 520, 518), "Figure 7-2. Application Circuit (see Table 3)"),
        blk("p2-b6", "caption", 2, (200, 530, 400, 542), "Table 4. Pin Functions"),
        table("p2-b7", 2, (54, 548, 558, 740)),
        blk("p3-b0", "caption", 3, (200, 60, 400, 72), "Table 4. Pin Functions (continued)"),
        table("p3-b1", 3, (54, 78, 558, 200), continues="p2-b7"),
        blk("p3-b2", "heading", 3, (54, 210, 300, 225), "8.3 Soft Start", level=2),
        blk("p3-b3", "heading", 3, (54, 230, 300, 245), "8 Detailed Description", level=1),
        blk("p3-b4", "formula", 3, (150, 250, 558, 262), "tSS = CSS \u00d7 VREF / ISS (2)"),
        blk("p3-b5", "paragraph", 3, (54, 270, 558, 282), "The following table lists the modes."),
        table("p3-b6", 3, (54, 290, 558, 400)),
    ]
    return Document("x", "t.pdf", [(612.0, 792.0)] * 3, blocks)


def test_link_document_captions_and_labels() -> None:
    doc = link_document(_sample_doc())
    assert captions(doc) == {
        "p2-b0": "p2-b1",  # table caption above its table
        "p2-b4": "p2-b2",  # side-by-side figures: each caption to the figure above it
        "p2-b5": "p2-b3",
        "p2-b6": "p2-b7",
        "p3-b0": "p3-b1",  # "(continued)" caption to the continuation
    }
    assert doc.block("p2-b1").label == "Table 3"
    assert doc.block("p2-b3").label == "Figure 7-2"
    assert doc.block("p3-b1").label == "Table 4"
    assert doc.block("p3-b4").label == "Equation 2"
    assert doc.block("p3-b6").label is None


def test_link_document_xrefs() -> None:
    doc = link_document(_sample_doc())
    got = xrefs(doc)
    assert ("p1-b3", "p2-b1", "Table 3") in got
    assert ("p1-b3", "p2-b2", "Figures 7-1 and 7-2") in got
    assert ("p1-b3", "p2-b3", "Figures 7-1 and 7-2") in got
    # a range; a split table resolves to its first part; sections to the heading, not the TOC line
    assert ("p1-b4", "p2-b1", "Tables 3\u20134") in got
    assert ("p1-b4", "p2-b7", "Tables 3\u20134") in got
    assert ("p1-b4", "p3-b2", "Section 8.3") in got
    assert ("p1-b4", "p3-b4", "Eq. (2)") in got
    # unresolved mentions are listed with no target, never guessed
    assert ("p1-b5", None, "Table 9") in got
    assert ("p1-b5", None, "page 40") in got
    # pages to the first content block of the page (headers skipped); chapters to the level-1 heading
    assert ("p1-b6", "p3-b0", "page 3") in got
    assert ("p1-b6", "p3-b2", "\u00a78.3") in got
    assert ("p1-b6", "p3-b3", "Chapter 8") in got
    # a caption's own label is not a mention; other mentions in captions are
    assert not [x for x in got if x[0] == "p2-b4"]
    assert ("p2-b5", "p2-b1", "Table 3") in got
    # no mention in running headers/footers or tables; nothing for the TOC line
    assert not [x for x in got if x[0] in ("p1-b0", "p1-b7", "p1-b2")]
    semantic = [(lk.source, lk.target) for lk in doc.links if lk.kind == "semantic"]
    assert semantic == [("p3-b5", "p3-b6")]


def test_link_document_is_idempotent() -> None:
    doc = link_document(_sample_doc())
    first = sorted((lk.source, lk.target, lk.kind, lk.text) for lk in doc.links)
    doc = link_document(doc)
    assert sorted((lk.source, lk.target, lk.kind, lk.text) for lk in doc.links) == first


def test_keeps_other_links() -> None:
    doc = _sample_doc()
    doc.links = [Link("p3-b1", "p2-b7", "continues"), Link("p1-b3", "p2-b1", "xref", "stale")]
    doc = link_document(doc)
    assert [lk for lk in doc.links if lk.kind == "continues"] == [Link("p3-b1", "p2-b7", "continues")]
    assert not [lk for lk in doc.links if lk.text == "stale"]


def test_sentence_split_off_as_caption_is_a_paragraph() -> None:
    """Ingest may split a paragraph line that starts with a mention into a caption block."""
    blocks = [
        blk("p1-b0", "paragraph", 1, (54, 100, 558, 136), "The limits for every supply condition are in"),
        blk("p1-b1", "caption", 1, (54, 135, 400, 147), "Table 3 when sizing the components."),
        blk("p1-b2", "caption", 1, (54, 160, 558, 172), "Fig. 2 shows the circuit."),
        blk("p2-b0", "caption", 2, (200, 60, 400, 72), "Table 3. Ratings"),
        table("p2-b1", 2, (54, 78, 558, 300)),
        blk("p2-b2", "figure", 2, (54, 320, 558, 500)),
        blk("p2-b3", "caption", 2, (200, 506, 400, 518), "Figure 2. Circuit"),
    ]
    doc = link_document(Document("x", "t.pdf", [(612.0, 792.0)] * 2, blocks))
    assert doc.block("p1-b1").kind == "paragraph"
    assert ("p1-b1", "p2-b1", "Table 3") in xrefs(doc)
    assert ("p1-b2", "p2-b2", "Fig. 2") in xrefs(doc)
    assert captions(doc) == {"p2-b0": "p2-b1", "p2-b3": "p2-b2"}


def test_paragraph_that_is_a_caption_is_promoted() -> None:
    blocks = [
        blk("p1-b0", "paragraph", 1, (200, 60, 400, 72), "Table 1. Ordering Information"),
        table("p1-b1", 1, (54, 78, 558, 300)),
        blk("p1-b2", "paragraph", 1, (54, 320, 558, 332), "Table 1 lists the orderable devices."),
    ]
    doc = link_document(Document("x", "t.pdf", [(612.0, 792.0)], blocks))
    assert doc.block("p1-b0").kind == "caption"
    assert captions(doc) == {"p1-b0": "p1-b1"}
    assert xrefs(doc) == [("p1-b2", "p1-b1", "Table 1")]


def test_external_mentions_stay_unresolved() -> None:
    blocks = [
        blk("p1-b0", "caption", 1, (200, 60, 400, 72), "Table 4. Ratings"),
        table("p1-b1", 1, (54, 78, 558, 300)),
        blk("p1-b2", "paragraph", 1, (54, 320, 558, 332), "Data are given in Table 4 of the OL-EVM User's Guide."),
    ]
    doc = link_document(Document("x", "t.pdf", [(612.0, 792.0)], blocks))
    assert xrefs(doc) == [("p1-b2", None, "Table 4")]


def test_caption_at_page_end_takes_next_pages_table() -> None:
    blocks = [
        blk("p1-b0", "paragraph", 1, (54, 100, 558, 600), "Body text."),
        blk("p1-b1", "caption", 1, (200, 700, 400, 712), "Table 2. Register Map"),
        blk("p1-b2", "page_footer", 1, (54, 750, 558, 762), "1"),
        table("p2-b0", 2, (54, 72, 558, 300)),
    ]
    doc = link_document(Document("x", "t.pdf", [(612.0, 792.0)] * 2, blocks))
    assert captions(doc) == {"p1-b1": "p2-b0"}


def test_printed_page_numbers_with_offset() -> None:
    """Front matter numbered apart: printed page n is physical page n + 2, as the footers show."""
    blocks = []
    for p in range(1, 9):
        blocks.append(blk(f"p{p}-b0", "heading", p, (54, 60, 300, 75), f"{p} Chapter", level=1))
        blocks.append(blk(f"p{p}-b1", "page_footer", p, (54, 750, 558, 762), f"Manual {p - 2}" if p > 2 else "ii"))
    blocks.append(blk("p8-b2", "paragraph", 8, (54, 100, 558, 112), "See page 3 for details."))
    doc = link_document(Document("x", "t.pdf", [(612.0, 792.0)] * 8, blocks))
    assert xrefs(doc) == [("p8-b2", "p5-b0", "page 3")]


def test_section_prefers_outline_heading() -> None:
    blocks = [
        blk("p1-b0", "heading", 1, (54, 60, 300, 75), "2.1 Overview", level=2),
        blk("p2-b0", "heading", 2, (54, 60, 300, 75), "2.1 Overview", level=2),
        blk("p3-b0", "paragraph", 3, (54, 100, 558, 112), "See Section 2.1."),
    ]
    doc = Document("x", "t.pdf", [(612.0, 792.0)] * 3, blocks, outline=[OutlineEntry("2.1 Overview", 2, 2, "p2-b0")])
    assert xrefs(link_document(doc)) == [("p3-b0", "p2-b0", "Section 2.1")]


def test_paragraph_discussing_a_figure_without_naming_it() -> None:
    blocks = [
        blk("p1-b0", "figure", 1, (54, 60, 290, 240)),
        blk("p1-b1", "caption", 1, (80, 246, 260, 258), "Figure 10-5. Efficiency vs Output Current"),
        blk("p1-b2", "paragraph", 1, (54, 270, 558, 294), "Efficiency stays above 90 % from 0.5 A to full load."),
        blk("p1-b3", "paragraph", 1, (54, 300, 558, 324), "Efficiency is also listed in Figure 10-5."),
        blk("p1-b4", "paragraph", 1, (54, 330, 558, 354), "Thermal limits apply at all loads."),
    ]
    doc = link_document(Document("x", "t.pdf", [(612.0, 792.0)], blocks))
    semantic = [(lk.source, lk.target) for lk in doc.links if lk.kind == "semantic"]
    # the naming paragraph gets an xref instead; an unrelated paragraph gets nothing
    assert semantic == [("p1-b2", "p1-b0")]
