"""Symbol geometry in the schematic reader: the emitter of a bipolar transistor read from its arrowhead,
and label boxes grown over characters the detector cut off (but not over symbols or wires)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.schematic import assemble_circuit, binarize, bjt_emitter, grow_text_box, stroke_width
from vision.detect import Detection, PinPoint, normalize_paper, to_gray
from vision.synth import TYPE_PINS
from vision.synth.render import render_sample


def _bjts(n_seeds: int) -> list[tuple[np.ndarray, float, dict]]:
    """(ink, stroke, truth part) of the bipolar transistors in the first drawings of the amplifier template."""
    out = []
    for seed in range(n_seeds):
        s = render_sample(seed, {"paper": "white", "color": False}, template="bjt_amp")
        ink = binarize(normalize_paper(to_gray(s.image)))
        stroke = stroke_width(ink)
        out += [(ink, stroke, c) for c in s.truth["components"] if c["type"] in ("npn", "pnp")]
    return out


@pytest.fixture(scope="module")
def bjts() -> list[tuple[np.ndarray, float, dict]]:
    return _bjts(12)


def test_emitter_is_the_lead_with_the_arrowhead(bjts: list[tuple[np.ndarray, float, dict]]) -> None:
    decided = 0
    for ink, stroke, c in bjts:
        p = c["pins"]
        got = bjt_emitter(ink, stroke, tuple(c["bbox"]), tuple(p["B"]), (tuple(p["C"]), tuple(p["E"])))
        swapped = bjt_emitter(ink, stroke, tuple(c["bbox"]), tuple(p["B"]), (tuple(p["E"]), tuple(p["C"])))
        assert got in (1, None), f"{c['ref']} ({c['type']}): the collector was taken for the emitter"
        assert swapped == (None if got is None else 0)
        decided += got is not None
    assert decided >= len(bjts) // 2, f"the arrowhead was found on only {decided} of {len(bjts)} transistors"


def test_reader_swaps_collector_and_emitter_named_the_wrong_way_round() -> None:
    roles = {(t, n): r for t, pins in TYPE_PINS.items() for n, r in pins}
    checked = 0
    for seed in range(6):
        s = render_sample(seed, {"paper": "white", "color": False}, template="bjt_amp")
        norm = normalize_paper(to_gray(s.image))
        ink = binarize(norm)
        parts = s.truth["components"]
        pins = []
        for c in parts:
            for name, xy in c["pins"].items():
                role = roles[(c["type"], name)]
                if c["type"] in ("npn", "pnp") and name in ("C", "E"):
                    role = "low" if name == "C" else "high"  # the pin detector's mistake: roles exchanged
                pins.append(PinPoint(role, 1.0, tuple(xy)))
        comps = [Detection(c["type"], 1.0, tuple(c["bbox"])) for c in parts]
        read = assemble_circuit(norm, comps, [], [], [], pins)
        for c, got in zip(parts, read.components):
            p = c["pins"]
            if c["type"] not in ("npn", "pnp") or (
                bjt_emitter(ink, stroke_width(ink), tuple(c["bbox"]), tuple(p["B"]), (tuple(p["C"]), tuple(p["E"])))
                is None
            ):
                continue
            at = {q.name: q.xy for q in got.pins}
            assert np.hypot(*np.subtract(at["E"], p["E"])) < 4, f"{c['ref']}: emitter read at {at['E']}"
            checked += 1
    assert checked


def _label(text: str, x: int = 60, y: int = 60, scale: float = 0.8) -> tuple[np.ndarray, tuple[float, ...]]:
    """A label drawn with OpenCV; returns the image and the text's tight box."""
    img = np.full((120, 400), 255, np.uint8)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 0, 2, cv2.LINE_AA)
    ys, xs = np.nonzero(img < 128)
    return img, (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


def test_label_box_grows_over_a_character_left_out_before_its_start() -> None:
    img, (x0, y0, x1, y1) = _label("1N4001")
    ink = binarize(img)
    cols = ink[int(y0) : int(y1) + 1].any(axis=0)
    gap = next(x for x in range(int(x0), int(x1)) if not cols[x])  # after the '1'
    cut = next(x for x in range(gap, int(x1)) if cols[x])  # the detector's box starts at the 'N'
    grown = grow_text_box(ink, (float(cut), y0, x1, y1))
    assert grown[0] <= x0 + 1
    assert grown[2] == x1


def test_label_box_does_not_grow_into_a_symbol_or_a_vertical_wire() -> None:
    img, (x0, y0, x1, y1) = _label("120")
    # a zigzag resistor just right of the text, and a vertical wire just left of it
    xs = int(x1) + 6
    zig = np.array([[xs, int(y0) - 20], [xs + 10, int(y0) - 10], [xs, int(y0)], [xs + 10, int(y1)], [xs, int(y1) + 10]])
    cv2.polylines(img, [zig.reshape(-1, 1, 2)], False, 0, 3)
    cv2.line(img, (int(x0) - 6, 0), (int(x0) - 6, 119), 0, 3)
    ink = binarize(img)
    symbol = (float(xs - 3), float(y0 - 23), float(xs + 13), float(y1 + 13))
    grown = grow_text_box(ink, (x0, y0, x1, y1), [symbol])
    assert grown == (x0, y0, x1, y1)
    # without the symbol's box the zigzag looks like one more character
    assert grow_text_box(ink, (x0, y0, x1, y1))[2] > x1
