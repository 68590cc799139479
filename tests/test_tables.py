"""Table extraction on PDFs built here (ruled, borderless, spanning, split, none) and on real ICDAR pages."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from pipelines.document import Block, Cell, Document, Table
from pipelines.tables import extract_tables, merge_split_tables, tables_from_ocr

PROSE = (
    "The converter keeps its output in regulation while the input moves between the limits given in the "
    "recommended operating conditions, and it recovers from a load step within a few switching cycles."
)


def put_text(page: pymupdf.Page, x: float, y: float, text: str, size: float = 9.0, font: str = "helv") -> None:
    """Text whose baseline starts at (x, y) of the page as displayed, rotated pages included."""
    page.insert_text(
        pymupdf.Point(x, y) * page.derotation_matrix, text, fontname=font, fontsize=size, rotate=page.rotation
    )


def put_line(page: pymupdf.Page, a: tuple[float, float], b: tuple[float, float]) -> None:
    m = page.derotation_matrix
    page.draw_line(pymupdf.Point(a) * m, pymupdf.Point(b) * m, width=0.6)


def draw_table(
    page: pymupdf.Page,
    x0: float,
    y0: float,
    widths: list[float],
    rows: list[list[str]],
    ruled: bool = True,
    row_h: float = 16.0,
    size: float = 9.0,
) -> pymupdf.Rect:
    """Draw a table (numbers right-aligned, text left-aligned); with `ruled`, a full grid of lines."""
    xs = [x0]
    for w in widths:
        xs.append(xs[-1] + w)
    for r, row in enumerate(rows):
        base = y0 + r * row_h + row_h * 0.7
        for c, text in enumerate(row):
            if text:
                right = r > 0 and text.replace(".", "").replace("-", "").isdigit()
                width = pymupdf.get_text_length(text, fontname="helv", fontsize=size)
                put_text(page, xs[c + 1] - 4 - width if right else xs[c] + 4, base, text, size)
    box = pymupdf.Rect(x0, y0, xs[-1], y0 + len(rows) * row_h)
    if ruled:
        for r in range(len(rows) + 1):
            put_line(page, (x0, y0 + r * row_h), (xs[-1], y0 + r * row_h))
        for x in xs:
            put_line(page, (x, y0), (x, box.y1))
    return box


def prose(page: pymupdf.Page, y: float, lines: int = 4) -> float:
    """Running text across the page; returns the y below it."""
    rect = pymupdf.Rect(72, y, 540, y + 14 * lines)
    page.insert_textbox(rect, " ".join([PROSE] * lines), fontname="helv", fontsize=10)
    return rect.y1 + 10


def grid_of(block: Block) -> list[list[str]]:
    assert block.table is not None
    return [[t.replace("\n", " ") for t in row] for row in block.table.grid()]


ELECTRICAL = [
    ["PARAMETER", "MIN", "TYP", "MAX", "UNIT"],
    ["Input voltage", "2.7", "5.0", "5.5", "V"],
    ["Quiescent current", "", "35", "60", "uA"],
    ["Switching frequency", "1.8", "2.1", "2.4", "MHz"],
    ["Output current", "", "", "600", "mA"],
]


def test_ruled_table_is_found_with_its_grid_and_header() -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    y = prose(page, 72)
    page.insert_text((72, y + 10), "Table 1. Electrical Characteristics", fontname="hebo", fontsize=10)
    box = draw_table(page, 72, y + 20, [180, 60, 60, 60, 60], ELECTRICAL)
    prose(page, box.y1 + 20)
    blocks = extract_tables(page, 1)
    assert len(blocks) == 1
    t = blocks[0]
    assert t.kind == "table" and t.page == 1 and t.id == "p1-t0"
    assert grid_of(t) == ELECTRICAL
    assert t.table.header_rows() == 1
    assert all(c.header == (c.row == 0) for c in t.cells)
    got = pymupdf.Rect(t.bbox)
    assert box.contains(got) and got.get_area() > 0.7 * box.get_area()
    assert "Quiescent current | " in t.text
    assert "Table 1" not in t.text and PROSE[:30] not in t.text  # caption and prose stay outside


def test_borderless_table_from_aligned_columns() -> None:
    rows = [["Device", "IOUT", "VIN min", "VIN max"]] + [
        [f"OL35{i}1", f"{i * 100}", f"{2 + i / 10:.1f}", f"{5 + i:.1f}"] for i in range(1, 7)
    ]
    doc = pymupdf.open()
    page = doc.new_page()
    y = prose(page, 72)
    draw_table(page, 90, y + 10, [110, 80, 80, 80], rows, ruled=False, row_h=14)
    prose(page, y + 10 + 14 * len(rows) + 20)
    blocks = extract_tables(page, 3)
    assert [b.id for b in blocks] == ["p3-t0"]
    assert grid_of(blocks[0]) == rows


def test_spanning_header_and_wrapped_cell() -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    x0, y0, w = 72.0, 120.0, [140.0, 70.0, 70.0, 70.0, 70.0]
    xs = [x0 + sum(w[:i]) for i in range(len(w) + 1)]
    # header: "Condition" stands beside both header rows; each group label spans two columns
    put_text(page, xs[0] + 4, y0 + 20, "Condition")
    for label, (a, b) in (("25 C", (xs[1], xs[3])), ("85 C", (xs[3], xs[5]))):
        put_text(page, (a + b) / 2 - pymupdf.get_text_length(label, fontsize=9) / 2, y0 + 11, label)
    for i, label in enumerate(["min", "max", "min", "max"]):
        put_text(page, xs[1 + i] + 4, y0 + 27, label)
    body = [["Light load, forced", "10", "20", "12", "24"], ["Heavy load", "30", "40", "33", "44"]]
    for r, row in enumerate(body):
        for c, text in enumerate(row):
            put_text(page, xs[c] + 4, y0 + 43 + r * 30, text)
    put_text(page, xs[0] + 4, y0 + 54, "PWM mode")  # the first label wraps
    # rules: frame, row lines, a line under the group labels (over the data columns only), column lines
    for y in (y0, y0 + 32, y0 + 62, y0 + 92):
        put_line(page, (xs[0], y), (xs[-1], y))
    put_line(page, (xs[1], y0 + 16), (xs[-1], y0 + 16))
    for i, x in enumerate(xs):
        put_line(page, (x, y0 + 16 if i in (2, 4) else y0), (x, y0 + 92))
    blocks = extract_tables(page, 1)
    assert len(blocks) == 1
    t = blocks[0].table
    assert t is not None and t.n_cols == 5
    cells = {(c.row, c.col): c for c in t.cells}
    heads = {c.text: c for c in t.cells if c.header}
    assert (heads["25 C"].row, heads["25 C"].col, heads["25 C"].col_span) == (0, 1, 2)
    assert (heads["85 C"].row, heads["85 C"].col, heads["85 C"].col_span) == (0, 3, 2)
    assert (heads["Condition"].row, heads["Condition"].col, heads["Condition"].row_span) == (0, 0, 2)
    assert sorted(c.text for c in t.cells if c.header and c.row == 1) == ["max", "max", "min", "min"]
    first = next(c for c in t.cells if c.text.startswith("Light load"))
    assert first.text.replace("\n", " ") == "Light load, forced PWM mode" and not first.header
    assert cells[(first.row, 4)].text == "24" and t.header_rows() == 2 and t.n_rows == 4


def test_page_without_tables_finds_none() -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 60), "3 Detailed Description", fontname="hebo", fontsize=14)
    page.draw_line((72, 66), (540, 66), width=0.8)  # heading rule
    y = prose(page, 80, 6)
    for i in range(4):  # a bulleted list
        page.insert_text((80, y + i * 14), f"•   feature number {i + 1} of the device", fontname="helv", fontsize=10)
    y += 70
    for x in (72, 316):  # two columns of running text
        page.insert_textbox(pymupdf.Rect(x, y, x + 224, y + 200), " ".join([PROSE] * 3), fontsize=9)
    # a figure: a curve, axes and tick labels that line up
    page.draw_line((100, 560), (100, 720), width=0.8)
    page.draw_line((100, 720), (400, 720), width=0.8)
    page.draw_bezier((100, 720), (180, 560), (260, 700), (400, 580), width=1)
    for i in range(5):
        page.insert_text((80, 720 - i * 40), f"{i * 20}", fontsize=7)
        page.insert_text((100 + i * 75, 732), f"{i * 25}", fontsize=7)
    page.draw_line((72, 780), (540, 780), width=0.5)  # footer rule
    page.insert_text((72, 792), "Copyright 2026 Ohmlens", fontsize=7)
    page.insert_text((530, 792), "7", fontsize=7)
    assert extract_tables(page, 7) == []


def _split_doc(tmp: Path, caption_between: str | None, second_widths: list[float] | None = None) -> Document:
    """A table at the foot of page 1 continued at the head of page 2 (header repeated)."""
    header = ["PIN", "NAME", "I/O", "DESCRIPTION"]
    body = [[str(i), f"GPIO{i}", "I" if i % 2 else "O", f"General purpose line {i}"] for i in range(1, 25)]
    widths = [50.0, 80.0, 50.0, 250.0]
    pdf = pymupdf.open()
    p1 = pdf.new_page()
    y = prose(p1, 72, 25)
    p1.insert_text((72, y + 8), "Table 4. Pin Functions", fontname="hebo", fontsize=10)
    draw_table(p1, 72, y + 16, widths, [header] + body[:12])
    p2 = pdf.new_page()
    top = 60.0
    if caption_between:
        p2.insert_text((72, top), caption_between, fontname="hebo", fontsize=10)
        top += 10
    draw_table(p2, 72, top, second_widths or widths, [header] + body[12:])
    prose(p2, top + 16 * 13 + 30)
    path = tmp / "split.pdf"
    pdf.save(path)
    opened = pymupdf.open(path)
    blocks = [b for i, page in enumerate(opened) for b in extract_tables(page, i + 1)]
    if caption_between:
        cap = Block(id="p2-c0", kind="caption", page=2, bbox=(72, top - 20, 300, top - 8), text=caption_between)
        blocks.insert(1, cap)
    return Document(
        id="x", source="split.pdf", page_sizes=[(p.rect.width, p.rect.height) for p in opened], blocks=blocks
    )


def test_table_split_across_pages_is_linked(tmp_path: Path) -> None:
    doc = merge_split_tables(_split_doc(tmp_path, None))
    first, second = doc.tables()
    assert (first.page, second.page) == (1, 2)
    assert second.table is not None and second.table.continues == first.id
    assert [(lk.source, lk.target, lk.kind) for lk in doc.links] == [(second.id, first.id, "continues")]
    assert merge_split_tables(doc).links == doc.links  # running the stage again adds nothing


def test_continued_caption_between_parts_is_allowed(tmp_path: Path) -> None:
    doc = merge_split_tables(_split_doc(tmp_path, "Table 4. Pin Functions (continued)"))
    first, second = doc.tables()
    assert second.table is not None and second.table.continues == first.id


def test_another_tables_caption_or_other_columns_stop_the_merge(tmp_path: Path) -> None:
    doc = merge_split_tables(_split_doc(tmp_path, "Table 5. Register Map"))
    assert doc.links == [] and all(t.table and t.table.continues is None for t in doc.tables())
    doc = merge_split_tables(_split_doc(tmp_path, None, second_widths=[50.0, 180.0, 50.0, 150.0]))
    assert doc.links == []


def test_text_dict_is_reused_and_rotated_pages_use_the_displayed_frame() -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.set_rotation(90)  # shown as landscape; the table reads upright on the turned page
    box = draw_table(page, 300, 100, [180, 60, 60, 60, 60], ELECTRICAL)
    text = page.get_text("dict")
    blocks = extract_tables(page, 1, text)
    assert len(blocks) == 1 and grid_of(blocks[0]) == ELECTRICAL
    got = pymupdf.Rect(blocks[0].bbox)
    assert page.rect.contains(got) and box.contains(got) and got.get_area() > 0.7 * box.get_area()
    assert [b.bbox for b in extract_tables(page, 1)] == [blocks[0].bbox]


def test_tables_from_ocr_lines_of_a_scan() -> None:
    # what an OCR engine returns for a scanned page: one box per text line, cells as separate lines
    header = ["VIN", "VOUT", "IOUT", "EFFICIENCY"]
    body = [["12 V", "5 V", "1 A", "93.1 %"], ["12 V", "5 V", "3 A", "90.4 %"], ["24 V", "5 V", "3 A", "88.2 %"]]
    lines = [("Thermal performance depends on the board layout and the copper area around the pad.", (72, 80, 520, 92))]
    for r, row in enumerate([header] + body):
        y = 120 + 16 * r
        lines += [(text, (140 + 90 * c, y, 140 + 90 * c + 7 * len(text), y + 11)) for c, text in enumerate(row)]
    lines.append(("Figure 12-1. Efficiency against load current", (200, 200, 420, 212)))
    blocks = tables_from_ocr(lines, pymupdf.Rect(0, 0, 612, 792), 116)
    assert [b.id for b in blocks] == ["p116-t0"]
    assert grid_of(blocks[0]) == [header] + body and blocks[0].table.header_rows() == 1
    assert tables_from_ocr(lines[:1] + lines[-1:], pymupdf.Rect(0, 0, 612, 792), 116) == []


@pytest.mark.data
def test_icdar_pages_match_the_human_ground_truth() -> None:
    from tests.benchmarks.bench_tables import ICDAR, adjacency, detection, gt_regions, load_gt_cells

    if not ICDAR.exists():
        pytest.skip(f"real data set tables-icdar2013-eu not found at {ICDAR}")
    for stem in ("eu-001", "eu-027"):
        pdf = ICDAR / f"{stem}.pdf"
        blocks = [b for i, page in enumerate(pymupdf.open(pdf)) for b in extract_tables(page, i + 1)]
        tp, fp, fn = detection(gt_regions(ICDAR / f"{stem}-reg.xml", pdf), [(b.page, b.bbox) for b in blocks])
        assert fp == 0 and fn == 0, stem
        pred = [
            [(c.row, c.col, c.row + c.row_span - 1, c.col + c.col_span - 1, c.text) for c in b.cells] for b in blocks
        ]
        a_tp, a_fp, a_fn = adjacency(load_gt_cells(ICDAR / f"{stem}-str.xml"), pred)
        assert 2 * a_tp / (2 * a_tp + a_fp + a_fn) > 0.95, stem


def _announced_split(caption: str | None, second_cols: int) -> Document:
    first = Block("p1-b2", "table", 1, (72, 600, 500, 740), table=Table(2, 3, [Cell(0, c, f"h{c}") for c in range(3)]))
    second = Block(
        "p2-b2", "table", 2, (72, 90, 500, 140), table=Table(1, second_cols, [Cell(0, 0, "x"), Cell(0, 1, "y")])
    )
    blocks = [Block("p1-b1", "caption", 1, (72, 580, 400, 595), "Table 4. Pin Functions"), first]
    if caption:
        blocks.append(Block("p2-b1", "caption", 2, (72, 70, 400, 85), caption))
    blocks.append(second)
    return Document(id="x", source="x.pdf", page_sizes=[(612, 792), (612, 792)], blocks=blocks)


def test_continued_caption_links_parts_whose_columns_differ() -> None:
    doc = merge_split_tables(_announced_split("Table 4. Pin Functions (continued)", 2))
    assert [(lk.source, lk.target) for lk in doc.links if lk.kind == "continues"] == [("p2-b2", "p1-b2")]
    assert merge_split_tables(_announced_split(None, 2)).links == []
    assert merge_split_tables(_announced_split("Table 5. Other (continued)", 2)).links == []
