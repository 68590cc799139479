"""Schematic labels: duplicate text boxes, OCR slips in part numbers and values, value plausibility."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines.schematic import (
    _crop_for_ocr,
    _Models,
    assemble_circuit,
    binarize,
    merge_text_boxes,
    ocr_crops,
    repair_read,
    split_reads,
    value_for,
    value_types,
)
from vision.detect import Detection
from vision.synth.raster import load_font


def _label_image(text: str, size: int = 20) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A white page with `text` in DejaVu Serif, and the tight box of its ink."""
    img = Image.new("L", (240, 60), 255)
    ImageDraw.Draw(img).text((40, 18), text, font=load_font("DejaVuSerif.ttf", size), fill=0)
    arr = np.asarray(img).copy()
    ys, xs = np.nonzero(arr < 128)
    return arr, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def test_shifted_duplicate_boxes_of_one_label_become_one_box_read_whole() -> None:
    """The detector can keep a box on a whole part number and a shifted one that misses its first
    character; the reader used to give the part whichever came first ('N4733A'). Merged, the one box
    covers the whole label and the real OCR reads it whole."""
    page, (x0, y0, x1, y1) = _label_image("1N4733A")
    char = (x1 - x0) / 7
    dets = [
        Detection("text", 0.39, (x0 + char, y0 + 2, x1, y1 + 1)),  # misses the "1"
        Detection("text", 0.35, (x0 + 0.2 * char, y0 - 1, x1 - 0.5 * char, y1)),
    ]
    _, ocr = _Models.get()
    assert ocr_crops(ocr, [_crop_for_ocr(page, dets[0].box)])[0][0] == "N4733A"  # the slip the merge undoes
    merged = merge_text_boxes(dets)
    assert len(merged) == 1 and merged[0].score == 0.39
    assert merged[0].box == (x0 + 0.2 * char, y0 - 1, x1, y1 + 1)
    assert ocr_crops(ocr, [_crop_for_ocr(page, merged[0].box)])[0][0] == "1N4733A"


def test_reference_and_value_run_together_are_cut_at_the_blank_and_read_again() -> None:
    """OCR drops the space in a box over "R1 150k" on one line ('R1150k'); several cuts would give a
    reference and a value ('R1'/'150k', 'R11'/'50k'), so the box is cut at the blank between the words
    and both halves are read again by the real OCR."""
    page, (x0, y0, x1, y1) = _label_image("R1 150k")
    _, ocr = _Models.get()

    def reread(boxes: list[tuple[float, float, float, float]]) -> list[str]:
        return [r for r, _ in ocr_crops(ocr, [_crop_for_ocr(page, b) for b in boxes])]

    box = Detection("text", 0.8, (x0, y0, x1, y1))
    texts, reads = split_reads([box], ["R1150k"], binarize(page), reread)
    assert reads == ["R1", "150k"]
    assert texts[0].box[0] == x0 and texts[1].box[2] == x1 and texts[0].box[2] < texts[1].box[0]
    # one word has no blank as wide as a space: kept whole, as without the drawing
    page, (x0, y0, x1, y1) = _label_image("L7805")
    assert split_reads([Detection("text", 0.8, (x0, y0, x1, y1))], ["L7805"], binarize(page), reread)[1] == ["L7805"]
    assert split_reads([box], ["R1150k"])[1] == ["R1150k"]


def test_distinct_labels_stay_apart() -> None:
    stacked = [Detection("text", 0.9, (100, 10, 130, 24)), Detection("text", 0.9, (100, 28, 150, 42))]  # R1 / 10k
    in_line = [Detection("text", 0.9, (100, 10, 130, 24)), Detection("text", 0.9, (134, 10, 180, 24))]  # R1 680k
    touching = [Detection("text", 0.9, (100, 10, 130, 24)), Detection("text", 0.9, (125, 10, 180, 24))]
    # a box over a whole line "C4 8.2nF" and boxes over each of its words
    line = [Detection("text", 0.8, b) for b in ((554, 312, 657, 330), (557, 312, 587, 330), (596, 313, 654, 330))]
    for texts in (stacked, in_line, touching, line):
        assert [t.box for t in merge_text_boxes(texts)] == [t.box for t in texts]


@pytest.mark.parametrize(
    "read,fixed",
    [
        ("A03400", "AO3400"),  # Alpha & Omega MOSFET prefix with a zero for the O
        ("A03401", "AO3401"),
        ("0PA2134", "OPA2134"),
        ("0P07", "OP07"),
        ("IN4007", "1N4007"),
        ("TL072", "TL072"),  # a real zero after letters stays
        ("NE5532", "NE5532"),
        ("A0", "A0"),
        ("1:2nF", "1.2nF"),  # a decimal point read as a colon; a transformer's ratio stays
        ("1:10", "1:10"),
    ],
)
def test_part_number_prefix_slips(read: str, fixed: str) -> None:
    assert repair_read(read) == fixed


def test_part_numbers_need_a_series_number() -> None:
    """Stray reads of net labels ('VO' read 'VO8', 'X' read '0x') and a value with a garbled unit
    ('8.2uF' read '8.2ud') are no part numbers, so they are not given to a transistor as its value; real
    part numbers still are."""
    for stray in ("VO8", "0x", "Q2a", "A1", "8.2ud"):
        assert value_types(stray) == set(), stray
    for pn in ("BC547", "2N7000", "BAT54", "Si2301", "IRLZ44N", "BZX84C5V1", "MJE3055"):
        assert {"npn", "diode", "nmos"} <= value_types(pn), pn
    assert value_types("5V1") == {"zener"}


def test_milli_on_a_plain_capacitor_is_nano() -> None:
    assert value_for("capacitor", "39mF") == "39nF"
    assert value_for("capacitor", "3.3mF") == "3.3nF"
    assert value_for("capacitor_polarized", "3.9mF") == "3.9mF"  # electrolytics do reach millifarads
    assert value_for("capacitor", "4.7µF") == "4.7µF"
    # through the label assignment: the reference block "C1" / "39mF" beside a plain capacitor
    norm = np.full((300, 300), 255, np.uint8)
    comps = [
        Detection("capacitor", 0.9, (100, 100, 140, 160)),
        Detection("capacitor_polarized", 0.9, (200, 100, 240, 160)),
    ]
    boxes = [(145, 115, 165, 127), (145, 131, 172, 143), (245, 115, 265, 127), (245, 131, 280, 143)]
    texts = [Detection("text", 0.9, b) for b in boxes]
    c = assemble_circuit(norm, comps, texts, ["C1", "39mF", "C2", "2.2mF"], [], [])
    assert {p.id: p.value for p in c.components} == {"C1": "39nF", "C2": "2.2mF"}
