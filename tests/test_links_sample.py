"""Links on the committed synthetic datasheet (`samples/datasheet-small.pdf`) against its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.document import Document
from pipelines.links import link_document

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "datasheet-small.pdf"


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads(SAMPLE.with_suffix(".truth.json").read_text(encoding="utf-8"))


def _gold_input(truth: dict) -> Document:
    """The gold blocks with labels and links removed: what a perfect ingest would hand the linker."""
    doc = Document.from_dict(truth)
    doc.links = []
    for b in doc.blocks:
        b.label = None
    return doc


def test_links_match_truth_exactly_on_gold_blocks(truth: dict) -> None:
    doc = link_document(_gold_input(truth))
    want = {(lk["source"], lk["target"], lk["text"]) for lk in truth["links"] if lk["kind"] == "xref"}
    got = {(lk.source, lk.target, lk.text) for lk in doc.links if lk.kind == "xref"}
    assert got == want
    assert len(want) >= 50
    want_caps = {(lk["source"], lk["target"]) for lk in truth["links"] if lk["kind"] == "caption"}
    got_caps = {(lk.source, lk.target) for lk in doc.links if lk.kind == "caption"}
    assert got_caps == want_caps
    gold_labels = {b["id"]: b["label"] for b in truth["blocks"] if b["kind"] in ("table", "figure", "schematic")}
    assert {b.id: b.label for b in doc.blocks if b.id in gold_labels} == gold_labels


def test_external_mentions_listed_not_linked(truth: dict) -> None:
    doc = link_document(_gold_input(truth))
    external = [x for x in truth["truth"]["xrefs"] if x["external"]]
    assert external, "the sample should hold references into other documents"
    unresolved = {(lk.source, lk.text) for lk in doc.links if lk.kind == "xref" and lk.target is None}
    assert {(x["source"], x["text"]) for x in external} <= unresolved


@pytest.mark.slow
def test_links_after_full_parse(truth: dict) -> None:
    """The whole pipeline on the real PDF: mentions found in extracted text still resolve to the right blocks."""
    from pipelines.ingest import parse_pdf

    doc = parse_pdf(SAMPLE)
    blocks = {b.id: b for b in doc.blocks}
    gold = {b["id"]: b for b in truth["blocks"]}

    def inside(point_box: list[float], box: tuple[float, ...]) -> bool:
        cx, cy = (point_box[0] + point_box[2]) / 2, (point_box[1] + point_box[3]) / 2
        return box[0] - 3 <= cx <= box[2] + 3 and box[1] - 3 <= cy <= box[3] + 3

    found = 0
    pairs = [(x, t) for x in truth["truth"]["xrefs"] if not x["ocr"] for t in x["targets"]]
    for x, t in pairs:
        for lk in doc.links:
            s, g = blocks.get(lk.source), blocks.get(lk.target or "")
            if lk.kind != "xref" or s is None or g is None or lk.text != x["text"] or s.page != x["page"]:
                continue
            if (
                inside(x["bbox"], s.bbox)
                and g.page == t["page"]
                and (
                    x["kind"] == "page"
                    or inside(gold[t["block"]]["bbox"], g.bbox)
                    or inside(list(g.bbox), tuple(gold[t["block"]]["bbox"]))
                )
            ):
                found += 1
                break
    assert found / len(pairs) >= 0.95
