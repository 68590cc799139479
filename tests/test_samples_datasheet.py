"""The synthetic datasheet generator: content counts, exact geometry of its truth, determinism, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pymupdf
import pytest

from pipelines.document import Document
from samples.make_datasheet import DatasheetError, main, make_datasheet

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pdf = make_datasheet(tmp_path_factory.mktemp("ds"), pages=10, seed=3)
    return pdf, json.loads(pdf.with_suffix(".truth.json").read_text(encoding="utf-8"))


class _Words:
    """Words of each page, extracted once; text inside a box is the words whose centres fall in it."""

    def __init__(self, doc: pymupdf.Document) -> None:
        self.doc = doc
        self.pages: dict[int, list[tuple]] = {}

    def inside(self, page: int, box: list[float], slack: float = 0.5) -> str:
        words = self.pages.setdefault(page, self.doc[page - 1].get_text("words"))
        x0, y0, x1, y1 = box[0] - slack, box[1] - slack, box[2] + slack, box[3] + slack
        # a line box reaches into its neighbours' (ascender + descender > line pitch): test the word centre
        return " ".join(w[4] for w in words if x0 <= (w[0] + w[2]) / 2 <= x1 and y0 <= (w[1] + w[3]) / 2 + 1 <= y1)


def test_truth_is_a_loadable_document(generated: tuple[Path, dict]) -> None:
    pdf, truth = generated
    doc = Document.from_dict(truth)
    assert doc.id == hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert doc.page_count == pymupdf.open(pdf).page_count >= 10
    assert {lk.kind for lk in doc.links} >= {"xref", "caption", "continues"}
    ids = {b.id for b in doc.blocks}
    assert all(lk.source in ids and (lk.target is None or lk.target in ids) for lk in doc.links)


def test_content_has_every_kind(generated: tuple[Path, dict]) -> None:
    _pdf, truth = generated
    s = truth["metadata"]["stats"]
    assert s["tables"] >= 10 and s["borderless_tables"] >= 3 and s["split_tables"] >= 1
    assert s["schematics"] >= 4 and s["raster_figures"] >= 2
    assert s["xrefs"] >= 40 and s["implicit_links"] >= 1 and s["equations"] >= 2
    assert s["ocr_pages"] >= 1 and s["two_column_pages"] >= 1
    kinds = {b["kind"] for b in truth["blocks"]}
    assert kinds >= {
        "heading",
        "paragraph",
        "list_item",
        "table",
        "figure",
        "schematic",
        "caption",
        "formula",
        "page_header",
        "page_footer",
    }
    levels = {b["level"] for b in truth["blocks"] if b["kind"] == "heading"}
    assert {1, 2, 3} <= levels


def test_mentions_and_blocks_sit_where_the_truth_says(generated: tuple[Path, dict]) -> None:
    pdf, truth = generated
    words = _Words(pymupdf.open(pdf))
    for x in truth["truth"]["xrefs"]:
        if not x["ocr"]:
            # words carry their punctuation: "(Figures 4 and 5)." holds the mention "Figures 4 and 5"
            got = words.inside(x["page"], x["bbox"], slack=0.3)
            assert got.strip("().,;:") == x["text"].strip("().,;:"), x
    for b in truth["blocks"]:
        if b["ocr"]:
            continue
        if b["kind"] in ("heading", "caption", "paragraph", "list_item"):
            assert words.inside(b["page"], b["bbox"]).split() == b["text"].split(), b["id"]
        if b["kind"] == "table":
            for c in b["cells"]:
                assert words.inside(b["page"], c["bbox"], slack=-0.3) == c["text"], (b["id"], c)


def test_ocr_pages_have_no_text_layer(generated: tuple[Path, dict]) -> None:
    pdf, truth = generated
    doc = pymupdf.open(pdf)
    for p in truth["truth"]["ocr_pages"]:
        assert doc[p - 1].get_text().strip() == ""
        assert doc[p - 1].get_images()
    assert all(b["ocr"] for b in truth["blocks"] if b["page"] in truth["truth"]["ocr_pages"])


def test_split_tables_repeat_their_header(generated: tuple[Path, dict]) -> None:
    _pdf, truth = generated
    blocks = {b["id"]: b for b in truth["blocks"]}
    for group in truth["truth"]["split_tables"]:
        first, *rest = (blocks[i] for i in group["parts"])
        head = [c["text"] for c in first["cells"] if c["header"]]
        for part in rest:
            assert part["page"] > first["page"]
            assert [c["text"] for c in part["cells"] if c["header"]] == head


def test_deterministic(tmp_path: Path, generated: tuple[Path, dict]) -> None:
    pdf, _truth = generated
    again = make_datasheet(tmp_path, pages=10, seed=3)
    assert again.read_bytes() == pdf.read_bytes()
    assert again.with_suffix(".truth.json").read_bytes() == pdf.with_suffix(".truth.json").read_bytes()


def test_committed_sample_matches_its_truth() -> None:
    pdf = SAMPLES / "datasheet-small.pdf"
    truth = json.loads(pdf.with_suffix(".truth.json").read_text(encoding="utf-8"))
    assert truth["id"] == hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert truth["metadata"]["stats"]["split_tables"] >= 1
    total = sum(f.stat().st_size for f in SAMPLES.glob("datasheet-small*"))
    assert total < 5 * 1024 * 1024


def test_bad_page_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DatasheetError, match="at least 8"):
        make_datasheet(tmp_path, pages=3)
    assert main(["--pages", "2", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: --pages must be at least 8 (got 2)"
