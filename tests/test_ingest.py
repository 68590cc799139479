"""PDF ingest: structure, reading order, OCR, bad input."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pymupdf
import pytest

from pipelines import ingest
from pipelines.document import Document
from pipelines.ingest import PdfError, parse_page_range, parse_pdf


def test_headings_levels_lists_captions_and_running_text(text_pdf: Path) -> None:
    doc = parse_pdf(text_pdf)
    kinds = {b.text: b.kind for b in doc.blocks}
    assert kinds["1 Section Number 1"] == "heading"
    assert kinds["1.1 Details of part 1"] == "heading"
    levels = {b.text: b.level for b in doc.blocks if b.kind == "heading"}
    assert levels["2 Section Number 2"] == 1 and levels["2.1 Details of part 2"] == 2
    assert sum(b.kind == "list_item" for b in doc.blocks) == 6
    assert sum(b.kind == "caption" for b in doc.blocks) == 3
    assert all(b.kind == "page_header" for b in doc.blocks if "Datasheet" in b.text)
    assert all(b.kind == "page_footer" for b in doc.blocks if b.text.strip().isdigit())
    assert [o.title for o in doc.outline if o.level == 1] == [f"{n} Section Number {n}" for n in (1, 2, 3)]
    assert doc.blocks[0].id == "p1-b1" and all(b.page in (1, 2, 3) for b in doc.blocks)


def test_two_columns_read_left_column_first(two_column_pdf: Path) -> None:
    doc = parse_pdf(two_column_pdf)
    body = [b.text[:20] for b in doc.blocks if b.text.startswith("Column")]
    assert body == [f"Column {c} paragraph {i}"[:20] for c in (1, 2) for i in (1, 2, 3)]
    assert doc.blocks[0].kind == "heading"


def test_scanned_page_is_ocred_and_flagged(scanned_pdf: Path) -> None:
    doc = parse_pdf(scanned_pdf)
    text = " ".join(b.text for b in doc.blocks).upper()
    assert "SUPPLY VOLTAGE" in text
    assert all(b.ocr for b in doc.blocks) and doc.metadata["ocr_pages"] == [1]
    assert Document.from_json(doc.to_json()) == doc  # OCR geometry serialises


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="background OCR runs tesseract subprocesses")
def test_image_only_pages_are_ocred_in_background_threads(
    scanned_pdf: Path, text_pdf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixed = pymupdf.open(text_pdf)
    mixed.insert_pdf(pymupdf.open(scanned_pdf))
    mixed.insert_pdf(pymupdf.open(scanned_pdf))
    mixed.save(tmp_path / "mixed.pdf")
    threads: list[str] = []
    recognise = ingest._recognise

    def spy(image: bytes, scale: float) -> list:
        threads.append(threading.current_thread().name)
        return recognise(image, scale)

    monkeypatch.setattr(ingest, "_recognise", spy)
    doc = parse_pdf(tmp_path / "mixed.pdf")
    assert doc.metadata["ocr_pages"] == [4, 5]
    assert len(threads) == 2 and threading.main_thread().name not in threads
    with pymupdf.open(tmp_path / "mixed.pdf") as pdf:  # same lines as recognising inline
        inline = ingest._ocr_blocks(ingest.ocr_page(pdf[3]))
    assert [b.text for b in doc.blocks if b.page == 4 and b.kind != "table"] == [t for t, _, _ in inline]


def test_page_range_limits_pages(text_pdf: Path) -> None:
    doc = parse_pdf(text_pdf, pages="2-3")
    assert {b.page for b in doc.blocks} == {2, 3}
    assert parse_page_range("1,3-4", 10) == [1, 3, 4]
    for bad in ("x", "3-1", "0"):
        with pytest.raises(PdfError):
            parse_page_range(bad, 10)
    with pytest.raises(PdfError, match="outside"):
        parse_page_range("50-60", 10)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("png", "not a PDF"),
        ("truncated", "corrupt or truncated"),
        ("encrypted", "encrypted"),
        ("no_pages", "no pages"),
        ("zero", "empty"),
    ],
)
def test_bad_inputs_raise_one_line_errors(bad_inputs: dict[str, Path], name: str, message: str) -> None:
    with pytest.raises(PdfError, match=message) as err:
        parse_pdf(bad_inputs[name])
    assert "\n" not in str(err.value)


def test_encrypted_pdf_opens_with_password(bad_inputs: dict[str, Path]) -> None:
    with pytest.raises(PdfError, match="wrong password"):
        parse_pdf(bad_inputs["encrypted"], password="nope")
    doc = parse_pdf(bad_inputs["encrypted"], password="secret")
    assert any("Section Number" in b.text for b in doc.blocks)


def test_huge_image_page_is_rendered_within_pixel_cap(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=14400, height=14400)  # the largest page PDF allows: 200 inches
    pix = pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 64, 64), 0)
    pix.clear_with(255)
    page.insert_image(page.rect, pixmap=pix)
    path = tmp_path / "huge.pdf"
    doc.save(path)
    parsed = parse_pdf(path, crops_dir=tmp_path / "crops")
    assert parsed.page_count == 1 and not parsed.problems


def test_broken_page_is_reported_not_fatal(text_pdf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.ingest as ingest

    real = ingest.parse_page

    def flaky(page, number, *args):
        if number == 2:
            raise RuntimeError("bad content stream")
        return real(page, number, *args)

    monkeypatch.setattr(ingest, "parse_page", flaky)
    doc = parse_pdf(text_pdf)
    assert doc.problems == ["page 2: RuntimeError: bad content stream"]
    assert {b.page for b in doc.blocks} == {1, 3}


def test_vector_figure_is_cropped_with_caption(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 80), "Some introductory text about the circuit.", fontsize=10)
    shape = page.new_shape()
    shape.draw_polyline([(100, 200), (140, 200), (150, 185), (160, 215), (170, 185), (180, 215), (190, 200)])
    shape.draw_line((190, 200), (260, 200))
    shape.draw_circle((280, 200), 20)
    shape.draw_line((280, 220), (280, 290))
    shape.draw_line((265, 290), (295, 290))
    shape.finish(color=(0, 0, 0), width=1)
    shape.commit()
    page.insert_text((100, 330), "Figure 1. A drawing", fontsize=9)
    path = tmp_path / "fig.pdf"
    doc.save(path)
    parsed = parse_pdf(path, crops_dir=tmp_path / "crops")
    figures = [b for b in parsed.blocks if b.kind in ("figure", "schematic")]
    assert len(figures) == 1 and (tmp_path / "crops" / figures[0].image).exists()
    caption = next(b for b in parsed.blocks if b.kind == "caption")
    assert any(lk.kind == "caption" and lk.source == caption.id and lk.target == figures[0].id for lk in parsed.links)


def test_schematic_blocks_carry_their_circuits_in_page_points() -> None:
    sample = Path(__file__).resolve().parents[1] / "samples" / "datasheet-small.pdf"
    assert all(b.circuit is None for b in parse_pdf(sample, pages="1").blocks)
    doc = parse_pdf(sample, pages="1", circuits=True)
    (block,) = [b for b in doc.blocks if b.kind == "schematic"]
    comps = block.circuit.components
    assert len(comps) >= 5 and len(block.circuit.nets) >= 2
    x0, y0, x1, y1 = block.bbox
    for comp in comps:  # moved from render pixels into the page's points
        cx0, cy0, cx1, cy1 = comp.bbox
        assert x0 - 1 <= cx0 < cx1 <= x1 + 1 and y0 - 1 <= cy0 < cy1 <= y1 + 1
    values = {c.value for c in comps if c.value}
    assert values and all(v.replace("Ω", "").replace("F", "") in block.text.replace(" ", "") for v in values)
    assert Document.from_json(doc.to_json()) == doc
