"""Random but plausible circuits laid out on a grid with schemdraw elements.

A template (divider, filter ladder, rectifier, amplifier, mirror, oscillator ...) draws one circuit
through a `Builder`, which places schemdraw elements, straight wires, junction dots and open
terminals and remembers every pin's exact position. Connectivity is not written by hand: `render`
derives the nets from the geometry (touching ends and T-joints connect, plain crossings do not), so
the ground truth is whatever the drawing shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import schemdraw
import schemdraw.elements as elm

from vision.synth import REF_PREFIXES
from vision.synth.symbols import (
    BatterySymbol,
    BjtSymbol,
    CurrentSourceSymbol,
    DiodeSymbol,
    FetSymbol,
    InductorSymbol,
    SupplySymbol,
    SwitchSymbol,
)

Pt = tuple[float, float]

E12 = (1.0, 1.2, 1.5, 1.8, 2.2, 2.7, 3.3, 3.9, 4.7, 5.6, 6.8, 8.2)


@dataclass
class Part:
    """One placed symbol."""

    type: str
    ref: str
    value: str
    element: schemdraw.elements.Element
    pins: dict[str, Pt]
    vertical: bool = False  # body runs up-down (labels go beside it, not above)
    leads: list[tuple[Pt, Pt]] = field(default_factory=list)  # pin-to-body strokes that act as wire


@dataclass
class Layout:
    """A drawn circuit before rasterising: parts, wires, dots, open terminals with net names."""

    parts: list[Part] = field(default_factory=list)
    wires: list[tuple[Pt, Pt]] = field(default_factory=list)
    dots: list[Pt] = field(default_factory=list)
    terminals: list[tuple[Pt, str, str]] = field(default_factory=list)  # (point, net name, side)
    elements: list[schemdraw.elements.Element] = field(default_factory=list)
    template: str = ""


def _fmt_num(v: float) -> str:
    """1.0 -> '1', 4.7 -> '4.7', 10.0 -> '10'."""
    s = f"{v:.3g}"
    return s[:-2] if s.endswith(".0") else s


def _si(rng: np.random.Generator, decades: tuple[int, int], prefixes: dict[int, str], unit: str, style: dict) -> str:
    """A random E12 value with an SI prefix, written in one of the usual ways."""
    mant = float(rng.choice(E12))
    exp = int(rng.integers(decades[0], decades[1] + 1))
    value = mant * 10.0**exp
    p3 = int(math.floor(math.log10(value) / 3.0 + 1e-9) * 3)
    p3 = min(max(p3, min(prefixes)), max(prefixes))
    num = value / 10.0**p3
    prefix = prefixes[p3]
    text = _fmt_num(num)
    if style.get("rkm") and prefix and "." in text and unit in ("", "Ω"):
        return text.replace(".", prefix)  # 4.7k -> 4k7
    micro = style.get("micro", "µ")
    prefix = prefix.replace("µ", micro)
    return f"{text}{prefix}{unit if style.get('units', True) or unit in ('F', 'H') else ''}"


RES_PREFIX = {0: "", 3: "k", 6: "M"}
CAP_PREFIX = {-12: "p", -9: "n", -6: "µ", -3: "m"}
IND_PREFIX = {-9: "n", -6: "µ", -3: "m", 0: ""}


def random_value(ctype: str, rng: np.random.Generator, style: dict) -> str:
    """A plausible value text for a component type ('' for parts that usually carry none)."""
    pick = lambda seq: str(rng.choice(seq))  # noqa: E731
    if ctype in ("resistor", "potentiometer"):
        unit = "Ω" if style.get("ohm") else ""
        return _si(rng, (1, 6), RES_PREFIX, unit, style)
    if ctype == "capacitor":
        return _si(rng, (-12, -6), CAP_PREFIX, "F", style)
    if ctype == "capacitor_polarized":
        return _si(rng, (-6, -3), CAP_PREFIX, "F", style)
    if ctype == "inductor":
        return _si(rng, (-7, -2), IND_PREFIX, "H", style)
    if ctype == "diode":
        return pick(("1N4148", "1N4001", "1N4007", "1N5819", "BAT54", "1N914"))
    if ctype == "led":
        return pick(("RED", "GREEN", "LED", "BLUE", "YELLOW"))
    if ctype == "zener":
        return pick(("5V1", "3V3", "12V", "BZX84C5V1", "1N4733A", "6V2", "9V1"))
    if ctype == "npn":
        return pick(("2N3904", "BC547", "BC337", "2N2222", "BD139", "MJE3055"))
    if ctype == "pnp":
        return pick(("2N3906", "BC557", "BC327", "2N2907", "BD140", "MJE2955"))
    if ctype == "nmos":
        return pick(("2N7000", "BS170", "IRF540", "IRLZ44N", "NMOS", "AO3400"))
    if ctype == "pmos":
        return pick(("BS250", "IRF9540", "AO3401", "PMOS", "Si2301"))
    if ctype == "opamp":
        return pick(("LM358", "TL072", "OPA2134", "NE5532", "LM741", "MCP6002", "TL081"))
    if ctype in ("vsource", "battery"):
        return pick(("5V", "12V", "9V", "3.3V", "15V", "1.5V", "24V", "3V"))
    if ctype == "vsource_ac":
        return pick(("1V", "10V", "230V", "120V", "5V", "2V"))
    if ctype == "isource":
        return _si(rng, (-6, -2), {-6: "µ", -3: "m"}, "A", style)
    if ctype == "crystal":
        return pick(("16MHz", "32.768kHz", "8MHz", "20MHz", "4MHz", "12MHz"))
    if ctype == "switch":
        return pick(("", "", "SPST", "PUSH"))
    if ctype == "transformer":
        return pick(("", "1:10", "10:1", "1:1"))
    return ""


SUPPLY_NAMES = ("VCC", "VDD", "+5V", "+12V", "V+", "+15V", "+3.3V", "VBAT")
TERMINAL_NAMES = ("VIN", "VOUT", "IN", "OUT", "A", "B", "VO", "VI", "INPUT", "OUTPUT", "SIG", "FB", "X", "Y")


class Builder:
    """Places elements on a grid, keeps refs and values, and records wires, dots and terminals.

    Args:
        rng: Random generator for values, lengths and variants.
        style: Drawing style flags (resistor symbol, IEC, dot habits, value writing ...).
    """

    def __init__(self, rng: np.random.Generator, style: dict) -> None:
        self.rng = rng
        self.style = style
        self.layout = Layout()
        self.drawing = schemdraw.Drawing(show=False)
        self._counts: dict[str, int] = {}
        self._used_terminals: set[str] = set()

    # -- bookkeeping -----------------------------------------------------------------------------
    def _add(self, e: schemdraw.elements.Element) -> schemdraw.elements.Element:
        self.drawing.add(e)
        self.layout.elements.append(e)
        return e

    def next_ref(self, ctype: str) -> str:
        prefix = REF_PREFIXES[ctype][0]
        if prefix.startswith("#"):
            n = self._counts.get(prefix, 0) + 1
        else:
            step = 1 if self.rng.random() < 0.85 else int(self.rng.integers(2, 4))
            n = self._counts.get(prefix, 0) + step
        self._counts[prefix] = n
        return f"{prefix}{n}"

    def terminal_name(self) -> str:
        names = [n for n in TERMINAL_NAMES if n not in self._used_terminals]
        name = str(self.rng.choice(names))
        self._used_terminals.add(name)
        return name

    # -- element factories -----------------------------------------------------------------------
    def _two_term(self, ctype: str) -> schemdraw.elements.Element:
        # symbol habits come from the style (`symbols.sample_look`); the defaults draw schemdraw's symbols
        st = self.style
        iec = st.get("iec", False)
        if ctype == "resistor":
            return elm.ResistorIEC() if iec else elm.Resistor()
        if ctype == "capacitor":
            return elm.Capacitor()
        if ctype == "capacitor_polarized":
            return elm.Capacitor2(polar=True) if st.get("curved_cap") else elm.Capacitor(polar=True)
        if ctype == "inductor":
            bumps, core = int(st.get("inductor_bumps", 4)), int(st.get("inductor_core", 0))
            if st.get("inductor2", True):
                return elm.Inductor2(loops=bumps, core=core)
            return InductorSymbol(bumps=bumps, height=float(st.get("inductor_height", 1.0)), core=core)
        if ctype == "diode":
            length = float(st.get("diode_length", 0.35))
            half = length * float(st.get("diode_half", 0.25 / 0.35))
            filled = bool(st.get("diode_filled", False))
            return DiodeSymbol(
                length=length,
                half=half,
                bar=half * float(st.get("diode_bar", 1.0)),
                filled=filled,
                through=not filled and bool(st.get("diode_through", False)),
            )
        if ctype in ("led", "zener"):
            e = elm.LED() if ctype == "led" else elm.Zener()
            return e.fill(True) if st.get("diode_filled", False) else e
        if ctype == "vsource":
            return elm.SourceV()
        if ctype == "vsource_ac":
            return elm.SourceSin()
        if ctype == "isource":
            return CurrentSourceSymbol(
                shape=str(st.get("isource", "circle")),
                span=float(st.get("isource_span", 0.5)),
                head_len=float(st.get("isource_head", 0.25)),
                head=str(st.get("isource_arrow", "filled")),
            )
        if ctype == "switch":
            kind = str(st.get("switch", "open"))
            if kind == "button":
                return elm.Button()
            angle = float(st.get("switch_angle", 27.0))
            if kind == "action":
                return SwitchSymbol(contacts="open", angle=angle, action=True)
            return SwitchSymbol(contacts=kind, angle=angle)
        if ctype == "battery":
            long = float(st.get("battery_long", 0.375))
            thick = float(st.get("battery_thick", 0.0))
            # plates stay apart under a thick pen
            pitch = max(float(st.get("battery_pitch", 0.19)), 2 * thick + 2.5 * float(st.get("lw", 0.0)))
            return BatterySymbol(
                cells=2 if self.rng.random() < 0.7 else 1,
                long=long,
                short=long * float(st.get("battery_short", 0.5)),
                pitch=pitch,
                thick=thick,
            )
        if ctype == "crystal":
            return elm.Crystal()
        if ctype == "potentiometer":
            return elm.PotentiometerIEC() if iec else elm.Potentiometer()
        raise ValueError(f"not a two-terminal type: {ctype}")

    # Which schemdraw end is which pin (start/end of a two-terminal element).
    _ENDS: dict[str, tuple[str, str]] = {
        "capacitor_polarized": ("+", "-"),
        "diode": ("A", "K"),
        "led": ("A", "K"),
        "zener": ("A", "K"),
        "vsource": ("-", "+"),
        "isource": ("+", "-"),
        "battery": ("+", "-"),
    }

    def two(self, ctype: str, a: Pt, b: Pt, value: str | None = None, length: float | None = None) -> Part:
        """A two-terminal part on the straight line from a to b (start at a), wires filling the rest.

        Args:
            ctype: Component type.
            a: Start grid point (the first pin's net side).
            b: End grid point; a-b must be horizontal or vertical.
            value: Value text; random when None.
            length: Element length including its short leads; random when None.
        """
        ax, ay = a
        bx, by = b
        dist = math.hypot(bx - ax, by - ay)
        extra = float(self.rng.uniform(0.0, 0.5))
        along = float(self.rng.uniform(-0.15, 0.15))
        e = self._two_term(ctype)
        if length is None:
            stub = self.style.get("lead_stub")
            if stub is None:
                base = 1.9 if ctype in ("led", "potentiometer", "vsource", "vsource_ac", "isource") else 1.5
                length = base + extra
            else:  # the pins sit a short stub out from the body, where real drawings' boxes end
                (x0, y0), (x1, y1) = e.segments[0].path[0], e.segments[0].path[-1]
                length = math.hypot(x1 - x0, y1 - y0) + 2 * float(stub)
        length = min(length, dist)
        ux, uy = (bx - ax) / dist, (by - ay) / dist
        shift = along * (dist - length)
        cx, cy = (ax + bx) / 2 + ux * shift, (ay + by) / 2 + uy * shift
        s = (cx - ux * length / 2, cy - uy * length / 2)
        t = (cx + ux * length / 2, cy + uy * length / 2)
        e = self._add(e.endpoints(s, t))
        self.wire(a, s)
        self.wire(t, b)
        names = self._ENDS.get(ctype, ("1", "2"))
        pins = {names[0]: s, names[1]: t}
        if ctype == "potentiometer":
            pins["W"] = _xy(e.absanchors["tap"])
        ref = self.next_ref(ctype)
        part = Part(
            ctype,
            ref,
            random_value(ctype, self.rng, self.style) if value is None else value,
            e,
            pins,
            vertical=abs(uy) > 0.5,
            leads=[(s, _xy(e.absanchors["istart"])), (_xy(e.absanchors["iend"]), t)],
        )
        self.layout.parts.append(part)
        return part

    def bjt(self, ctype: str, base: Pt, mirror: bool = False, up: bool = True) -> Part:
        """An NPN/PNP placed by its base pin; collector up for NPN (emitter up for PNP) unless up=False."""
        st = self.style
        e = BjtSymbol(
            pnp=ctype == "pnp",
            circle=bool(st.get("bjt_circle", False)),
            bar=str(st.get("bjt_bar", "line")),
            head=str(st.get("bjt_head", "filled")),
            tip_at=float(st.get("bjt_at", 1.0)),
            head_size=float(st.get("bjt_head_size", 1.0)),
        )
        e = e.theta(0).at(base).anchor("base")
        if mirror:
            e = e.reverse()
        if not up:
            e = e.flip()
        e = self._add(e)
        pins = {"B": _xy(e.absanchors["base"]), "C": _xy(e.absanchors["collector"]), "E": _xy(e.absanchors["emitter"])}
        part = Part(ctype, self.next_ref(ctype), random_value(ctype, self.rng, self.style), e, pins)
        self.layout.parts.append(part)
        return part

    def mos(self, ctype: str, gate: Pt, mirror: bool = False, up: bool = True, bulk: bool | None = None) -> Part:
        """An NMOS/PMOS placed by its gate pin; gate on the left unless mirror; NMOS drain and PMOS source
        up unless up=False."""
        if bulk is None:
            bulk = bool(self.rng.random() < 0.35)
        st = self.style
        if not st.get("analog_fet", True):
            arrow = "none"  # digital style: plain NMOS, PMOS with a gate bubble
        else:
            arrow = "bulk" if bulk and st.get("fet_bulk_arrow", True) else "source"
        e = FetSymbol(
            pmos=ctype == "pmos",
            bulk=bulk,
            arrow=arrow,
            head=str(st.get("fet_head", "filled")),
            lead=float(st.get("fet_lead", 0.42)),
            thick=bool(st.get("fet_thick", False)),
            center_gate=bool(st.get("fet_center_gate", False)),
        )
        # drawn with the gate on the right; reverse() puts it on the left
        e = e.theta(0).at(gate).anchor("gate")
        if not mirror:
            e = e.reverse()
        if not up:
            e = e.flip()
        e = self._add(e)
        pins = {"G": _xy(e.absanchors["gate"]), "D": _xy(e.absanchors["drain"]), "S": _xy(e.absanchors["source"])}
        if bulk:
            pins["B"] = _xy(e.absanchors["bulk"])
        part = Part(ctype, self.next_ref(ctype), random_value(ctype, self.rng, self.style), e, pins)
        self.layout.parts.append(part)
        return part

    def opamp(self, minus_in: Pt, flip: bool = False) -> Part:
        """An op-amp placed by its inverting input; flip puts the inverting input below."""
        e = elm.Opamp(leads=True)
        e = e.theta(0).at(minus_in).anchor("in2" if flip else "in1")
        if flip:
            e = e.flip()
        e = self._add(e)
        pins = {"-": _xy(e.absanchors["in1"]), "+": _xy(e.absanchors["in2"]), "OUT": _xy(e.absanchors["out"])}
        part = Part("opamp", self.next_ref("opamp"), random_value("opamp", self.rng, self.style), e, pins)
        self.layout.parts.append(part)
        return part

    def transformer(self, p1: Pt) -> Part:
        """A transformer placed by its upper primary pin (primary left, secondary right)."""
        e = self._add(elm.Transformer(core=bool(self.rng.random() < 0.7)).theta(0).at(p1).anchor("p1"))
        pins = {k.upper(): _xy(e.absanchors[k]) for k in ("p1", "p2", "s1", "s2")}
        part = Part(
            "transformer", self.next_ref("transformer"), random_value("transformer", self.rng, self.style), e, pins
        )
        self.layout.parts.append(part)
        return part

    def ground(self, at: Pt) -> Part:
        """A ground symbol hanging below a point."""
        kind = self.style.get("ground_kind", "ground")
        e = elm.GroundSignal() if kind == "signal" else elm.Ground()
        e = self._add(e.theta(0).at(at))
        part = Part("ground", self.next_ref("ground"), "", e, {"1": at})
        self.layout.parts.append(part)
        return part

    def supply(self, at: Pt, name: str | None = None, down: bool = False) -> Part:
        """A supply rail symbol above a point (or a negative rail below it when down)."""
        kind = str(self.style.get("supply", "bar"))
        bar = float(self.style.get("supply_bar", 0.1875))
        size = {"bar": bar, "arrow": 0.6 * bar + 0.08, "circle": 0.3 * bar + 0.04}[kind]
        stem = float(self.style.get("supply_stem", 0.4))
        e = self._add(SupplySymbol(kind=kind, stem=stem, extent=size, down=down).theta(0).at(at))
        if name is None:
            name = str(self.rng.choice(("VEE", "VSS", "-5V", "-12V", "V-"))) if down else self.style["supply_name"]
        part = Part("supply", self.next_ref("supply"), name, e, {"1": at})
        self.layout.parts.append(part)
        return part

    # -- wiring ----------------------------------------------------------------------------------
    def wire(self, *pts: Pt) -> None:
        """Straight wire pieces through the points (zero-length pieces are skipped)."""
        for p, q in zip(pts, pts[1:]):
            if math.hypot(q[0] - p[0], q[1] - p[1]) < 1e-6:
                continue
            self._add(elm.Line().endpoints(p, q))
            self.layout.wires.append((p, q))

    def dot(self, at: Pt) -> None:
        """A junction dot (drawn where three or more wires meet, or at T-joints in dotted styles)."""
        self._add(elm.Dot().at(at))
        self.layout.dots.append(at)

    def finish(self) -> None:
        """Dot the joints: always where four wires meet (else it reads as a crossing), and at
        T-joints when the drawing's habit is to dot them."""
        segs = list(self.layout.wires) + [lead for p in self.layout.parts for lead in p.leads]
        arms: dict[tuple[float, float], set[int]] = {}

        def key(p: Pt) -> tuple[float, float]:
            return (round(p[0], 4), round(p[1], 4))

        def heading(p: Pt, q: Pt) -> int:
            return int(round(math.degrees(math.atan2(q[1] - p[1], q[0] - p[0])) / 90.0)) % 4

        ends = {key(p) for a, b in segs for p in (a, b)}
        for a, b in segs:
            arms.setdefault(key(a), set()).add(heading(a, b))
            arms.setdefault(key(b), set()).add(heading(b, a))
        for pt in ends:
            for a, b in segs:
                if key(a) != pt and key(b) != pt and _between(pt, a, b):
                    arms[pt].update({heading(pt, a), heading(pt, b)})
        for part in self.layout.parts:
            if part.leads:
                continue  # two-terminal parts: their leads are already arms
            bb = part.element.get_bbox(transform=True, includetext=False)
            centre = ((bb.xmin + bb.xmax) / 2, (bb.ymin + bb.ymax) / 2)
            for xy in part.pins.values():
                if key(xy) in arms:
                    arms[key(xy)].add(heading(xy, centre))
        dotted = {key(d) for d in self.layout.dots}
        for pt, dirs in arms.items():
            if pt in dotted:
                continue
            if len(dirs) >= 4 or (len(dirs) == 3 and self.style.get("dot_tees", True)):
                self.dot(pt)
                dotted.add(pt)

    def terminal(self, at: Pt, side: str, name: str | None = None) -> str:
        """An open terminal circle with a net name; `side` says where the name goes (left/right/up/down)."""
        name = name or self.terminal_name()
        self._add(elm.Dot(open=True).at(at))
        self.layout.terminals.append((at, name, side))
        return name


def _between(p: Pt, a: Pt, b: Pt, eps: float = 1e-4) -> bool:
    """p lies strictly inside the axis-parallel segment a-b."""
    if abs(a[0] - b[0]) < eps:
        return abs(p[0] - a[0]) < eps and min(a[1], b[1]) + eps < p[1] < max(a[1], b[1]) - eps
    if abs(a[1] - b[1]) < eps:
        return abs(p[1] - a[1]) < eps and min(a[0], b[0]) + eps < p[0] < max(a[0], b[0]) - eps
    return False


def _xy(p: object) -> Pt:
    return (float(p[0]), float(p[1]))  # type: ignore[index]


# ---------------------------------------------------------------------------------------------------
# Templates. Each draws one circuit family with random members, sizes and habits. y grows upwards.
# ---------------------------------------------------------------------------------------------------


def _source_or_terminal(
    b: Builder, top: Pt, bottom: Pt, kinds: tuple[str, ...] = ("vsource", "vsource_ac", "battery")
) -> None:
    """Drive a node pair with a vertical source, or leave an input terminal on the top node."""
    r = b.rng.random()
    if r < 0.75:
        kind = str(b.rng.choice(kinds))
        b.two(kind, bottom, top)
    else:
        b.terminal(top, "left")


def _ground_rail(b: Builder, pts: list[Pt], y: float) -> None:
    """Connect bottom ends either with one ground wire and a ground symbol, or a ground symbol each."""
    if b.rng.random() < 0.5 or len(pts) == 1:
        for p in pts:
            b.wire(p, (p[0], y))
            b.ground((p[0], y))
    else:
        xs = sorted(p[0] for p in pts)
        for p in pts:
            b.wire(p, (p[0], y))
        b.wire((xs[0], y), (xs[-1], y))
        gx = xs[int(b.rng.integers(0, len(xs)))]
        b.ground((gx, y))


def t_ladder(b: Builder) -> None:
    """Dividers, RC/RL/LC filters and ladders, pi/T networks: series parts on top, shunts below."""
    rng = b.rng
    n = int(rng.integers(1, 5))
    g = float(rng.uniform(2.6, 3.4))
    h = float(rng.uniform(2.6, 3.4))
    series_kinds = ("resistor", "resistor", "inductor", "capacitor", "resistor", "switch", "diode", "crystal")
    shunt_kinds = ("capacitor", "resistor", "capacitor_polarized", "inductor", "zener", "led", "capacitor", "resistor")
    x = 0.0
    top = h
    _source_or_terminal(b, (0.0, top), (0.0, 0.0))
    bottoms: list[Pt] = [(0.0, 0.0)]
    for i in range(n):
        nx = x + g
        b.two(str(rng.choice(series_kinds)), (x, top), (nx, top))
        x = nx
        if rng.random() < 0.85 or i == n - 1:
            kind = str(rng.choice(shunt_kinds))
            if kind in ("zener",):
                b.two(kind, (x, 0.0), (x, top))  # cathode up: reverse-biased reference
            else:
                b.two(kind, (x, top), (x, 0.0))
            bottoms.append((x, 0.0))
    if rng.random() < 0.5:
        b.wire((x, top), (x + g * 0.6, top))
        b.terminal((x + g * 0.6, top), "right")
    _ground_rail(b, bottoms, -0.8)


def t_bridge(b: Builder) -> None:
    """Wheatstone bridge: two legs of two resistors, a detector part between the midpoints."""
    rng = b.rng
    w = float(rng.uniform(3.5, 4.5))
    h = float(rng.uniform(2.6, 3.2))
    x0, x1, x2 = 0.0, w * 0.8, w * 0.8 + w
    b.two(str(rng.choice(("vsource", "battery"))), (x0, 0.0), (x0, 2 * h))
    b.wire((x0, 2 * h), (x2, 2 * h))
    for x in (x1, x2):
        b.two("resistor", (x, 2 * h), (x, h))
        b.two(str(rng.choice(("resistor", "resistor", "potentiometer"))) if x == x2 else "resistor", (x, h), (x, 0.0))
    b.two(str(rng.choice(("resistor", "led", "capacitor"))), (x1, h), (x2, h))
    b.wire((x0, 0.0), (x2, 0.0))
    if rng.random() < 0.7:
        b.ground((x1, 0.0))
    for p in b.layout.parts:
        if p.type == "potentiometer":
            tx, ty = p.pins["W"]
            b.wire((tx, ty), (tx + 0.9, ty), (tx + 0.9, p.pins["2"][1]), p.pins["2"])
            b.dot(p.pins["2"])


def t_rectifier(b: Builder) -> None:
    """Half-wave or bridge rectifier from an AC source or a transformer, smoothing cap and load."""
    rng = b.rng
    h = float(rng.uniform(3.0, 3.6))
    use_tx = rng.random() < 0.6
    if use_tx:
        b.two("vsource_ac", (-4.2, 0.0), (-4.2, 1.6))
        t = b.transformer((-3.0, 1.6))
        b.wire((-4.2, 1.6), t.pins["P1"])
        b.wire((-4.2, 0.0), t.pins["P2"])
        a_top, a_bot = t.pins["S1"], t.pins["S2"]
    else:
        b.two("vsource_ac", (-1.0, 0.0), (-1.0, 1.6))
        a_top, a_bot = (-1.0, 1.6), (-1.0, 0.0)
    xo = a_top[0] + float(rng.uniform(1.2, 1.8))
    if rng.random() < 0.5:
        # half wave: diode along the top, return along the bottom
        b.wire(a_top, (xo, a_top[1]), (xo, h))
        x = xo + float(rng.uniform(2.8, 3.4))
        b.two("diode", (xo, h), (x, h))
        b.wire(a_bot, (xo, a_bot[1]), (xo, -0.8), (x, -0.8))
        low = -0.8
    else:
        # bridge as two legs; the second AC wire crosses the first leg without joining it
        xa, xb = xo + 0.8, xo + 3.6
        top, low = h + 1.5, -2.0
        mid = (a_top[1] + a_bot[1]) / 2 + 0.2
        b.two("diode", (xa, mid), (xa, top))
        b.two("diode", (xa, low), (xa, mid - 1.4))
        b.wire((xa, mid - 1.4), (xa, mid))
        b.two("diode", (xb, mid), (xb, top))
        b.two("diode", (xb, low), (xb, mid - 1.4))
        b.wire((xb, mid - 1.4), (xb, mid))
        b.wire(a_top, (xa, a_top[1]))
        if abs(a_top[1] - mid) > 1e-6:
            b.wire((xa, a_top[1]), (xa, mid))
        cy = mid - 0.8
        b.wire(a_bot, (a_bot[0] + 0.4, a_bot[1]), (a_bot[0] + 0.4, cy), (xb, cy))
        b.wire((xb, cy), (xb, mid))
        x = xb + float(rng.uniform(2.0, 2.6))
        b.wire((xa, top), (x, top))
        b.wire((xa, low), (x, low))
        h = top
    # smoothing cap, optional zener, load
    xs = [x]
    b.two("capacitor_polarized", (x, h), (x, low))
    x2 = x + float(rng.uniform(2.6, 3.2))
    if rng.random() < 0.5:
        b.two("resistor", (x, h), (x2, h))
        b.two("zener", (x2, low), (x2, h))
    else:
        b.wire((x, h), (x2, h))
        b.two(str(rng.choice(("resistor", "led"))), (x2, h), (x2, low))
    b.wire((x, low), (x2, low))
    xs.append(x2)
    if rng.random() < 0.5:
        b.ground((x2, low))
    if rng.random() < 0.4:
        b.wire((x2, h), (x2 + 1.4, h))
        b.terminal((x2 + 1.4, h), "right")


def t_bjt_amp(b: Builder) -> None:
    """Common-emitter / emitter-follower stage with bias divider, coupling caps and a supply rail."""
    rng = b.rng
    kind = "npn" if rng.random() < 0.75 else "pnp"
    top, bot = 6.0, -1.0
    q = b.bjt(kind, (0.0, 2.5))  # PNP unflipped: emitter up, towards the supply
    bx, by = q.pins["B"]
    hi, lo = (q.pins["C"], q.pins["E"]) if kind == "npn" else (q.pins["E"], q.pins["C"])
    xb = bx - 1.6
    # bias divider on the base
    b.two("resistor", (xb, top), (xb, by))
    b.two("resistor", (xb, by), (xb, bot))
    b.wire((xb, by), (bx, by))
    # collector / emitter network
    follower = rng.random() < 0.3
    if follower:
        b.wire(hi, (hi[0], top))
    else:
        b.two("resistor", (hi[0], top), hi)
    b.two("resistor", lo, (lo[0], bot))
    if not follower and rng.random() < 0.5:
        # emitter bypass (a follower's output is its emitter: its coupling cap runs where this would)
        xe = lo[0] + 1.6
        b.wire((lo[0], lo[1] - 0.3), (xe, lo[1] - 0.3))
        b.two("capacitor_polarized", (xe, lo[1] - 0.3), (xe, bot))
        b.wire((xe, bot), (lo[0], bot))
    # rails
    b.wire((xb, top), (hi[0], top))
    b.wire((xb, bot), (lo[0], bot))
    sx = xb if rng.random() < 0.5 else hi[0]
    b.supply((sx, top))  # a rail symbol that hung down from the top rail sat across the wire below it
    # input coupling
    xi = xb - float(rng.uniform(2.6, 3.2))
    b.two("capacitor", (xi, by), (xb, by))
    if rng.random() < 0.6:
        b.two("vsource_ac", (xi, bot), (xi, by))
        b.wire((xi, bot), (xb, bot))
    else:
        b.terminal((xi, by), "left")
    gx = xb
    b.ground((gx, bot))
    # output coupling
    out = lo if follower else hi
    xo = out[0] + float(rng.uniform(2.4, 3.0))
    b.two("capacitor", (out[0], out[1] - (0.4 if follower else -0.0)), (xo, out[1] - (0.4 if follower else 0.0)))
    if rng.random() < 0.5:
        b.two("resistor", (xo, out[1] - (0.4 if follower else 0.0)), (xo, bot - 0.0))
        b.ground((xo, bot))
    else:
        b.terminal((xo, out[1] - (0.4 if follower else 0.0)), "right")


def t_mos_stage(b: Builder) -> None:
    """Common-source stage, source follower or CMOS inverter."""
    rng = b.rng
    top, bot = 6.5, -1.0
    if rng.random() < 0.45:
        # CMOS inverter
        p = b.mos("pmos", (0.0, 4.2))
        n = b.mos("nmos", (0.0, 1.0))
        b.wire(p.pins["D"], n.pins["D"])
        b.wire(p.pins["S"], (p.pins["S"][0], top))
        b.wire(n.pins["S"], (n.pins["S"][0], bot))
        for m, rail in ((p, top), (n, bot)):
            if "B" in m.pins:
                bxx, byy = m.pins["B"]
                b.wire((bxx, byy), (bxx + 0.6, byy), (bxx + 0.6, (m.pins["S"][1] + rail) / 2))
                b.wire((bxx + 0.6, (m.pins["S"][1] + rail) / 2), (m.pins["S"][0], (m.pins["S"][1] + rail) / 2))
        xg = -1.4
        b.wire(p.pins["G"], (xg, p.pins["G"][1]), (xg, n.pins["G"][1]), n.pins["G"])
        ym = (p.pins["G"][1] + n.pins["G"][1]) / 2
        b.wire((xg, ym), (xg - 1.2, ym))
        b.terminal((xg - 1.2, ym), "left")
        xd = p.pins["D"][0]
        yd = (p.pins["D"][1] + n.pins["D"][1]) / 2
        b.wire((xd, yd), (xd + 1.8, yd))
        if rng.random() < 0.5:
            b.two("capacitor", (xd + 1.8, yd), (xd + 1.8, bot))
            b.ground((xd + 1.8, bot))
            b.wire((xd + 1.8, yd), (xd + 3.0, yd))
            b.terminal((xd + 3.0, yd), "right")
        else:
            b.terminal((xd + 1.8, yd), "right")
        b.supply((p.pins["S"][0], top))
        b.ground((n.pins["S"][0], bot))
        return
    kind = "nmos" if rng.random() < 0.7 else "pmos"
    m = b.mos(kind, (0.0, 2.5))  # unflipped: NMOS drain up, PMOS source up (towards the supply)
    hi, lo = (m.pins["D"], m.pins["S"]) if kind == "nmos" else (m.pins["S"], m.pins["D"])
    b.two(str(rng.choice(("resistor", "resistor", "inductor"))), (hi[0], top), hi)
    if rng.random() < 0.6:
        b.two("resistor", lo, (lo[0], bot))
    else:
        b.wire(lo, (lo[0], bot))
    if "B" in m.pins:
        bxx, byy = m.pins["B"]
        b.wire((bxx, byy), (bxx + 0.7, byy), (bxx + 0.7, bot), (lo[0], bot))
    gx, gy = m.pins["G"]
    xg = gx - 1.4
    b.two("resistor", (xg, top), (xg, gy))
    b.two("resistor", (xg, gy), (xg, bot))
    b.wire((xg, gy), (gx, gy))
    b.wire((xg, top), (hi[0], top))
    b.wire((xg, bot), (lo[0], bot))
    b.supply((xg, top))
    b.ground((xg, bot))
    xi = xg - 2.8
    b.two("capacitor", (xi, gy), (xg, gy))
    b.terminal((xi, gy), "left")
    xo = hi[0] + 2.4
    b.two("capacitor", (hi[0], hi[1] + 0.4), (xo, hi[1] + 0.4))
    b.terminal((xo, hi[1] + 0.4), "right")


def t_opamp(b: Builder) -> None:
    """Inverting / non-inverting amplifier, follower, integrator, differentiator, comparator."""
    rng = b.rng
    mode = str(rng.choice(("inv", "noninv", "follower", "integrator", "diff", "summer")))
    op = b.opamp((0.0, 0.0))
    m, p, o = op.pins["-"], op.pins["+"], op.pins["OUT"]
    fb_y = m[1] + float(rng.uniform(1.6, 2.2))
    xfb = m[0] - 0.6
    if mode in ("inv", "integrator", "diff", "summer"):
        xin = xfb - float(rng.uniform(2.6, 3.2))
        kind = "capacitor" if mode == "diff" else "resistor"
        xj = xfb - 0.9 if mode == "summer" else xfb  # summing joint, clear of the input part
        b.two(kind, (xin - (0.9 if mode == "summer" else 0.0), m[1]), (xj, m[1]))
        b.wire((xj, m[1]), (xfb, m[1]))
        b.wire((xfb, m[1]), m)
        b.wire((xfb, m[1]), (xfb, fb_y))
        fb_kind = "capacitor" if mode == "integrator" else "resistor"
        b.two(fb_kind, (xfb, fb_y), (o[0] + 0.6, fb_y))
        if mode == "inv" and rng.random() < 0.4:
            y2 = fb_y + 1.8
            b.wire((xfb, fb_y), (xfb, y2))
            b.two("capacitor", (xfb, y2), (o[0] + 0.6, y2))
            b.wire((o[0] + 0.6, y2), (o[0] + 0.6, fb_y))
        b.wire((o[0] + 0.6, fb_y), (o[0] + 0.6, o[1]))
        b.wire(o, (o[0] + 0.6, o[1]))
        if mode == "summer":
            # a second input resistor joins the summing node from above
            y2 = m[1] + 1.2
            b.two("resistor", (xin - 0.9, y2), (xj, y2))
            b.wire((xj, y2), (xj, m[1]))
            b.terminal((xin - 0.9, y2), "left")
            xin -= 0.9
        if rng.random() < 0.6:
            b.two(str(rng.choice(("vsource_ac", "vsource"))), (xin, p[1] - 2.0), (xin, m[1]))
            b.ground((xin, p[1] - 2.0))
        else:
            b.terminal((xin, m[1]), "left")
        # non-inverting input to ground (direct or via a resistor)
        if rng.random() < 0.5:
            b.wire(p, (p[0] - 0.5, p[1]), (p[0] - 0.5, p[1] - 1.0))
            b.ground((p[0] - 0.5, p[1] - 1.0))
        else:
            b.wire(p, (p[0] - 0.5, p[1]))
            b.two("resistor", (p[0] - 0.5, p[1]), (p[0] - 0.5, p[1] - 2.6))
            b.ground((p[0] - 0.5, p[1] - 2.6))
    elif mode == "noninv":
        b.wire(m, (xfb, m[1]), (xfb, fb_y))
        b.two("resistor", (xfb, fb_y), (o[0] + 0.6, fb_y))
        b.wire((o[0] + 0.6, fb_y), (o[0] + 0.6, o[1]))
        b.wire(o, (o[0] + 0.6, o[1]))
        xin = p[0] - float(rng.uniform(2.4, 3.0))
        xg = min(xfb - 1.2, xin - 1.4)  # left of the input branch, so the ground clears it
        b.wire((xfb, fb_y), (xg, fb_y))
        b.two("resistor", (xg, fb_y), (xg, fb_y - 2.6))
        b.ground((xg, fb_y - 2.6))
        b.two(str(rng.choice(("resistor", "capacitor"))), (xin, p[1]), p)
        if rng.random() < 0.5:
            b.two("vsource_ac", (xin, p[1] - 2.6), (xin, p[1]))
            b.ground((xin, p[1] - 2.6))
        else:
            b.terminal((xin, p[1]), "left")
    else:  # follower
        b.wire(m, (xfb, m[1]), (xfb, fb_y), (o[0] + 0.6, fb_y), (o[0] + 0.6, o[1]))
        b.wire(o, (o[0] + 0.6, o[1]))
        xin = p[0] - float(rng.uniform(2.4, 3.0))
        b.wire((xin, p[1]), p)
        b.two("vsource", (xin, p[1] - 2.6), (xin, p[1]))
        b.ground((xin, p[1] - 2.6))
    xo = o[0] + float(rng.uniform(2.0, 2.6))
    b.wire((o[0] + 0.6, o[1]), (xo, o[1]))
    if rng.random() < 0.5:
        b.two("resistor", (xo, o[1]), (xo, o[1] - 2.8))
        b.ground((xo, o[1] - 2.8))
        if rng.random() < 0.5:
            b.wire((xo, o[1]), (xo + 1.2, o[1]))
            b.terminal((xo + 1.2, o[1]), "right")
    else:
        b.terminal((xo, o[1]), "right")


def t_mirror(b: Builder) -> None:
    """Current mirror (BJT or MOS, sinking or sourcing) with a reference branch and loads."""
    rng = b.rng
    kind = str(rng.choice(("npn", "nmos", "pnp", "pmos")))
    sink = kind in ("npn", "nmos")
    bjt = kind in ("npn", "pnp")
    cn, hn, ln = ("B", "C", "E") if bjt else ("G", "D", "S")
    top, bot = 6.0, -1.0
    near, far = (bot, top) if sink else (top, bot)
    step = 1.0 if sink else -1.0  # from a device towards the far rail
    xs = [0.0] + [float(rng.uniform(2.8, 3.4)) * (i + 1) for i in range(int(rng.integers(1, 3)))]
    devs = [
        b.bjt(kind, (x, 2.5), mirror=(i == 0)) if bjt else b.mos(kind, (x, 2.5), mirror=(i == 0), bulk=False)
        for i, x in enumerate(xs)
    ]
    ref = devs[0]
    b.wire(ref.pins[cn], devs[-1].pins[cn])
    # diode connection: around the outside of the reference device to the control line
    hx, hy = ref.pins[hn]
    yk = hy + 0.5 * step
    xk = ref.pins[cn][0] + 0.5
    b.wire((hx, hy), (hx, yk), (xk, yk), (xk, ref.pins[cn][1]))
    for d in devs:
        b.wire(d.pins[ln], (d.pins[ln][0], near))
    b.wire((devs[0].pins[ln][0], near), (devs[-1].pins[ln][0], near))
    if sink:
        b.ground((devs[0].pins[ln][0], near))
    else:
        b.supply((devs[0].pins[ln][0], near))
    ref_kind = str(rng.choice(("resistor", "isource")))
    if sink:
        b.two(ref_kind, (hx, far), (hx, yk))
    else:
        b.two(ref_kind, (hx, yk), (hx, far))
    for d in devs[1:]:
        lx, ly = d.pins[hn]
        load = str(rng.choice(("resistor", "resistor", "led"))) if sink else "resistor"
        if sink:
            b.two(load, (lx, far), (lx, ly))
        else:
            b.two(load, (lx, ly), (lx, far))
    b.wire((hx, far), (devs[-1].pins[hn][0], far))
    if sink:
        b.supply((devs[-1].pins[hn][0], far))
    else:
        b.ground((hx, far))


def t_diffpair(b: Builder) -> None:
    """Differential pair with resistor loads and a tail current source or resistor."""
    rng = b.rng
    kind = str(rng.choice(("npn", "nmos")))
    top, bot = 7.0, -1.5
    q1 = b.bjt(kind, (0.0, 2.5)) if kind == "npn" else b.mos(kind, (0.0, 2.5), bulk=False)
    q2 = b.bjt(kind, (4.6, 2.5), mirror=True) if kind == "npn" else b.mos(kind, (4.6, 2.5), mirror=True, bulk=False)
    h, lo_, c = ("C", "E", "B") if kind == "npn" else ("D", "S", "G")
    e1, e2 = q1.pins[lo_], q2.pins[lo_]
    ytail = min(e1[1], e2[1]) - 0.8
    b.wire(e1, (e1[0], ytail), (e2[0], ytail), e2)
    xt = (e1[0] + e2[0]) / 2
    b.two(str(rng.choice(("isource", "resistor"))), (xt, ytail), (xt, bot))
    if rng.random() < 0.5:
        b.ground((xt, bot))
    else:
        b.supply((xt, bot), down=True)
    for q in (q1, q2):
        b.two("resistor", (q.pins[h][0], top), q.pins[h])
    b.wire((q1.pins[h][0], top), (q2.pins[h][0], top))
    b.supply(((q1.pins[h][0] + q2.pins[h][0]) / 2, top))
    for q, side in ((q1, "left"), (q2, "right")):
        gx, gy = q.pins[c]
        ox = gx - 1.2 if side == "left" else gx + 1.2
        b.wire((gx, gy), (ox, gy))
        b.terminal((ox, gy), side)
    # outputs: taken from the drains/collectors; the crossed variant swaps them over the top
    y_out = q1.pins[h][1] + 0.7
    for q, side in ((q1, "left"), (q2, "right")):
        dx, _ = q.pins[h]
        ox = dx - 1.4 if side == "left" else dx + 1.4
        b.wire((dx, y_out), (ox, y_out))
        b.terminal((ox, y_out), side)


def t_regulator(b: Builder) -> None:
    """Zener-referenced series pass regulator (emitter follower) with input and output caps."""
    rng = b.rng
    top, bot = 5.0, -1.0
    q = b.bjt("npn", (3.0, 2.5))
    cx, cy = q.pins["C"]
    ex, ey = q.pins["E"]
    bx, by = q.pins["B"]
    xin = -1.5
    _source_or_terminal(b, (xin, top), (xin, bot), ("vsource", "battery"))
    b.wire((xin, top), (cx, top), (cx, cy))
    xz = bx - 1.5
    b.two("resistor", (xz, top), (xz, by))
    b.wire((xz, by), (bx, by))
    b.two("zener", (xz, bot), (xz, by))
    if rng.random() < 0.5:
        xc = xz - 1.6
        b.two("capacitor_polarized", (xc, top), (xc, bot))
    b.wire((xin, bot), (ex + 4.0, bot))
    yo = ey - 0.6
    b.wire((ex, ey), (ex, yo), (ex + 4.0, yo))
    b.two("capacitor", (ex + 1.8, yo), (ex + 1.8, bot))
    b.two(str(rng.choice(("resistor", "led"))), (ex + 4.0, yo), (ex + 4.0, bot))
    if rng.random() < 0.6:
        b.ground((ex + 4.0, bot))


def t_oscillator(b: Builder) -> None:
    """Op-amp astable (relaxation) oscillator or a crystal/LC tank with a transistor."""
    rng = b.rng
    if rng.random() < 0.5:
        op = b.opamp((0.0, 0.0))
        m, p, o = op.pins["-"], op.pins["+"], op.pins["OUT"]
        xo = o[0] + 0.8
        b.wire(o, (xo, o[1]))
        yt = m[1] + 2.0
        xm = m[0] - 0.8
        b.wire(m, (xm, m[1]))
        b.two("resistor", (xm, yt), (xo, yt))
        b.wire((xm, m[1]), (xm, yt))
        b.wire((xo, yt), (xo, o[1]))
        # the capacitor from the inverting node goes left then down to ground
        xc = xm - 1.6
        b.wire((xm, m[1]), (xc, m[1]))
        b.two("capacitor", (xc, m[1]), (xc, p[1] - 3.2))
        b.ground((xc, p[1] - 3.2))
        # positive feedback divider: out -> R -> + -> R -> gnd; its wire crosses nothing
        yb = p[1] - 1.6
        xp = p[0] - 0.4
        b.wire(p, (xp, p[1]), (xp, yb))
        b.two("resistor", (xp, yb), (xo, yb))
        b.wire((xo, yb), (xo, o[1]))
        b.two("resistor", (xp, yb), (xp, yb - 2.6))
        b.ground((xp, yb - 2.6))
        b.wire((xo, o[1]), (xo + 1.4, o[1]))
        b.terminal((xo + 1.4, o[1]), "right")
        return
    # Colpitts-style: transistor with a crystal or LC tank and two capacitors
    top, bot = 6.0, -1.0
    q = b.bjt("npn", (0.0, 2.5))
    bx, by = q.pins["B"]
    ex, ey = q.pins["E"]
    cx, cy = q.pins["C"]
    b.two("resistor", (cx, top), (cx, cy))
    xb = bx - 1.6
    b.two("resistor", (xb, top), (xb, by))
    b.two("resistor", (xb, by), (xb, bot))
    b.wire((xb, by), (bx, by))
    b.wire((xb, top), (cx, top))
    b.supply((xb, top))
    b.two("resistor", (ex, ey), (ex, bot))
    xt = xb - 2.6
    b.two(str(rng.choice(("crystal", "inductor"))), (xt, by), (xb, by))
    b.two("capacitor", (xt, by), (xt, bot))
    xe2 = ex + 1.6
    b.wire((ex, ey - 0.4), (xe2, ey - 0.4))
    b.two("capacitor", (xe2, ey - 0.4), (xe2, bot))
    b.wire((xt, bot), (xe2, bot))
    b.ground((ex, bot))
    b.wire((cx, cy + 0.5), (cx + 2.0, cy + 0.5))
    b.terminal((cx + 2.0, cy + 0.5), "right")


def t_simple_loop(b: Builder) -> None:
    """Battery/source, switch, resistor or potentiometer and LED/lamp-like loads in a loop."""
    rng = b.rng
    w = float(rng.uniform(2.8, 3.4))
    h = float(rng.uniform(3.2, 3.8))
    b.two(str(rng.choice(("battery", "vsource"))), (0.0, 0.0), (0.0, h))
    parts = [
        "switch",
        str(rng.choice(("resistor", "potentiometer", "resistor"))),
        str(rng.choice(("led", "inductor", "resistor"))),
    ]
    rng.shuffle(parts)
    x = 0.0
    for k in parts[:2]:
        b.two(k, (x, h), (x + w, h))
        x += w
    last = parts[2]
    if last == "led":
        b.two("led", (x, h), (x, 0.0))
    else:
        b.two(last, (x, h), (x, 0.0))
    if rng.random() < 0.5:
        b.two("capacitor", (x + w * 0.7, h), (x + w * 0.7, 0.0))
        b.wire((x, h), (x + w * 0.7, h))
        b.wire((x, 0.0), (x + w * 0.7, 0.0))
    b.wire((0.0, 0.0), (x, 0.0))
    if rng.random() < 0.4:
        b.ground((0.0, 0.0))
    for p in b.layout.parts:
        if p.type == "potentiometer":
            tx, ty = p.pins["W"]
            end = p.pins["2"]
            b.wire((tx, ty), (tx, ty + 0.6), (end[0] + 0.6 if end[0] > tx else end[0] - 0.6, ty + 0.6))
            b.wire(
                (end[0] + 0.6 if end[0] > tx else end[0] - 0.6, ty + 0.6),
                (end[0] + 0.6 if end[0] > tx else end[0] - 0.6, end[1]),
            )


def t_rlc_tank(b: Builder) -> None:
    """Series or parallel RLC driven by a source, one branch per column; a bypass wire crosses a rail."""
    rng = b.rng
    g = float(rng.uniform(2.6, 3.2))
    h = float(rng.uniform(3.0, 3.6))
    b.two(str(rng.choice(("vsource_ac", "isource", "vsource"))), (0.0, 0.0), (0.0, h))
    kinds = ["resistor", "inductor", "capacitor"]
    rng.shuffle(kinds)
    xs = [g * (i + 1) for i in range(3)]
    for x, k in zip(xs, kinds):
        b.two(k, (x, h), (x, 0.0))
    b.wire((0.0, h), (xs[-1], h))
    b.wire((0.0, 0.0), (xs[-1], 0.0))
    if rng.random() < 0.6:
        b.ground((0.0, 0.0))
    if rng.random() < 0.5:
        # probe wire from the top node to a terminal below the bottom rail: a crossing, not a joint
        xp = xs[-1] + 1.2
        b.wire((xs[-1], h), (xp, h), (xp, -1.5))
        b.wire((xs[-1], 0.0), (xp + 1.0, 0.0))
        b.terminal((xp + 1.0, 0.0), "right")
        b.terminal((xp, -1.5), "down")


TEMPLATES: dict[str, Callable[[Builder], None]] = {
    "ladder": t_ladder,
    "bridge": t_bridge,
    "rectifier": t_rectifier,
    "bjt_amp": t_bjt_amp,
    "mos_stage": t_mos_stage,
    "opamp": t_opamp,
    "mirror": t_mirror,
    "diffpair": t_diffpair,
    "regulator": t_regulator,
    "oscillator": t_oscillator,
    "simple_loop": t_simple_loop,
    "rlc_tank": t_rlc_tank,
}
TEMPLATE_WEIGHTS: dict[str, float] = {
    "ladder": 2.0,
    "bridge": 0.7,
    "rectifier": 1.2,
    "bjt_amp": 1.2,
    "mos_stage": 1.2,
    "opamp": 1.5,
    "mirror": 1.0,
    "diffpair": 0.8,
    "regulator": 0.8,
    "oscillator": 0.8,
    "simple_loop": 0.8,
    "rlc_tank": 0.8,
}


def random_circuit(rng: np.random.Generator, style: dict, template: str | None = None) -> Layout:
    """Draw one random circuit (schemdraw elements placed, nothing rasterised yet)."""
    names = list(TEMPLATES)
    if template is None:
        w = np.array([TEMPLATE_WEIGHTS[n] for n in names])
        template = names[int(rng.choice(len(names), p=w / w.sum()))]
    b = Builder(rng, style)
    TEMPLATES[template](b)
    b.finish()
    b.layout.template = template
    return b.layout
