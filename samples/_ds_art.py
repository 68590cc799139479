"""Artwork for the synthetic datasheet: schemdraw schematics (SVG), matplotlib plots (PNG), hand-written SVG diagrams.

Every function takes a `random.Random` so the whole datasheet is reproducible from one seed. Schematics and
diagrams come back as SVG bytes (embedded later as vector art); plots as PNG bytes (embedded as raster images).
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import schemdraw
import schemdraw.elements as elm

PART = "OL3521"


@dataclass
class Art:
    """One piece of artwork: its bytes, format and natural size in points."""

    data: bytes
    fmt: str  # "svg" (vector) or "png" (raster)
    width: float
    height: float
    kind: str  # document block kind: "schematic" or "figure"
    title: str


def _pick(rng: random.Random, values: list[str]) -> str:
    return values[rng.randrange(len(values))]


def _res(rng: random.Random) -> str:
    return _pick(rng, ["1 kΩ", "2.2 kΩ", "4.7 kΩ", "10 kΩ", "22 kΩ", "47 kΩ", "100 kΩ", "100 Ω", "330 Ω", "49.9 kΩ"])


def _cap(rng: random.Random) -> str:
    return _pick(rng, ["100 nF", "1 µF", "4.7 µF", "10 µF", "22 µF", "47 µF", "10 nF", "470 pF", "2.2 µF"])


def _ind(rng: random.Random) -> str:
    return _pick(rng, ["2.2 µH", "3.3 µH", "4.7 µH", "6.8 µH", "10 µH", "15 µH"])


def _svg(draw: Callable[[schemdraw.Drawing], None], title: str) -> Art:
    schemdraw.use("svg")
    with schemdraw.Drawing(show=False) as d:
        d.config(fontsize=11, font="Helvetica", unit=2.6, lw=1.4)
        draw(d)
    svg = d.get_imagedata("svg")
    size = re.search(rb'height="([\d.]+)pt" width="([\d.]+)pt"', svg)
    if size is None:
        raise RuntimeError("schemdraw wrote an SVG without a size")
    return Art(svg, "svg", float(size.group(2)), float(size.group(1)), "schematic", title)


def _ic(pins: list[tuple[str, str]], name: str) -> elm.Ic:
    sides: dict[str, list[str]] = {}
    for pin, side in pins:
        sides.setdefault(side, []).append(pin)
    ic_pins = []
    for side, names in sides.items():
        for i, n in enumerate(names):
            ic_pins.append(elm.IcPin(name=n, side=side, slot=f"{i + 1}/{len(names)}"))
    return elm.Ic(pins=ic_pins, size=(3.2, 3.2), edgepadW=0.6, pinspacing=1.0).label(f"U1\n{name}", "center")


def buck_application(rng: random.Random) -> Art:
    """The typical buck converter application circuit with randomised values and output cap count."""
    vin = _pick(rng, ["4.5 V to 36 V", "6 V to 28 V", "12 V", "24 V", "5 V to 17 V"])
    n_out = rng.randint(1, 3)
    pg = rng.random() < 0.6

    def draw(d: schemdraw.Drawing) -> None:
        pins = [
            ("VIN", "left"),
            ("EN", "left"),
            ("SW", "right"),
            ("BOOT", "right"),
            ("GND", "bottom"),
            ("FB", "bottom"),
        ]
        if pg:
            pins.insert(0, ("PG", "left"))
        ic = _ic(pins, PART)
        d += ic
        d += elm.Line().at(ic.VIN).left(1.5)
        d += elm.Dot()
        d.push()
        d += elm.Line().left(1.2).label(f"VIN\n{vin}", "left")
        d.pop()
        d += elm.Capacitor().down().label(f"CIN\n{_cap(rng)}", "left")
        d += elm.Ground()
        d += elm.Line().at(ic.EN).left(0.8)
        d += elm.Resistor().up().label(f"REN\n{_res(rng)}", "left")
        if pg:
            d += elm.Line().at(ic.PG).left(0.5)
            d += elm.Resistor().down().label(f"RPG {_res(rng)}", "left").length(1.5)
            d += elm.Label().label("PGOOD", "bottom")
        d += elm.Line().at(ic.GND).down(0.5)
        d += elm.Ground()
        d += elm.Line().at(ic.FB).down(0.8).label("FB", "bottom")
        d += elm.Capacitor().at(ic.BOOT).right().label(f"CBOOT\n{_cap(rng)}")
        d += elm.Line().down().toy(ic.SW)
        d += elm.Dot()
        d += elm.Line().at(ic.SW).right().tox(d.here)
        d += elm.Inductor2().right().label(f"L1 {_ind(rng)}", "bottom")
        d += elm.Dot()
        for k in range(n_out):
            d.push()
            d += elm.Capacitor().down().label(f"COUT{k + 1}\n{_cap(rng)}", "right")
            d += elm.Ground()
            d.pop()
            d += elm.Line().right(2)
            d += elm.Dot()
        d.push()
        d += elm.Line().right(1.2).label("VOUT", "right")
        d.pop()
        d += elm.Resistor().down().label(f"RFBT\n{_res(rng)}", "right")
        d += elm.Dot()
        d.push()
        d += elm.Line().left(0.8).label("FB", "left")
        d.pop()
        d += elm.Resistor().down().label(f"RFBB\n{_res(rng)}", "right")
        d += elm.Ground()

    return _svg(draw, "Typical Application Circuit")


def ldo_postregulator(rng: random.Random) -> Art:
    """A buck output post-regulated by an LDO with input/output capacitors."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Label().label("VOUT (buck)", "left")
        d += elm.Line().right(1)
        d += elm.Dot()
        d.push()
        d += elm.Capacitor().down().label(_cap(rng), "left")
        d += elm.Ground()
        d.pop()
        d += elm.Line().right(1)
        reg = elm.VoltageRegulator().right().label("LDO", "top")
        d += reg
        d += elm.Line().at(reg.gnd).down(0.8)
        d += elm.Ground()
        d += elm.Line().at(reg.out).right(1)
        d += elm.Dot()
        d.push()
        d += elm.Capacitor().down().label(_cap(rng), "right")
        d += elm.Ground()
        d.pop()
        d += elm.Line().right(1).label(_pick(rng, ["3.3 V", "2.5 V", "1.8 V", "1.2 V"]), "right")

    return _svg(draw, "LDO Post-Regulator")


def enable_divider(rng: random.Random) -> Art:
    """A resistor divider from VIN to EN that sets the start-up threshold."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Vdd().label("VIN")
        d += elm.Resistor().down().label(f"RENT\n{_res(rng)}", "right")
        d += elm.Dot()
        d.push()
        d += elm.Line().right(2).label("EN", "right")
        d.pop()
        d += elm.Resistor().down().label(f"RENB\n{_res(rng)}", "right")
        if rng.random() < 0.5:
            d += elm.Dot()
            d.push()
            d += elm.Line().left(1.5)
            d += elm.Capacitor().down().label(_cap(rng), "left")
            d += elm.Ground()
            d.pop()
        d += elm.Ground()

    return _svg(draw, "Enable Threshold Divider")


def input_filter(rng: random.Random) -> Art:
    """A pi-type input EMI filter in front of the converter."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.SourceV().up().label("VSUPPLY", "left")
        d += elm.Line().right(1)
        d += elm.Dot()
        d.push()
        d += elm.Capacitor().down().label(f"CF1\n{_cap(rng)}")
        d.pop()
        d += elm.Inductor2().right().label(f"LF {_ind(rng)}")
        d += elm.Dot()
        d.push()
        d += elm.Capacitor().down().label(f"CF2\n{_cap(rng)}")
        d.pop()
        if rng.random() < 0.5:
            d += elm.Line().right(1)
            d += elm.Dot()
            d.push()
            d += elm.Capacitor2(polar=True).down().label(f"CD\n{_pick(rng, ['47 µF', '100 µF'])}")
            d.pop()
        d += elm.Line().right(1).label("VIN", "right")
        d += elm.Line().at((0, 0)).right(0.01)
        d += elm.Ground().at((0, 0))

    return _svg(draw, "Input EMI Filter")


def pgood_pullup(rng: random.Random) -> Art:
    """An open-drain power-good output with pull-up and indicator LED."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Vdd().label(_pick(rng, ["VOUT", "3.3 V", "5 V"]))
        d += elm.Resistor().down().label(f"RPG\n{_res(rng)}", "right")
        d += elm.Dot()
        d.push()
        d += elm.Line().right(2).label("PGOOD", "right")
        d.pop()
        fet = elm.NFet().anchor("drain").label("Q1", "right")
        d += fet
        d += elm.Line().at(fet.gate).left(1).label("PG", "left")
        d += elm.Line().at(fet.source).down(0.6)
        d += elm.Ground()
        if rng.random() < 0.5:
            d += elm.LED().at(fet.drain).right().label("D1", "bottom")

    return _svg(draw, "Power-Good Pull-Up")


def opamp_stage(rng: random.Random) -> Art:
    """A non-inverting amplifier used for current sensing."""

    def draw(d: schemdraw.Drawing) -> None:
        op = elm.Opamp(leads=True)
        d += op
        d += elm.Line().at(op.in2).left(1).label("VSENSE", "left")
        d += elm.Line().at(op.in1).left(0.6)
        d += elm.Dot()
        d.push()
        d += elm.Resistor().down().label(f"RG\n{_res(rng)}", "left")
        d += elm.Ground()
        d.pop()
        d += elm.Line().up(1.8)
        d += elm.Resistor().right().tox(op.out).label(f"RF {_res(rng)}")
        d += elm.Line().down().toy(op.out)
        d += elm.Dot()
        d += elm.Line().right(1).label("VOUT", "right")
        if rng.random() < 0.5:
            d += elm.Capacitor().at(op.in1).down().label(_pick(rng, ["10 pF", "22 pF", "100 pF"]), "right").length(1.5)

    return _svg(draw, "Current-Sense Amplifier")


def compensation(rng: random.Random) -> Art:
    """A type-II compensation network on the COMP pin."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Label().label("COMP", "left")
        d += elm.Line().right(1)
        d += elm.Dot()
        d.push()
        d += elm.Resistor().down().label(f"RC\n{_res(rng)}", "left")
        d += elm.Capacitor().down().label(f"CC\n{_cap(rng)}", "left")
        d += elm.Ground()
        d.pop()
        d += elm.Line().right(2)
        d += elm.Capacitor().down().label(f"CHF\n{_pick(rng, ['47 pF', '100 pF', '220 pF'])}", "right")
        d += elm.Ground()

    return _svg(draw, "Compensation Network")


def level_shifter(rng: random.Random) -> Art:
    """An NPN open-collector level shifter for the SYNC input."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Vdd().label(_pick(rng, ["5 V", "3.3 V"]))
        d += elm.Resistor().down().label(f"RC\n{_res(rng)}", "right")
        d += elm.Dot()
        d.push()
        d += elm.Line().right(2).label("SYNC", "right")
        d.pop()
        q = elm.BjtNpn().anchor("collector").label("Q2", "right")
        d += q
        d += elm.Line().at(q.emitter).down(0.5)
        d += elm.Ground()
        d += elm.Resistor().at(q.base).left().label(f"RB\n{_res(rng)}", "top")
        d += elm.Label().label("CLK", "left")

    return _svg(draw, "SYNC Level Shifter")


def esd_structure(rng: random.Random) -> Art:
    """The pin ESD clamp structure (series resistor and steering diodes)."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Label().label(_pick(rng, ["EN", "FB", "PG", "SYNC", "SS"]), "left")
        d += elm.Resistor().right().label(_pick(rng, ["100 Ω", "200 Ω", "1 kΩ"]))
        d += elm.Dot()
        d.push()
        d += elm.Diode().up().label("D1", "left")
        d += elm.Vdd().label("VCC")
        d.pop()
        d.push()
        d += elm.Diode().down().reverse().label("D2", "left")
        d += elm.Ground()
        d.pop()
        d += elm.Line().right(1.5)
        d += elm.Zener().down().reverse().label("Z1", "right")
        d += elm.Ground()

    return _svg(draw, "Input ESD Structure")


def snubber(rng: random.Random) -> Art:
    """An RC snubber on the switch node."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Label().label("SW", "left")
        d += elm.Line().right(1)
        d += elm.Dot()
        d.push()
        d += elm.Resistor().down().label(f"RS\n{_pick(rng, ['1 Ω', '2.2 Ω', '4.7 Ω'])}", "left")
        d += elm.Capacitor().down().label(f"CS\n{_pick(rng, ['470 pF', '1 nF', '2.2 nF'])}", "left")
        d += elm.Ground()
        d.pop()
        d += elm.Inductor2().right().label(f"L1 {_ind(rng)}")
        d += elm.Line().right(1).label("VOUT", "right")

    return _svg(draw, "Switch-Node Snubber")


def reverse_protection(rng: random.Random) -> Art:
    """Reverse-battery protection: a series Schottky diode, optionally behind a fuse and TVS clamp."""
    use_tvs = rng.random() < 0.5

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Battery().up().label("VBAT", "left")
        if use_tvs:
            d += elm.Fuse().right().label(_pick(rng, ["F1 2 A", "F1 3 A", "F1 5 A"]))
            d += elm.Dot()
            d.push()
            d += elm.DiodeTVS().down().label("D1", "left")
            d += elm.Ground()
            d.pop()
            d += elm.Schottky().right().label("D2")
        else:
            d += elm.Schottky().right().label(_pick(rng, ["D1 SS34", "D1 B340A", "D1 SS54"]))
        d += elm.Dot()
        d += elm.Capacitor().down().label(_cap(rng), "right")
        d += elm.Ground()

    return _svg(draw, "Reverse-Battery Protection")


def soft_start(rng: random.Random) -> Art:
    """The external soft-start capacitor on the SS pin with optional tracking divider."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Label().label("SS/TR", "left")
        d += elm.Line().right(1)
        d += elm.Dot()
        d.push()
        d += elm.Capacitor().down().label(f"CSS\n{_cap(rng)}", "left")
        d += elm.Ground()
        d.pop()
        if rng.random() < 0.6:
            d += elm.Line().right(1.5)
            d += elm.Resistor().up().label(f"RTR1\n{_res(rng)}", "right")
            d += elm.Label().label("VTRACK", "top")
            d += elm.Resistor().at(d.elements[-3].end).down().label(f"RTR2\n{_res(rng)}", "right")
            d += elm.Ground()

    return _svg(draw, "Soft-Start and Tracking")


def crystal_osc(rng: random.Random) -> Art:
    """A crystal with load capacitors on the clock pins."""

    def draw(d: schemdraw.Drawing) -> None:
        d += elm.Label().label("XIN", "left")
        d += elm.Line().right(1)
        d += elm.Dot()
        d.push()
        d += elm.Capacitor().down().label(_pick(rng, ["12 pF", "18 pF", "22 pF"]), "left")
        d += elm.Ground()
        d.pop()
        d += elm.Crystal().right().label(_pick(rng, ["Y1 8 MHz", "Y1 16 MHz", "Y1 12 MHz"]))
        d += elm.Dot()
        d.push()
        d += elm.Capacitor().down().label(_pick(rng, ["12 pF", "18 pF", "22 pF"]), "right")
        d += elm.Ground()
        d.pop()
        d += elm.Line().right(1).label("XOUT", "right")

    return _svg(draw, "Clock Input")


SCHEMATICS: list[Callable[[random.Random], Art]] = [
    buck_application,
    ldo_postregulator,
    enable_divider,
    input_filter,
    pgood_pullup,
    opamp_stage,
    compensation,
    level_shifter,
    esd_structure,
    snubber,
    reverse_protection,
    soft_start,
    crystal_osc,
]


def block_diagram(rng: random.Random) -> Art:
    """The functional block diagram, drawn with schemdraw's flowchart boxes (a vector figure, not a circuit)."""
    import schemdraw.flow as flow

    def draw(d: schemdraw.Drawing) -> None:
        d.config(fontsize=10)
        ref = flow.Box(w=2.6, h=1.2).label("Reference\n0.8 V")
        d += ref
        d += flow.Arrow().right(1.5)
        ea = flow.Box(w=2.6, h=1.2).label("Error\namplifier")
        d += ea
        d += flow.Arrow().right(1.5)
        pwm = flow.Box(w=2.6, h=1.2).label("PWM\ncomparator")
        d += pwm
        d += flow.Arrow().right(1.5)
        drv = flow.Box(w=2.6, h=1.2).label("Gate drive\nand FETs")
        d += drv
        d += flow.Arrow().at(ref.S).down(1.2)
        d += flow.Box(w=2.6, h=1.2).label("Soft start")
        d += flow.Arrow().at(pwm.S).down(1.2)
        d += flow.Box(w=2.6, h=1.2).label("Oscillator\n" + _pick(rng, ["400 kHz", "500 kHz", "2.1 MHz"]))
        d += flow.Arrow().at(drv.S).down(1.2)
        d += flow.Box(w=2.6, h=1.2).label("Current\nlimit")
        d += flow.Arrow().at(ea.N).up(1.2)
        d += flow.Box(w=2.6, h=1.2).label("UVLO and\nthermal shutdown")

    art = _svg(draw, "Functional Block Diagram")
    art.kind = "figure"
    return art


def _svg_doc(width: float, height: float, body: list[str]) -> bytes:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}pt" height="{height}pt" viewBox="0 0 {width} {height}">'
    )
    return (head + "".join(body) + "</svg>").encode()


def _t(x: float, y: float, s: str, size: float = 7, anchor: str = "start") -> str:
    s = s.replace("&", "&amp;").replace("<", "&lt;")
    return f'<text x="{x:.1f}" y="{y:.1f}" font-family="Helvetica" font-size="{size}" text-anchor="{anchor}">{s}</text>'


def _l(x0: float, y0: float, x1: float, y1: float, w: float = 1.0) -> str:
    return f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="black" stroke-width="{w}"/>'


def pinout(pin_names: list[str]) -> Art:
    """A QFN package pin-out (top view) with the pin names on all four sides."""
    n = len(pin_names)
    per = (n + 3) // 4
    size, box0 = 300.0, 70.0
    box = size - 2 * box0
    body = [f'<rect x="{box0}" y="{box0}" width="{box}" height="{box}" fill="none" stroke="black" stroke-width="1.2"/>']
    body.append(f'<circle cx="{box0 + 10}" cy="{box0 + 10}" r="3" fill="black"/>')
    body.append(_t(size / 2, size / 2, f"{PART}", 10, "middle"))
    body.append(_t(size / 2, size / 2 + 14, "(Top View)", 8, "middle"))
    step = box / (per + 1)
    for i, name in enumerate(pin_names):
        side, k = divmod(i, per)
        off = box0 + step * (k + 1)
        label = f"{i + 1} {name}"
        if side == 0:  # left, top to bottom
            body.append(_l(box0 - 8, off, box0, off, 2))
            body.append(_t(box0 - 10, off + 2.5, label, 6.5, "end"))
        elif side == 1:  # bottom, left to right
            body.append(_l(off, box0 + box, off, box0 + box + 8, 2))
            body.append(
                f'<g transform="translate({off + 2.5:.1f},{box0 + box + 10:.1f}) rotate(90)">{_t(0, 0, label, 6.5)}</g>'
            )
        elif side == 2:  # right, bottom to top
            y = box0 + box - step * (k + 1)
            body.append(_l(box0 + box, y, box0 + box + 8, y, 2))
            body.append(_t(box0 + box + 10, y + 2.5, label, 6.5))
        else:  # top, right to left
            x = box0 + box - step * (k + 1)
            body.append(_l(x, box0 - 8, x, box0, 2))
            body.append(
                f'<g transform="translate({x + 2.5:.1f},{box0 - 10:.1f}) rotate(-90)">{_t(0, 0, label, 6.5)}</g>'
            )
    return Art(_svg_doc(size, size, body), "svg", size, size, "figure", "Pin Configuration")


def timing_diagram(rng: random.Random, signals: list[str]) -> Art:
    """A digital timing diagram with labelled edges and a t_x dimension arrow."""
    w, row = 380.0, 34.0
    h = row * len(signals) + 30
    body = []
    for i, sig in enumerate(signals):
        y = 20 + i * row
        body.append(_t(4, y + 14, sig, 8))
        x, level = 60.0, rng.random() < 0.5
        pts = []
        while x < w - 10:
            pts.append((x, y + (4 if level else 22)))
            x = min(w - 10, x + rng.uniform(30, 80))
            pts.append((x, y + (4 if level else 22)))
            level = not level
        d = "M " + " L ".join(f"{px:.1f} {py:.1f}" for px, py in pts)
        body.append(f'<path d="{d}" fill="none" stroke="black" stroke-width="1"/>')
    body.append(_l(120, h - 8, 200, h - 8, 0.6))
    body.append(_t(160, h - 11, "t" + _pick(rng, ["SU", "H", "W", "D"]), 7, "middle"))
    return Art(_svg_doc(w, h, body), "svg", w, h, "figure", "Timing Diagram")


def layout_example(rng: random.Random) -> Art:
    """A PCB layout sketch: pads, copper pours, vias and component outlines."""
    w, h = 360.0, 240.0
    body = ['<rect x="2" y="2" width="356" height="236" fill="none" stroke="black" stroke-width="1"/>']
    for name, x, y, ww, hh in [
        ("VIN", 20, 20, 120, 60),
        ("GND", 20, 170, 320, 50),
        ("SW", 200, 20, 70, 50),
        ("VOUT", 290, 20, 50, 140),
    ]:
        body.append(
            f'<rect x="{x}" y="{y}" width="{ww}" height="{hh}" fill="#d8d8d8" stroke="black" stroke-width="0.6"/>'
        )
        body.append(_t(x + 4, y + 12, name, 8))
    body.append('<rect x="150" y="90" width="50" height="50" fill="none" stroke="black" stroke-width="1.2"/>')
    body.append(_t(175, 118, "U1", 8, "middle"))
    for _ in range(rng.randint(10, 18)):
        cx, cy = rng.uniform(30, 330), rng.uniform(180, 210)
        body.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="white" stroke="black" stroke-width="0.8"/>')
    for name, x, y in [("CIN", 60, 95), ("L1", 220, 95), ("COUT", 295, 120), ("CBOOT", 205, 75)]:
        body.append(f'<rect x="{x}" y="{y}" width="30" height="16" fill="none" stroke="black" stroke-width="0.8"/>')
        body.append(_t(x + 15, y + 11, name, 6.5, "middle"))
    return Art(_svg_doc(w, h, body), "svg", w, h, "figure", "Layout Example")


def package_outline(rng: random.Random, pins: int) -> Art:
    """A mechanical package outline drawing with dimension lines."""
    w, h = 360.0, 220.0
    side = 120.0
    body = [f'<rect x="40" y="40" width="{side}" height="{side}" fill="none" stroke="black" stroke-width="1.2"/>']
    body.append(_l(40, 180, 160, 180, 0.5))
    body.append(_t(100, 194, f"{rng.choice(['4.00', '5.00', '6.00'])} ±0.10", 7, "middle"))
    body.append(_l(20, 40, 20, 160, 0.5))
    body.append(_t(14, 104, "A", 7, "middle"))
    body.append('<rect x="220" y="80" width="120" height="24" fill="none" stroke="black" stroke-width="1.2"/>')
    for k in range(8):
        body.append(f'<rect x="{226 + k * 14}" y="104" width="6" height="6" fill="black"/>')
    body.append(_t(280, 130, f"{pins}-pin QFN, side view", 7, "middle"))
    body.append(_t(280, 70, "0.90 MAX", 7, "middle"))
    return Art(_svg_doc(w, h, body), "svg", w, h, "figure", "Package Outline")


PLOTS = [
    ("Efficiency vs Output Current", "Output current (A)", "Efficiency (%)"),
    ("Load Regulation", "Output current (A)", "Output voltage change (%)"),
    ("Line Regulation", "Input voltage (V)", "Output voltage change (%)"),
    ("Quiescent Current vs Temperature", "Junction temperature (°C)", "Quiescent current (µA)"),
    ("Shutdown Current vs Input Voltage", "Input voltage (V)", "Shutdown current (µA)"),
    ("Switching Frequency vs Temperature", "Junction temperature (°C)", "Frequency (kHz)"),
    ("Feedback Voltage vs Temperature", "Junction temperature (°C)", "Feedback voltage (V)"),
    ("High-Side Current Limit vs Temperature", "Junction temperature (°C)", "Current limit (A)"),
    ("Load Transient Response", "Time (100 µs/div)", "VOUT (50 mV/div)"),
    ("Start-Up Waveform", "Time (1 ms/div)", "Voltage (V)"),
    ("Output Voltage Ripple", "Time (2 µs/div)", "VOUT ripple (mV)"),
    ("Power Dissipation vs Output Current", "Output current (A)", "Power loss (W)"),
    ("Dropout Voltage vs Load Current", "Output current (A)", "Dropout (mV)"),
    ("EN Threshold vs Temperature", "Junction temperature (°C)", "EN threshold (V)"),
]


def plot(rng: random.Random, index: int) -> Art:
    """A characteristic curve rendered to PNG (raster figure), chosen from PLOTS by index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    title, xlabel, ylabel = PLOTS[index % len(PLOTS)]
    nrng = np.random.default_rng(rng.randrange(2**32))
    fig = plt.figure(figsize=(3.3, 2.3), dpi=130)
    ax = fig.add_axes((0.17, 0.19, 0.78, 0.76))
    if "Time" in xlabel:
        x = np.linspace(0, 10, 400)
        for k in range(rng.randint(1, 2)):
            base = np.where(x > 3 + k, 1.0, 0.0) * (1 - np.exp(-(x - 3 - k).clip(0) * 2))
            ax.plot(x, base + 0.03 * nrng.standard_normal(x.size) + k * 1.3, lw=0.8)
        ax.set_xticks(range(11))
        ax.set_xticklabels([])
    else:
        x = np.linspace(0.02, 3.0, 120) if "current" in xlabel.lower() else np.linspace(-40, 150, 120)
        for k, v in enumerate(rng.sample([5, 12, 24, 36], rng.randint(2, 3))):
            y = nrng.uniform(0.5, 2) * np.tanh((x - x.min() + 0.1) / (np.ptp(x) / 4)) + 0.1 * k + 0.002 * v * x
            ax.plot(x, y, lw=1, label=f"VIN = {v} V")
        ax.legend(fontsize=6, frameon=False)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=6)
    ax.grid(True, lw=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return Art(buf.getvalue(), "png", 3.3 * 72, 2.3 * 72, "figure", title)
