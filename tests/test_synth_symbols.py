"""Symbol variants of the synthetic engine (the ways real drawings draw diodes, switches, inductors,
batteries, supplies, transistors and current sources): each renders, its truth box holds exactly its
ink, and its pins sit on the ends of its strokes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vision.synth.circuits import Builder
from vision.synth.render import render_layout, render_sample, sample_style
from vision.synth.symbols import sample_look

TWO_TERMINAL = {"diode", "zener", "led", "switch", "inductor", "battery", "isource"}

# (component type, style overrides): every variant `sample_look` can pick for the weak classes
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("diode", {"diode_filled": True}),
    ("diode", {"diode_filled": False, "diode_through": True, "diode_bar": 1.4}),
    ("diode", {"diode_filled": False, "diode_through": False, "diode_half": 0.55}),
    ("zener", {"diode_filled": True}),
    ("switch", {"switch": "open", "switch_angle": 40.0}),
    ("switch", {"switch": "none"}),
    ("switch", {"switch": "dot", "switch_angle": 20.0}),
    ("switch", {"switch": "button"}),
    ("switch", {"switch": "action"}),
    ("inductor", {"inductor2": False, "inductor_bumps": 3, "inductor_height": 1.6, "inductor_core": 2}),
    ("inductor", {"inductor2": False, "inductor_bumps": 5, "inductor_core": 0}),
    ("inductor", {"inductor2": True, "inductor_bumps": 3, "inductor_core": 1}),
    ("battery", {"battery_thick": 0.04}),
    ("battery", {"battery_thick": 0.0, "battery_pitch": 0.26}),
    ("isource", {"isource": "circle", "isource_arrow": "filled", "isource_span": 0.8}),
    ("isource", {"isource": "diamond", "isource_arrow": "open"}),
    ("isource", {"isource": "double", "isource_arrow": "line"}),
    ("supply", {"supply": "bar", "supply_bar": 0.45}),
    ("supply", {"supply": "arrow"}),
    ("supply", {"supply": "circle"}),
    ("npn", {"bjt_bar": "thick", "bjt_head": "open", "bjt_at": 0.55, "bjt_circle": False}),
    ("npn", {"bjt_bar": "box", "bjt_head": "line", "bjt_circle": True}),
    ("pnp", {"bjt_bar": "line", "bjt_head": "filled", "bjt_at": 1.0, "bjt_head_size": 1.3}),
    ("pnp", {"bjt_bar": "thick", "bjt_head": "open", "bjt_at": 0.6, "bjt_circle": True}),
    ("nmos", {"analog_fet": True, "fet_bulk_arrow": False, "fet_head": "line", "fet_thick": True}),
    ("nmos", {"analog_fet": True, "fet_bulk_arrow": True, "fet_center_gate": False, "fet_lead": 0.2}),
    ("pmos", {"analog_fet": True, "fet_bulk_arrow": False, "fet_head": "open"}),
    ("pmos", {"analog_fet": False, "fet_thick": True, "fet_center_gate": False}),
]


def _alone(ctype: str, look: dict[str, Any], seed: int, variant: int) -> tuple[np.ndarray, dict[str, Any], float]:
    """One symbol drawn without wires: (grayscale image, its truth component, pen width in pixels).

    `variant` turns it: two-terminal parts run right, up, left or down; transistors are mirrored or
    flipped; supplies point up or down; FETs get a bulk pin on odd variants.
    """
    rng = np.random.default_rng(seed)
    style = sample_style(rng) | sample_look(rng) | {"paper": "white", "color": False} | look
    b = Builder(rng, style)
    if ctype in TWO_TERMINAL:
        ends = [((0.0, 0.0), (3.0, 0.0)), ((0.0, 0.0), (0.0, 3.0)), ((3.0, 0.0), (0.0, 0.0)), ((0.0, 3.0), (0.0, 0.0))]
        part = b.two(ctype, *ends[variant % 4])
    elif ctype in ("npn", "pnp"):
        part = b.bjt(ctype, (0.0, 0.0), mirror=variant % 2 == 1, up=variant < 2)
    elif ctype in ("nmos", "pmos"):
        part = b.mos(ctype, (0.0, 0.0), mirror=variant % 2 == 1, up=variant < 2, bulk=variant % 2 == 1)
    else:
        part = b.supply((0.0, 0.0), down=variant % 2 == 1)
    b.layout.wires.clear()
    b.layout.elements = [part.element]
    s = render_layout(b.layout, style, rng)
    img = s.image
    for lb in s.truth["labels"]:  # labels sit outside the symbol; blank them to keep only its ink
        x0, y0, x1, y1 = (int(round(v)) for v in lb["bbox"])
        img[max(0, y0 - 2) : y1 + 3, max(0, x0 - 2) : x1 + 3] = 255
    (comp,) = s.truth["components"]
    assert comp["type"] == ctype
    return img, comp, float(s.truth["line_width"])


@pytest.mark.parametrize(("ctype", "look"), VARIANTS)
def test_variant_box_is_its_ink_and_pins_end_its_strokes(ctype: str, look: dict[str, Any]) -> None:
    for variant in range(4):
        img, comp, lw = _alone(ctype, look, seed=40 + variant, variant=variant)
        ys, xs = np.nonzero(img < 128)
        assert len(xs), (ctype, look, variant)
        x0, y0, x1, y1 = comp["bbox"]
        # the box is the ink's own box, to within the pen's pixel rounding and anti-aliasing
        got = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert np.allclose(got, (x0, y0, x1, y1), atol=1.5 + lw / 2), (ctype, look, variant, got, comp["bbox"])
        for name, (px, py) in comp["pins"].items():
            patch = img[int(py) - 1 : int(py) + 2, int(px) - 1 : int(px) + 2]
            assert patch.min() < 128, (ctype, look, variant, name)  # ink under the pin
            if ctype == "zener":
                continue  # its bar's bent tips reach past the cathode pin along the leads
            edge = min(px - x0, x1 - px, py - y0, y1 - py)
            assert edge <= lw / 2 + 1.5, (ctype, look, variant, name, edge)  # where a wire would join


def test_symbol_habits_leave_the_circuit_alone() -> None:
    """The look comes from its own random stream: forcing other habits changes the drawing, not the
    circuit, its values or its nets."""
    habits = {"switch": "dot", "diode_filled": True, "supply": "arrow", "bjt_bar": "box"}
    for seed in (1, 2, 3):
        a, b = render_sample(seed).truth, render_sample(seed, habits).truth
        assert [(c["ref"], c["type"], c["value"]) for c in a["components"]] == [
            (c["ref"], c["type"], c["value"]) for c in b["components"]
        ]
        assert a["nets"] == b["nets"] and a["spice"] == b["spice"]


def test_every_habit_is_drawn_in_some_drawings() -> None:
    looks = [sample_look(np.random.default_rng([seed, 1])) for seed in range(300)]
    for key, kinds in [
        ("switch", {"open", "none", "dot", "button", "action"}),
        ("supply", {"bar", "arrow", "circle"}),
        ("isource", {"circle", "diamond", "double"}),
        ("bjt_bar", {"line", "thick", "box"}),
        ("bjt_head", {"filled", "open", "line"}),
        ("diode_filled", {True, False}),
        ("inductor_core", {0, 1, 2}),
    ]:
        assert {lk[key] for lk in looks} == kinds, key
    filled = np.mean([lk["diode_filled"] for lk in looks])
    assert 0.5 < filled < 0.7  # most real diodes are filled, but not all
