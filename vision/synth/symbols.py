"""Symbol variants seen in real drawings that schemdraw does not draw (or draws one way only).

Each class is an ordinary schemdraw element built from segments, so the truth that `render` takes from
elements (box from the segments, pins from the anchors) stays exact for every variant. Geometry
follows schemdraw's own symbols where a variant only changes a detail (a filled arrowhead, a thick
base bar), so a variant and its schemdraw original have the same size and pins.

`sample_look` picks a drawing's symbol habits: one person draws every diode, switch or transistor of a
drawing the same way, so the choices are made per drawing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from schemdraw.elements import Element, Element2Term
from schemdraw.segments import Segment, SegmentArc, SegmentCircle, SegmentPoly

Pt = tuple[float, float]
GAP = (math.nan, math.nan)  # breaks a Segment path (schemdraw's `gap`)

# schemdraw's bipolar transistor geometry (schemdraw.elements.transistors), so variants keep its pins
_BJT_R = 0.55  # circle radius
_BJT_V = _BJT_R * 2 / 3  # x of the base bar
_BJT_V_LEN = _BJT_R * 4 / 3  # base bar length
_BJT_A = _BJT_V_LEN / 4  # where the diagonals leave the bar
_BJT_EMX = _BJT_V + _BJT_R * 0.7
_BJT_EMY = _BJT_V_LEN * 0.7


def arrowhead(tip: Pt, toward: Pt, length: float, width: float, head: str) -> Segment | SegmentPoly:
    """An arrowhead whose tip is at `tip`, pointing along the direction of `toward` (a vector).

    Args:
        head: "filled" (solid triangle), "open" (triangle outline) or "line" (two strokes, a V).
    """
    n = math.hypot(*toward)
    ux, uy = toward[0] / n, toward[1] / n
    bx, by = tip[0] - ux * length, tip[1] - uy * length
    nx, ny = -uy * width / 2, ux * width / 2
    left, right = (bx + nx, by + ny), (bx - nx, by - ny)
    if head == "line":
        return Segment([left, tip, right])
    return SegmentPoly([tip, left, right], fill=head == "filled")


class DiodeSymbol(Element2Term):
    """Diode with a chosen triangle, bar width and fill; optionally the lead runs through the triangle.

    Args:
        length: Triangle length along the leads (schemdraw: 0.35).
        half: Triangle half-width (schemdraw: 0.25).
        bar: Cathode bar half-width.
        filled: Solid triangle.
        through: The lead runs through an open triangle to the bar.
    """

    def __init__(
        self,
        *,
        length: float = 0.35,
        half: float = 0.25,
        bar: float = 0.25,
        filled: bool = False,
        through: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.segments.append(Segment([(0, 0), GAP, (length, 0)]))
        if through:
            self.segments.append(Segment([(0, 0), (length, 0)]))
        self.segments.append(Segment([(length, bar), (length, -bar)]))
        self.segments.append(SegmentPoly([(0, half), (length, 0), (0, -half)], fill=filled))


class SwitchSymbol(Element2Term):
    """Single-throw switch: a lever rising from the first contact towards the second.

    Args:
        contacts: "open" (small circles), "dot" (filled dots) or "none" (bare lever and a stub).
        angle: Lever angle from the leads in degrees.
        radius: Contact radius.
        action: A curved arrow over the lever (schemdraw's closing action, with the arrowhead in the box).
    """

    def __init__(
        self, *, contacts: str = "open", angle: float = 30.0, radius: float = 0.12, action: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        t = math.tan(math.radians(angle))
        self.segments.append(Segment([(0, 0), GAP, (1, 0)]))
        if action:
            (cx, cy), w, h, end = (0.4, 0.25), 0.5, 0.75, math.radians(-10)
            self.segments.append(SegmentArc((cx, cy), width=w, height=h, theta1=-10, theta2=70))
            u = math.atan2(w * math.sin(end), h * math.cos(end))  # the ellipse parameter at that angle
            point = (cx + w / 2 * math.cos(u), cy + h / 2 * math.sin(u))
            self.segments.append(arrowhead(point, (w / 2 * math.sin(u), -h / 2 * math.cos(u)), 0.2, 0.15, "filled"))
        if contacts == "none":
            tip = 0.9
            self.segments.append(Segment([(0, 0), (tip, tip * t)]))
            self.segments.append(Segment([(0.85, 0), (1, 0)]))
            return
        r = radius
        p0 = (r, 0.0)
        tip = 1.0 - r * 0.5
        a = math.atan(t)
        # an open contact is a hollow ring: the lever starts at its rim
        start = (r + r * math.cos(a), r * math.sin(a)) if contacts == "open" else p0
        self.segments.append(Segment([start, (tip, (tip - r) * t)]))
        fill = "bg" if contacts == "open" else True
        self.segments.append(SegmentCircle(p0, r, fill=fill))
        self.segments.append(SegmentCircle((1 - r, 0), r, fill=fill))


class InductorSymbol(Element2Term):
    """Inductor drawn as a row of bumps (half ellipses) with optional core lines.

    Args:
        bumps: Number of bumps.
        height: Bump height over half its width (1: semicircles).
        core: Number of straight core lines beside the bumps.
    """

    def __init__(self, *, bumps: int = 4, height: float = 1.0, core: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        w = 1.0 / bumps
        self.segments.append(Segment([(0, 0), GAP, (1, 0)]))
        for i in range(bumps):
            self.segments.append(SegmentArc(((i + 0.5) * w, 0), width=w, height=w * height, theta1=0, theta2=180))
        top = w * height / 2
        for i in range(core):
            y = top + 0.1 + 0.08 * i
            self.segments.append(Segment([(0, y), (1, y)]))


class BatterySymbol(Element2Term):
    """Battery of one or two cells, each a long (+) and a short (-) plate; the short plate may be a thick bar.

    Args:
        cells: 1 or 2.
        long: Half-height of the long plates.
        short: Half-height of the short plates.
        pitch: Distance between the plates of a cell.
        thick: Half-thickness of the short plates drawn as filled bars (0: plain strokes).
    """

    def __init__(
        self,
        *,
        cells: int = 1,
        long: float = 0.375,
        short: float = 0.19,
        pitch: float = 0.19,
        thick: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        xs = [i * pitch for i in range(2 * cells)]
        self.segments.append(Segment([(0, 0), GAP, (xs[-1], 0)]))
        for i, x in enumerate(xs):
            if i % 2 == 0:
                self.segments.append(Segment([(x, long), (x, -long)]))
            elif thick > 0:
                self.segments.append(
                    SegmentPoly(
                        [(x - thick, short), (x + thick, short), (x + thick, -short), (x - thick, -short)], fill=True
                    )
                )
            else:
                self.segments.append(Segment([(x, short), (x, -short)]))


class CurrentSourceSymbol(Element2Term):
    """Current source: a circle, a diamond (controlled source) or two overlapping circles, with an
    arrow from the start towards the end pin (as schemdraw's SourceI).

    Args:
        shape: "circle", "diamond" or "double".
        span: Arrow length as a fraction of the body.
        head_len: Arrowhead length (its width is 0.8 of it).
        head: Arrowhead style (see `arrowhead`).
    """

    def __init__(
        self, *, shape: str = "circle", span: float = 0.5, head_len: float = 0.25, head: str = "filled", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.segments.append(Segment([(0, 0), GAP, (1, 0)]))
        if shape == "diamond":
            self.segments.append(Segment([(0, 0), (0.5, 0.5), (1, 0), (0.5, -0.5), (0, 0)]))
        elif shape == "double":
            self.segments.append(SegmentCircle((0.32, 0), 0.32))
            self.segments.append(SegmentCircle((0.68, 0), 0.32))
        else:
            self.segments.append(SegmentCircle((0.5, 0), 0.5))
        a, b = 0.5 - span / 2, 0.5 + span / 2
        self.segments.append(Segment([(a, 0), (b - (head_len if head == "filled" else 0.0), 0)]))
        self.segments.append(arrowhead((b, 0), (1, 0), head_len, head_len * 0.8, head))


class SupplySymbol(Element):
    """Supply rail symbol on a pin at (0, 0): a stem and a bar, an arrowhead or an open circle above it
    (below it when `down`).

    Args:
        kind: "bar", "arrow" or "circle".
        stem: Stem length.
        extent: Bar half-width, arrowhead length or circle radius.
        down: A negative rail drawn downwards.
    """

    def __init__(
        self, *, kind: str = "bar", stem: float = 0.4, extent: float = 0.25, down: bool = False, **kwargs: Any
    ):
        super().__init__(**kwargs)
        s = -1.0 if down else 1.0
        if kind == "arrow":
            self.segments.append(Segment([(0, 0), (0, s * stem)]))
            self.segments.append(arrowhead((0, s * (stem + extent)), (0, s), extent, extent * 0.9, "filled"))
        elif kind == "circle":
            self.segments.append(Segment([(0, 0), (0, s * stem)]))
            self.segments.append(SegmentCircle((0, s * (stem + extent)), extent, fill="bg"))
        else:
            self.segments.append(Segment([(0, 0), (0, s * stem)]))
            self.segments.append(Segment([(-extent, s * stem), (extent, s * stem)]))
        self.anchors["start"] = (0, 0)
        self.anchors["center"] = (0, 0)
        self.anchors["end"] = (0, 0)
        self.elmparams["drop"] = (0, 0)
        self.elmparams["theta"] = 0


class BjtSymbol(Element):
    """Bipolar transistor on schemdraw's geometry (same pins) with the base bar and emitter arrow drawn
    in one of the ways real drawings use.

    Args:
        pnp: PNP (emitter above, arrow pointing in) rather than NPN (emitter below, arrow pointing out).
        circle: Envelope circle.
        bar: Base bar: "line", "thick" (filled bar) or "box" (open rectangle).
        head: Arrowhead style (see `arrowhead`).
        tip_at: Where on the emitter diagonal the arrow tip sits (1: at its outer end for NPN, at the bar for PNP).
        head_size: Arrowhead scale (1: schemdraw's).
    """

    def __init__(
        self,
        *,
        pnp: bool = False,
        circle: bool = False,
        bar: str = "line",
        head: str = "filled",
        tip_at: float = 1.0,
        head_size: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        v, half, a, ex, ey = _BJT_V, _BJT_V_LEN / 2, _BJT_A, _BJT_EMX, _BJT_EMY
        if bar == "line":
            self.segments.append(Segment([(0, 0), (v, 0)]))
            self.segments.append(Segment([(v, half), (v, -half)]))
        else:
            t = 0.07 if bar == "thick" else 0.09
            self.segments.append(Segment([(0, 0), (v - t, 0)]))
            self.segments.append(
                SegmentPoly([(v - t, half), (v, half), (v, -half), (v - t, -half)], fill=bar == "thick")
            )
        self.segments.append(Segment([(v, a), (ex, ey), (ex, ey + a)]))
        self.segments.append(Segment([(v, -a), (ex, -ey), (ex, -ey - a)]))
        if circle:
            self.segments.append(SegmentCircle((_BJT_R, 0), _BJT_R))
        if pnp:  # emitter diagonal is the upper one, arrow pointing to the bar
            p, q = (ex, ey), (v, a)
        else:
            p, q = (v, -a), (ex, -ey)
        tip = (p[0] + tip_at * (q[0] - p[0]), p[1] + tip_at * (q[1] - p[1]))
        self.segments.append(arrowhead(tip, (q[0] - p[0], q[1] - p[1]), 0.25 * head_size, 0.2 * head_size, head))
        self.anchors["base"] = (0, 0)
        self.anchors["center"] = (ex, 0)
        self.anchors["emitter" if pnp else "collector"] = (ex, ey + a)
        self.anchors["collector" if pnp else "emitter"] = (ex, -ey - a)
        self.elmparams["lblloc"] = "rgt"


class FetSymbol(Element):
    """MOSFET in the analog (leads, channel, gate plate) or digital (gate bubble for PMOS) style.

    Drawn as schemdraw's AnalogNFet/AnalogPFet are: drain (NMOS) or source (PMOS) at (0, 0), the leads
    going down with stubs to a vertical channel on the right, the gate plate and gate lead right of it.

    Args:
        pmos: P-channel (source at the top).
        bulk: Draw a bulk stub with its own pin (at the middle of the lead column).
        arrow: "source" (arrow on the source stub; a bulk stub stays a plain line), "bulk" (arrow on the
            bulk stub) or "none" (digital style: no arrow; PMOS gets a bubble on its gate).
        head: Arrowhead style (see `arrowhead`).
        lead: Length of the drain and source leads.
        thick: Channel drawn as a filled bar.
        center_gate: Gate lead at the channel's middle (else at the source end).
    """

    def __init__(
        self,
        *,
        pmos: bool = False,
        bulk: bool = False,
        arrow: str = "source",
        head: str = "filled",
        lead: float = 0.42,
        thick: bool = False,
        center_gate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        w, h, g, inset = 0.42, 0.83, 0.08, 0.08  # stub, channel, gate gap, gate inset (schemdraw's)
        y_top, y_bot, y_mid = -lead, -lead - h, -lead - h / 2
        self.segments.append(Segment([(0, 0), (0, y_top), (w, y_top)]))
        self.segments.append(Segment([(w, y_bot), (0, y_bot), (0, y_bot - lead)]))
        if thick:
            t = 0.07
            self.segments.append(
                SegmentPoly(
                    [(w, y_top + 0.05), (w + t, y_top + 0.05), (w + t, y_bot - 0.05), (w, y_bot - 0.05)], fill=True
                )
            )
            gx = w + t + g
        else:
            self.segments.append(Segment([(w, y_top), (w, y_bot)]))
            gx = w + g
        self.segments.append(Segment([(gx, y_top - inset), (gx, y_bot + inset)]))
        y_src = y_top if pmos else y_bot
        gy = y_mid if center_gate else (y_src - inset if pmos else y_src + inset)
        gate_len = 0.42
        if arrow == "none" and pmos:
            r = 0.09
            self.segments.append(SegmentCircle((gx + r, gy), r))
            self.segments.append(Segment([(gx + 2 * r, gy), (gx + gate_len + r, gy)]))
            self.anchors["gate"] = (gx + gate_len + r, gy)
        else:
            self.segments.append(Segment([(gx, gy), (gx + gate_len, gy)]))
            self.anchors["gate"] = (gx + gate_len, gy)
        head_len = 0.22
        if bulk:
            self.segments.append(Segment([(0, y_mid), (w, y_mid)]))
            self.anchors["bulk"] = (0, y_mid)
        if arrow == "bulk" and bulk:  # NMOS: pointing to the channel; PMOS: away from it
            tip, d = ((w, y_mid), (1, 0)) if not pmos else ((0.05, y_mid), (-1, 0))
            self.segments.append(arrowhead(tip, d, head_len, head_len, head))
        elif arrow != "none":  # on the source stub: NMOS pointing out of the channel, PMOS into it
            tip, d = ((0.05, y_src), (-1, 0)) if not pmos else ((w, y_src), (1, 0))
            self.segments.append(arrowhead(tip, d, head_len, head_len, head))
        top, bottom = (0, 0), (0, y_bot - lead)
        self.anchors["source" if pmos else "drain"] = top
        self.anchors["drain" if pmos else "source"] = bottom
        self.anchors["center"] = (0, y_mid)
        self.elmparams["lblloc"] = "lft"


def _pick(rng: np.random.Generator, options: dict[str, float]) -> str:
    names = list(options)
    p = np.array([options[n] for n in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_look(rng: np.random.Generator) -> dict[str, Any]:
    """One drawing's symbol habits (merged into the drawing style; every value is JSON-friendly).

    The probabilities follow what the real drawings of circuits-real show (crops of its train split):
    most diodes are filled, bare levers are as common as switches with contact circles, inductors are
    mostly bumps, supplies are bars or arrows. Real boxes also hold only a part's body and a short stub;
    a style's `lead_stub` draws that, but it is left out here: with pins that close to small bodies the
    reader's pin windows reach both wires of a capacitor (held-out clean exact 0.915 against 0.960 with
    leads, first 200 drawings, a detector fine-tuned on stubs).
    """
    head = {"filled": 0.6, "open": 0.25, "line": 0.15}
    return {
        "diode_filled": bool(rng.random() < 0.6),
        "diode_through": bool(rng.random() < 0.3),
        "diode_length": float(rng.uniform(0.3, 0.45)),
        "diode_half": float(rng.uniform(0.55, 0.8)),  # triangle half-width over its length
        "diode_bar": float(rng.uniform(1.0, 1.4)),  # bar half-width over the triangle's
        "switch": _pick(rng, {"open": 0.35, "none": 0.3, "dot": 0.15, "button": 0.1, "action": 0.1}),
        "switch_angle": float(rng.uniform(20, 40)),
        "inductor_bumps": int(rng.integers(3, 6)),
        "inductor_height": float(rng.uniform(1.0, 1.6)),
        "inductor_core": int(rng.choice([0, 0, 0, 0, 0, 0, 0, 1, 1, 2])),
        "battery_long": float(rng.uniform(0.3, 0.45)),
        "battery_short": float(rng.uniform(0.4, 0.6)),  # over the long plate
        "battery_pitch": float(rng.uniform(0.16, 0.26)),
        "battery_thick": float(rng.uniform(0.025, 0.045)) if rng.random() < 0.35 else 0.0,
        "isource": _pick(rng, {"circle": 0.65, "diamond": 0.2, "double": 0.15}),
        "isource_span": float(rng.uniform(0.5, 0.8)),
        "isource_head": float(rng.uniform(0.2, 0.35)),
        "isource_arrow": _pick(rng, {"filled": 0.8, "open": 0.1, "line": 0.1}),
        "supply": _pick(rng, {"bar": 0.55, "arrow": 0.3, "circle": 0.15}),
        "supply_stem": float(rng.uniform(0.2, 0.45)),
        "supply_bar": float(rng.uniform(0.2, 0.45)),
        "bjt_bar": _pick(rng, {"line": 0.6, "thick": 0.25, "box": 0.15}),
        "bjt_head": _pick(rng, head),
        "bjt_at": float(rng.uniform(0.55, 1.0)),
        "bjt_head_size": float(rng.uniform(0.8, 1.3)),
        "fet_head": _pick(rng, head),
        "fet_bulk_arrow": bool(rng.random() < 0.5),  # with a bulk pin: arrow on the bulk, else on the source
        "fet_lead": float(rng.uniform(0.2, 0.42)),
        "fet_thick": bool(rng.random() < 0.25),
        "fet_center_gate": bool(rng.random() < 0.7),
    }
