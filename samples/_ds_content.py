"""The content of the synthetic datasheet: chapters, tables, figures, equations and cross-referencing prose.

`build(seed, scale)` returns the element flow for the layout engine. Every random choice comes from an RNG seeded
by `seed` plus a tag naming the unit of content, so a larger `scale` adds units without changing earlier ones.
Paragraphs that mention other content are written after all tables, figures, sections and equations exist, so a
mention may point forwards or backwards anywhere in the document.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from samples import _ds_art as art
from samples._ds_layout import (
    CellSpec,
    FigureEl,
    FigureRow,
    Formula,
    Heading,
    Mode,
    PageBreak,
    Para,
    Ref,
    TableEl,
    TocEl,
)

PART = art.PART
TITLE = f"{PART} 4.5-V to 36-V, 3-A Synchronous Step-Down Converter With Power Good"

FILLER = {
    "general": [
        "The device integrates both power MOSFETs and needs only a few external components.",
        "Peak current-mode control gives fast transient response and simple loop compensation.",
        "All limits apply over the full junction temperature range unless noted otherwise.",
        "The internal reference is trimmed at the factory to an accuracy of ±1 %.",
        "A figure of merit often used for such converters is the product of on-resistance and gate charge.",
        "Light-load efficiency is kept high by skipping pulses when the inductor current falls to zero.",
        "The converter runs at a fixed frequency in normal operation, which eases filter design.",
        "Thermal shutdown protects the device when the junction temperature exceeds its limit.",
        "Cycle-by-cycle current limiting protects the high-side switch during overload.",
        "The design keeps the quiescent current low so that battery-powered systems run longer.",
        "Ceramic capacitors with X7R or X5R dielectric keep the output ripple small.",
        "The switching node rises and falls in a few nanoseconds, so keep the loop area small.",
    ],
    "register": [
        "Writes to reserved bits are ignored and reads return zero.",
        "The register keeps its value until the next power-on reset or a software reset.",
        "A write takes effect at the next switching cycle boundary.",
        "Bits marked R/W can be changed at any time while the converter is running.",
        "Writes to register page 1 require the unlock sequence first.",
        "The fault bits latch and clear when the host reads the register.",
    ],
    "layout": [
        "Place the input capacitors as close to the VIN and GND pins as possible.",
        "Route the feedback trace away from the switch node and the inductor.",
        "Use a solid ground plane on the layer next to the components.",
        "Connect the exposed thermal pad to the ground plane with several vias.",
        "Keep the bootstrap capacitor next to the BOOT and SW pins.",
        "A full-page layout of the evaluation board is available from the product folder.",
    ],
    "app": [
        "Start the design by fixing the input voltage range, output voltage and load current.",
        "The inductor ripple current is usually chosen between 20 % and 40 % of the maximum load.",
        "Select the output capacitor for both the ripple and the load-step requirements.",
        "A small feed-forward capacitor across the upper feedback resistor improves the phase margin.",
        "The input capacitor must carry the RMS ripple current without excessive heating.",
        "This section of the design procedure assumes continuous conduction at full load.",
    ],
}


@dataclass
class Ctx:
    """Everything a deferred paragraph may refer to, filled in as the flow is built."""

    tables: list[TableEl] = field(default_factory=list)
    figures: list[FigureEl] = field(default_factory=list)
    sections: list[Heading] = field(default_factory=list)
    equations: list[Formula] = field(default_factory=list)
    chapter_of: dict[int, int] = field(default_factory=dict)  # id(element) → chapter number


class Builder:
    """Accumulates the element flow with section, table, figure and equation numbering."""

    def __init__(self, seed: int, scale: float, art_cache: dict[str, art.Art]) -> None:
        self.seed = seed
        self.scale = scale
        self.flow: list[Any] = []
        self.ctx = Ctx()
        self.deferred: list[tuple[Para, Callable[[Ctx, random.Random, int], list[str | Ref]], str, int]] = []
        self.numbers = [0, 0, 0]
        self.fig_in_chapter = 0
        self._art_cache = art_cache

    def rng(self, tag: str) -> random.Random:
        return random.Random(f"{self.seed}:{tag}")

    def count(self, base: float, minimum: int = 1) -> int:
        return max(minimum, round(base * self.scale))

    # -- structure

    def heading(self, level: int, title: str) -> Heading:
        self.numbers[level - 1] += 1
        for k in range(level, 3):
            self.numbers[k] = 0
        if level == 1:
            self.fig_in_chapter = 0
        number = ".".join(str(n) for n in self.numbers[:level])
        h = Heading(level, number, title)
        self.flow.append(h)
        self.ctx.sections.append(h)
        self.ctx.chapter_of[id(h)] = self.numbers[0]
        return h

    def para(self, pieces: list[str | Ref], kind: str = "paragraph", implicit: Any = None) -> Para:
        p = Para(pieces, kind=kind, implicit=implicit)
        self.flow.append(p)
        return p

    def deferred_para(
        self,
        tag: str,
        fn: Callable[[Ctx, random.Random, int], list[str | Ref]],
        implicit: Any = None,
        kind: str = "paragraph",
    ) -> Para:
        """A paragraph written by `fn` once all content exists (its mentions may point anywhere)."""
        p = Para([], kind=kind, implicit=implicit)
        self.flow.append(p)
        self.deferred.append((p, fn, tag, self.numbers[0]))
        return p

    def table(
        self,
        title: str,
        rows: list[list[CellSpec]],
        n_header: int,
        style: str,
        weights: list[float] | None = None,
        continued_caption: bool = True,
        width_frac: float = 1.0,
    ) -> TableEl:
        t = TableEl(len(self.ctx.tables) + 1, title, rows, n_header, style, weights, continued_caption, width_frac)
        self.flow.append(t)
        self.ctx.tables.append(t)
        self.ctx.chapter_of[id(t)] = self.numbers[0]
        return t

    def new_figure(self, a: art.Art, title: str | None = None, **kw: Any) -> FigureEl:
        self.fig_in_chapter += 1
        f = FigureEl(f"Figure {self.numbers[0]}-{self.fig_in_chapter}", title or a.title, a, **kw)
        self.ctx.figures.append(f)
        self.ctx.chapter_of[id(f)] = self.numbers[0]
        return f

    def figure(self, a: art.Art, title: str | None = None, **kw: Any) -> FigureEl:
        f = self.new_figure(a, title, **kw)
        self.flow.append(f)
        return f

    def formula(self, expr: str) -> Formula:
        f = Formula(len(self.ctx.equations) + 1, expr)
        self.flow.append(f)
        self.ctx.equations.append(f)
        self.ctx.chapter_of[id(f)] = self.numbers[0]
        return f

    def art(self, key: str, make: Callable[[], art.Art]) -> art.Art:
        if key not in self._art_cache:
            self._art_cache[key] = make()
        return self._art_cache[key]

    def finish(self) -> list[Any]:
        for p, fn, tag, here in self.deferred:
            p.pieces = fn(self.ctx, self.rng("para:" + tag), here)
        return self.flow


# ---------------------------------------------------------------- prose with mentions


SLOTS = {
    "vin": ["5-V", "12-V", "24-V", "36-V", "6-V"],
    "iout": ["100-mA", "1-A", "2-A", "3-A", "500-mA"],
    "qty": [
        "output ripple",
        "switching frequency",
        "quiescent current",
        "load regulation",
        "efficiency",
        "feedback voltage",
        "current limit",
        "soft-start time",
        "junction temperature rise",
        "dropout voltage",
    ],
    "val": ["8 mV", "500 kHz", "24 µA", "0.1 %", "92 %", "0.8 V", "4.5 A", "4 ms", "35 °C", "180 mV"],
    "pct": ["0.5 %", "1 %", "2 %", "3 %", "5 %"],
    "cond": [
        "the EN pin is pulled low",
        "the input falls below the UVLO threshold",
        "the output is shorted",
        "the load drops below the skip threshold",
        "an external clock is applied",
        "the die overheats",
        "the feedback pin is left open",
        "the output is pre-biased",
    ],
    "action": [
        "stops switching within a few microseconds",
        "discharges the soft-start capacitor",
        "enters hiccup mode and retries after a delay",
        "skips pulses to keep efficiency high",
        "locks to the clock within a few cycles",
        "turns both switches off until it cools down",
        "holds the power-good output low",
        "starts without pulling the output down",
    ],
    "comp": [
        "feed-forward capacitor",
        "bootstrap capacitor",
        "soft-start capacitor",
        "pull-up resistor",
        "compensation resistor",
        "input bulk capacitor",
        "snubber resistor",
    ],
    "val2": ["22 pF", "100 nF", "10 nF", "100 kΩ", "10 kΩ", "47 µF", "2.2 Ω"],
    "pin": ["EN", "PG", "SS/TR", "RT/SYNC", "COMP", "FB", "MODE", "BOOT"],
    "pinaction": [
        "must not be left floating",
        "tolerates the full input voltage",
        "has an internal pull-down",
        "is sampled once at start-up",
        "needs a short, direct trace",
        "can be driven by a logic signal",
    ],
}
TEMPLATES = [
    "At {vin} input and {iout} load, the {qty} is typically {val}.",
    "The {qty} changes by less than {pct} over the full temperature range.",
    "When {cond}, the device {action}.",
    "A {comp} of {val2} is a good starting point for most designs.",
    "The {pin} pin {pinaction}.",
    "In most applications the {qty} matters more than the {qty2}, so optimise it first.",
    "Bench measurements at {vin} input confirm that the {qty} stays within {pct} of the calculated value.",
]


def sentence(rng: random.Random, topic: str) -> str:
    """One sentence: from the topic's bank or from a slot template."""
    if rng.random() < 0.45:
        return rng.choice(FILLER[topic] + FILLER["general"])
    t = rng.choice(TEMPLATES)
    vals = {k: rng.choice(v) for k, v in SLOTS.items()}
    vals["qty2"] = rng.choice([q for q in SLOTS["qty"] if q != vals["qty"]])
    return t.format(**vals)


def filler(rng: random.Random, topic: str, n: int) -> str:
    out: list[str] = []
    while len(out) < n:
        s = sentence(rng, topic)
        if s not in out:
            out.append(s)
    return " ".join(out)


def _far(ctx: Ctx, items: list[Any], here: int, rng: random.Random) -> Any:
    """An item from another chapter when there is one (mentions should cross pages)."""
    far = [x for x in items if ctx.chapter_of.get(id(x)) != here]
    return rng.choice(far or items)


def _consecutive(items: list[Any], rng: random.Random, n: int) -> list[Any]:
    start = rng.randrange(max(1, len(items) - n + 1))
    return items[start : start + n]


def mention_sentence(ctx: Ctx, rng: random.Random, kind: str, here: int, local: Any = None) -> list[str | Ref]:
    """One sentence with one or more mentions of `kind`, worded in one of several ways."""
    if kind == "table":
        style = rng.choice(["Table", "Table", "Table", "short", "and", "range", "list", "external"])
        if style in ("and", "range", "list") and len(ctx.tables) >= 4:
            n = {"and": 2, "range": 3, "list": 3}[style]
            ts = _consecutive(ctx.tables, rng, n)
            if style == "list":
                ts = [ts[0], ts[1], ctx.tables[min(len(ctx.tables) - 1, ctx.tables.index(ts[1]) + 2)]]
                if len({id(t) for t in ts}) < 3:
                    style, ts = "and", ts[:2]
            ref = Ref("table", ts, style)
            return rng.choice(
                [
                    ["The register fields are listed in ", ref, "."],
                    ["For the remaining limits, see ", ref, "."],
                    [ref, " give the complete conditions for these measurements."],
                ]
            )
        if style == "external":
            ref = Ref("table", [rng.randint(2, 9)], "Table", external=True)
            return ["Measured bill-of-materials data are given in ", ref, " of the OL-EVM User's Guide."]
        t = local if isinstance(local, TableEl) else _far(ctx, ctx.tables, here, rng)
        ref = Ref("table", [t], style)
        return rng.choice(
            [
                ["The limits are listed in ", ref, "."],
                ["See ", ref, " for the full set of test conditions."],
                [ref, " summarizes the values used in this design."],
                ["Use the values from ", ref, " when sizing the components."],
                ["The device starts switching once the input exceeds the UVLO threshold (see ", ref, ")."],
            ]
        )
    if kind == "figure":
        style = rng.choice(["Figure", "Figure", "short", "and", "through", "short_and", "paren_and"])
        if style in ("and", "through", "short_and", "paren_and") and len(ctx.figures) >= 4:
            same = [f for f in ctx.figures if ctx.chapter_of[id(f)] == ctx.chapter_of[id(ctx.figures[0])]]
            pool = rng.choice([same, ctx.figures]) if len(same) >= 3 else ctx.figures
            chap = ctx.chapter_of[id(rng.choice(pool))]
            in_chap = [f for f in ctx.figures if ctx.chapter_of[id(f)] == chap]
            if len(in_chap) < 3:
                in_chap = [f for f in ctx.figures if ctx.chapter_of[id(f)] == ctx.chapter_of[id(ctx.figures[-1])]]
            n = 3 if style == "through" else 2
            fs = _consecutive(in_chap, rng, n)
            if len(fs) == n:
                if style == "paren_and":
                    return ["The measured waveforms follow the expected shape (", Ref("figure", fs, "and"), ")."]
                ref = Ref("figure", fs, style)
                return rng.choice(
                    [
                        [ref, " show the behaviour over the operating range."],
                        ["Typical waveforms are given in ", ref, "."],
                    ]
                )
            style = "Figure"
        f = local if isinstance(local, FigureEl) else _far(ctx, ctx.figures, here, rng)
        ref = Ref("figure", [f], "short" if style == "short" else "Figure")
        return rng.choice(
            [
                [ref, " shows the circuit used for these measurements."],
                ["The connection is shown in ", ref, "."],
                ["Component values follow the example in ", ref, "."],
                ["The waveform has the shape of ", ref, ", with a short delay before the output rises."],
                ["The complete circuit (", ref, ") uses only standard values."],
            ]
        )
    if kind == "section":
        secs = [s for s in ctx.sections if s.level >= 2] or ctx.sections
        style = rng.choice(["Section", "Section", "Section", "§", "§ ", "and", "chapter", "external"])
        if style == "chapter":
            s = _far(ctx, [s for s in ctx.sections if s.level == 1], here, rng)
            return ["The register interface is covered in ", Ref("section", [s], "chapter"), "."]
        if style == "external":
            return [
                "Trace widths follow ",
                Ref("section", [Heading(2, "6.2", "ext", True)], "Section", external=True),
                " of the IPC-2221 standard.",
            ]
        if style == "and":
            i = rng.randrange(len(secs) - 1)
            if secs[i].number.count(".") == secs[i + 1].number.count("."):
                return ["Both options are described in ", Ref("section", [secs[i], secs[i + 1]], "and"), "."]
            style = "Section"
        s = local if isinstance(local, Heading) else _far(ctx, secs, here, rng)
        ref = Ref("section", [s], style)
        return rng.choice(
            [
                ["This is described in ", ref, "."],
                ["For details, see ", ref, "."],
                [ref, " explains how to choose this value."],
                ["The same rules apply as in ", ref, " and need no change here."],
            ]
        )
    if kind == "equation":
        style = rng.choice(["paren", "paren", "eq", "plain", "and", "eqs"])
        if style in ("and", "eqs") and len(ctx.equations) >= 2:
            i = rng.randrange(len(ctx.equations) - 1)
            return ["Combine ", Ref("equation", ctx.equations[i : i + 2], style), " to check the result."]
        e = local if isinstance(local, Formula) else rng.choice(ctx.equations)
        ref = Ref("equation", [e], "plain" if style in ("and", "eqs") else style)
        return rng.choice(
            [
                ["Calculate the value with ", ref, "."],
                [ref, " gives the minimum value; round up to the next standard value."],
                ["Using ", ref, ", the result is close to the nominal value."],
            ]
        )
    if kind == "page":
        target = local if local is not None else _far(ctx, ctx.figures + ctx.tables, here, rng)
        style = rng.choice(["page", "page", "p.", "with"])
        if style == "with" and isinstance(target, (FigureEl, TableEl)):
            k = "figure" if isinstance(target, FigureEl) else "table"
            return [
                "The recommended layout is shown in ",
                Ref(k, [target], "Figure" if k == "figure" else "Table"),
                " on ",
                Ref("page", [target], "page"),
                ".",
            ]
        return rng.choice(
            [
                ["The pin-out drawing on ", Ref("page", [target], style), " shows the package from the top."],
                ["Refer to the drawing on ", Ref("page", [target], style), " before placing the parts."],
            ]
        )
    raise ValueError(kind)


def ref_para(
    topic: str, kinds: list[str], local: dict[str, Any] | None = None, n_fill: int = 2
) -> Callable[[Ctx, random.Random, int], list[str | Ref]]:
    """A deferred paragraph: filler sentences interleaved with one mention sentence per kind."""
    local = local or {}

    def make(ctx: Ctx, rng: random.Random, here: int) -> list[str | Ref]:
        pieces: list[str | Ref] = [filler(rng, topic, n_fill + rng.randint(1, 2))]
        for k in kinds:
            pieces.append(" ")
            pieces.extend(mention_sentence(ctx, rng, k, here, local.get(k)))
            if rng.random() < 0.5:
                pieces.append(" " + filler(rng, topic, 1))
        pieces.append(" " + filler(rng, topic, rng.randint(1, 3)))
        return pieces

    return make


# ---------------------------------------------------------------- tables


def _c(text: str, rs: int = 1, cs: int = 1, align: str = "l") -> CellSpec:
    return CellSpec(text, rs, cs, align)


def _hdr(*names: str) -> list[CellSpec]:
    return [_c(n, align="c") for n in names]


PIN_NAMES = [
    "VIN",
    "VIN",
    "EN",
    "PG",
    "SS/TR",
    "RT/SYNC",
    "COMP",
    "FB",
    "AGND",
    "VCC",
    "BOOT",
    "SW",
    "SW",
    "PGND",
    "PGND",
    "MODE",
    "ILIM",
    "NC",
    "SDA",
    "SCL",
    "ADDR",
    "INT",
    "VOUT",
    "BIAS",
]
PIN_DESC = {
    "VIN": "Input supply voltage. Connect the input capacitors between this pin and PGND.",
    "EN": "Enable input. Pull high to turn the converter on; a resistor divider sets the start-up voltage.",
    "PG": "Open-drain power-good output. Needs an external pull-up resistor.",
    "SS/TR": "Soft-start and tracking input. A capacitor to AGND sets the soft-start time.",
    "RT/SYNC": "Frequency set resistor or external clock input.",
    "COMP": "Error amplifier output. Connect the compensation network here.",
    "FB": "Feedback input. Connect the output voltage divider here.",
    "AGND": "Analog ground.",
    "VCC": "Internal regulator output. Bypass with 1 µF to AGND.",
    "BOOT": "Bootstrap supply for the high-side gate driver. Connect 100 nF from BOOT to SW.",
    "SW": "Switch node. Connect to the power inductor.",
    "PGND": "Power ground.",
    "MODE": "Selects forced PWM or auto skip mode.",
    "ILIM": "Current limit set resistor.",
    "NC": "No internal connection.",
    "SDA": "I2C data.",
    "SCL": "I2C clock.",
    "ADDR": "I2C address select.",
    "INT": "Open-drain interrupt output.",
    "VOUT": "Output voltage sense for the discharge circuit.",
    "BIAS": "Optional bias supply input.",
}
PIN_IO = {"VIN": "P", "PGND": "G", "AGND": "G", "SW": "P", "PG": "O", "INT": "O", "VCC": "O", "COMP": "O"}


def pin_table(b: Builder, n_pins: int) -> TableEl:
    rows = [
        [_c("PIN", cs=2, align="c"), _c("I/O", rs=2, align="c"), _c("DESCRIPTION", rs=2, align="c")],
        _hdr("NAME", "NO."),
    ]
    names = (PIN_NAMES * 3)[:n_pins]
    for i, n in enumerate(names):
        rows.append([_c(n), _c(str(i + 1), align="c"), _c(PIN_IO.get(n, "I"), align="c"), _c(PIN_DESC[n])])
    return b.table("Pin Functions", rows, 2, "grid", [1.1, 0.6, 0.5, 5.0])


EC_GROUPS = [
    (
        "SUPPLY VOLTAGE AND CURRENT",
        [
            ("VIN operating input voltage", [("", "4.5", "", "36", "V")]),
            ("Shutdown supply current", [("VEN = 0 V", "", "1.5", "4", "µA")]),
            (
                "Quiescent current",
                [("Non-switching, VFB = 0.9 V", "", "24", "40", "µA"), ("TJ = 125 °C", "", "30", "55", "µA")],
            ),
            ("VIN UVLO rising threshold", [("", "4.1", "4.3", "4.48", "V")]),
            ("VIN UVLO hysteresis", [("", "", "330", "", "mV")]),
        ],
    ),
    (
        "ENABLE AND UVLO (EN PIN)",
        [
            ("EN rising threshold", [("", "1.14", "1.21", "1.28", "V")]),
            ("EN falling threshold", [("", "1.0", "1.1", "1.2", "V")]),
            ("EN input current", [("VEN = 1 V", "", "1.2", "", "µA"), ("VEN = 1.5 V", "", "4.8", "", "µA")]),
        ],
    ),
    (
        "VOLTAGE REFERENCE (FB PIN)",
        [
            (
                "Feedback voltage",
                [("TJ = 25 °C", "0.792", "0.8", "0.808", "V"), ("TJ = –40 °C to 125 °C", "0.788", "0.8", "0.812", "V")],
            ),
            ("FB input current", [("VFB = 0.8 V", "", "10", "50", "nA")]),
        ],
    ),
    (
        "ERROR AMPLIFIER",
        [
            ("Transconductance", [("", "", "350", "", "µS")]),
            ("COMP source current", [("VFB = 0.6 V", "", "30", "", "µA")]),
            ("COMP sink current", [("VFB = 1 V", "", "30", "", "µA")]),
        ],
    ),
    (
        "POWER STAGE",
        [
            ("High-side on-resistance", [("VBOOT – VSW = 5 V", "", "85", "160", "mΩ")]),
            ("Low-side on-resistance", [("VIN = 12 V", "", "60", "110", "mΩ")]),
            ("Minimum on-time", [("", "", "90", "130", "ns")]),
            ("Minimum off-time", [("", "", "130", "170", "ns")]),
        ],
    ),
    (
        "CURRENT LIMIT",
        [
            ("High-side current limit", [("", "3.9", "4.5", "5.1", "A")]),
            ("Low-side sourcing limit", [("", "3.2", "3.8", "4.4", "A")]),
            ("Low-side sinking limit", [("", "", "2.0", "", "A")]),
        ],
    ),
    (
        "SOFT START (SS/TR PIN)",
        [
            ("Soft-start charge current", [("", "1.7", "2.2", "2.7", "µA")]),
            ("Internal soft-start time", [("SS/TR open", "", "4.1", "", "ms")]),
        ],
    ),
    (
        "OSCILLATOR (RT/SYNC PIN)",
        [
            (
                "Switching frequency",
                [("RT = 100 kΩ", "450", "500", "550", "kHz"), ("RT open", "360", "400", "440", "kHz")],
            ),
            ("SYNC high threshold", [("", "", "", "2.0", "V")]),
            ("SYNC low threshold", [("", "0.4", "", "", "V")]),
        ],
    ),
    (
        "POWER GOOD (PG PIN)",
        [
            ("PG rising threshold", [("VFB rising, % of VREF", "92", "94", "96", "%")]),
            ("PG falling threshold", [("VFB falling, % of VREF", "88", "90", "92", "%")]),
            ("PG output low voltage", [("IPG = 1 mA", "", "", "0.4", "V")]),
            ("PG leakage current", [("VPG = 5 V", "", "", "100", "nA")]),
        ],
    ),
    (
        "THERMAL SHUTDOWN",
        [
            ("Thermal shutdown threshold", [("", "160", "175", "", "°C")]),
            ("Thermal shutdown hysteresis", [("", "", "15", "", "°C")]),
        ],
    ),
]


def ec_table(b: Builder, n_groups: int) -> TableEl:
    rows = [_hdr("PARAMETER", "TEST CONDITIONS", "MIN", "TYP", "MAX", "UNIT")]
    for title, params in EC_GROUPS[:n_groups]:
        rows.append([_c(title, cs=6)])
        for name, conds in params:
            for i, (cond, mn, ty, mx, unit) in enumerate(conds):
                row = [_c(name, rs=len(conds))] if i == 0 else []
                row += [_c(cond), _c(mn, align="c"), _c(ty, align="c"), _c(mx, align="c"), _c(unit, align="c")]
                rows.append(row)
    return b.table("Electrical Characteristics", rows, 1, "grid", [2.6, 2.6, 0.6, 0.6, 0.6, 0.6])


REG_FIELDS = [
    "EN_SW",
    "MODE",
    "FREQ_SEL",
    "ILIM_SEL",
    "SS_SEL",
    "PG_DLY",
    "OV_EN",
    "UV_EN",
    "FAULT",
    "TSD_FLAG",
    "VOUT_SEL",
    "DISCH_EN",
    "SYNC_EN",
    "SPREAD",
    "RESERVED",
]


def register_table(b: Builder, rng: random.Random, name: str, style: str) -> TableEl:
    rows = [_hdr("BIT", "FIELD", "TYPE", "RESET", "DESCRIPTION")]
    bit = 7
    while bit >= 0:
        width = min(bit + 1, rng.choice([1, 1, 2, 3]))
        bits = str(bit) if width == 1 else f"{bit}:{bit - width + 1}"
        f = rng.choice(REG_FIELDS)
        reset = "0" if width == 1 else "0" * width + "b"
        desc = (
            "Reserved."
            if f == "RESERVED"
            else f"{f.replace('_', ' ').title()} control. "
            + rng.choice(
                [
                    "0 = disabled, 1 = enabled.",
                    "Selects one of the preset values.",
                    "Read-only status flag.",
                    "Takes effect at the next switching cycle.",
                ]
            )
        )
        rows.append(
            [
                _c(bits, align="c"),
                _c(f),
                _c(rng.choice(["R/W", "R", "R/W", "RC"]), align="c"),
                _c(reset, align="c"),
                _c(desc),
            ]
        )
        bit -= width
    return b.table(
        f"{name} Register Field Descriptions",
        rows,
        1,
        style,
        [0.6, 1.3, 0.6, 0.6, 4.0],
        continued_caption=rng.random() < 0.5,
    )


BOM_PARTS = [
    ("C", "Capacitor, ceramic", ["10 µF", "22 µF", "100 nF", "1 µF", "4.7 µF"], "Murata"),
    ("R", "Resistor, thick film", ["100 kΩ", "10 kΩ", "49.9 kΩ", "1 kΩ", "0 Ω"], "Vishay"),
    ("L", "Inductor, shielded", ["4.7 µH", "6.8 µH", "10 µH"], "Coilcraft"),
    ("D", "Diode, Schottky", ["40 V 3 A"], "Diodes Inc."),
    ("J", "Terminal block", ["2 pos"], "On Shore"),
    ("TP", "Test point", ["Red", "Black"], "Keystone"),
]


def bom_table(b: Builder, rng: random.Random, vout: str, design: int) -> TableEl:
    """A long bill of materials; long enough that it often continues on the next page."""
    rows = [_hdr("DESIGNATOR", "QTY", "VALUE", "DESCRIPTION", "MANUFACTURER")]
    counts: dict[str, int] = {}
    for _ in range(rng.randint(18, 26)):
        prefix, desc, values, maker = rng.choice(BOM_PARTS)
        counts[prefix] = counts.get(prefix, 0) + 1
        rows.append(
            [
                _c(f"{prefix}{counts[prefix]}"),
                _c(str(rng.randint(1, 2)), align="c"),
                _c(rng.choice(values), align="c"),
                _c(desc),
                _c(maker),
            ]
        )
    return b.table(
        f"Bill of Materials for the {vout} Design",
        rows,
        1,
        rng.choice(["none", "rules", "grid"]),
        [1, 0.5, 1, 2.5, 1.5],
        continued_caption=rng.random() < 0.5,
    )


def simple_table(
    b: Builder,
    title: str,
    header: list[str],
    body: list[list[str]],
    style: str,
    weights: list[float] | None = None,
    width_frac: float = 1.0,
) -> TableEl:
    rows = [_hdr(*header)] + [[_c(x, align="l" if i == 0 else "c") for i, x in enumerate(r)] for r in body]
    return b.table(title, rows, 1, style, weights, width_frac=width_frac)


# ---------------------------------------------------------------- chapters


def history_and_comparison(b: Builder) -> None:
    """The revision history and device comparison chapters (left out of very short samples)."""
    b.heading(1, "Revision History")
    simple_table(
        b,
        "Revision History",
        ["REVISION", "DATE", "CHANGES"],
        [
            ["A", "November 2026", "Added the register map and the application circuit gallery"],
            ["*", "March 2026", "Initial release"],
        ],
        "rules",
        [1, 1.5, 5],
    )

    # device comparison and pins
    b.heading(1, "Device Comparison")
    simple_table(
        b,
        "Device Comparison",
        ["DEVICE", "IOUT", "VIN RANGE", "FSW", "GRADE"],
        [
            [PART, "3 A", "4.5 V to 36 V", "400 kHz to 2.2 MHz", "Industrial"],
            [PART + "-Q1", "3 A", "4.5 V to 36 V", "400 kHz to 2.2 MHz", "Automotive"],
            ["OL3520", "2 A", "4.5 V to 36 V", "400 kHz to 2.2 MHz", "Industrial"],
            ["OL3522", "5 A", "4.5 V to 28 V", "400 kHz to 1 MHz", "Industrial"],
        ],
        "grid",
    )
    b.deferred_para("cmp", ref_para("general", ["table"]))


THEORY_TOPICS = [
    "Control Loop",
    "Switching Cycle",
    "Pulse Skipping",
    "Current Sensing",
    "Gate Drive",
    "Dead Time",
    "Reference and Trim",
    "Start-Up Sequence",
    "Fault Handling",
    "Spread Spectrum",
    "Output Discharge",
    "Minimum On-Time Limits",
    "Dropout Operation",
    "Thermal Model",
]


def theory_of_operation(b: Builder, n_prose: int) -> None:
    """A text-heavy chapter whose length (`n_prose` subsections) brings the document to its page count."""
    b.heading(1, "Theory of Operation")
    b.deferred_para("theory", ref_para("general", ["section", "figure"]))
    for k in range(n_prose):
        if k % 4 == 0:
            b.heading(2, THEORY_TOPICS[(k // 4) % len(THEORY_TOPICS)])
        b.heading(3, ["Principle", "Design Impact", "Measurement", "Limits"][k % 4])
        rk = b.rng(f"theory{k}")
        b.para([filler(rk, "general", rk.randint(4, 7))])
        b.deferred_para(
            f"theory{k}a", ref_para("app", rk.sample(["table", "figure", "section", "equation", "page"], 2))
        )
        b.para([filler(rk, "app", rk.randint(3, 6))])
        if k % 3 == 2:
            for sent in rk.sample(FILLER["app"], 3):
                b.para([sent], kind="list_item")
        b.deferred_para(f"theory{k}b", ref_para("general", rk.sample(["table", "figure", "section"], 1)))


def build(
    seed: int, scale: float, n_prose: int = 0, art_cache: dict[str, art.Art] | None = None
) -> tuple[list[Any], Ctx, list[Heading]]:
    """The element flow of a datasheet: `scale` sets how many tables, figures and registers (1.0 ≈ 45 tables and
    50 figures); `n_prose` adds text-only subsections to the theory-of-operation chapter to reach a page count.

    Artwork is memoised in `art_cache` (keyed by content unit), so callers that rebuild at another size with the
    same seed pay for each drawing once.
    """
    b = Builder(seed, scale, {} if art_cache is None else art_cache)
    r = b.rng
    small = scale < 0.3

    # cover: two columns
    b.flow.append(Mode(columns=2))
    b.flow.append(Heading(1, "", TITLE, numbered=False))
    b.heading(1, "Features")
    for feat in [
        "4.5-V to 36-V input voltage range",
        "3-A continuous output current",
        "0.8-V ±1 % reference over temperature",
        "24-µA quiescent current",
        "400-kHz to 2.2-MHz frequency",
        "Power-good output and precision enable",
        "Thermal shutdown and hiccup current limit",
        "4-mm × 4-mm QFN package",
    ][: 8 if not small else 5]:
        b.para([feat], kind="list_item")
    b.heading(1, "Applications")
    for app in [
        "Industrial power supplies",
        "Factory automation",
        "Building automation",
        "Telecom infrastructure",
        "Automotive infotainment",
    ][: 5 if not small else 3]:
        b.para([app], kind="list_item")
    b.heading(1, "Description")
    b.para(
        [f"The {PART} is a synchronous step-down converter with integrated MOSFETs. " + filler(r("desc"), "general", 3)]
    )
    simple_table(
        b,
        "Device Information",
        ["PART NUMBER", "PACKAGE", "BODY SIZE"],
        [[PART, "VQFN (24)", "4.00 mm × 4.00 mm"], [PART + "-Q1", "VQFN (24)", "4.00 mm × 4.00 mm"]],
        "rules",
    )
    simplified = b.figure(
        b.art("simplified", lambda: art.buck_application(r("simplified"))), "Simplified Schematic", max_h=200
    )
    b.deferred_para("desc2", ref_para("general", ["figure", "section"], {"figure": simplified}, 1))

    # table of contents and revision history
    b.flow.append(Mode(columns=1))
    b.flow.append(Heading(1, "", "Table of Contents", numbered=False))
    toc = TocEl([])
    b.flow.append(toc)
    b.flow.append(PageBreak())
    if not small:
        history_and_comparison(b)
    b.heading(1, "Pin Configuration and Functions")
    n_pins = 24 if small else 40
    pin_fig = b.figure(
        b.art("pinout", lambda: art.pinout((PIN_NAMES * 3)[:n_pins])), "RGE Package, 24-Pin VQFN (Top View)", max_h=250
    )
    pin_table(b, n_pins)

    # specifications
    b.heading(1, "Specifications")
    b.heading(2, "Absolute Maximum Ratings")
    b.table(
        "Absolute Maximum Ratings",
        [
            [_c("", cs=2), _c("MIN", align="c"), _c("MAX", align="c"), _c("UNIT", align="c")],
            [
                _c("Input voltage", rs=3),
                _c("VIN to PGND"),
                _c("–0.3", align="c"),
                _c("40", align="c"),
                _c("V", align="c"),
            ],
            [_c("EN to AGND"), _c("–0.3", align="c"), _c("7", align="c"), _c("V", align="c")],
            [_c("FB, SS/TR, RT/SYNC to AGND"), _c("–0.3", align="c"), _c("5.5", align="c"), _c("V", align="c")],
            [
                _c("Output voltage", rs=2),
                _c("SW to PGND"),
                _c("–1", align="c"),
                _c("40", align="c"),
                _c("V", align="c"),
            ],
            [_c("BOOT to SW"), _c("–0.3", align="c"), _c("6", align="c"), _c("V", align="c")],
            [
                _c("Operating junction temperature, TJ", cs=2),
                _c("–40", align="c"),
                _c("150", align="c"),
                _c("°C", align="c"),
            ],
            [_c("Storage temperature, Tstg", cs=2), _c("–65", align="c"), _c("150", align="c"), _c("°C", align="c")],
        ],
        1,
        "grid",
        [1.6, 2.6, 0.7, 0.7, 0.7],
    )
    b.deferred_para(
        "absmax",
        ref_para("general", ["section", "table"]),
    )
    if not small:
        b.heading(2, "ESD Ratings")
        simple_table(
            b,
            "ESD Ratings",
            ["", "", "VALUE", "UNIT"],
            [
                ["V(ESD) electrostatic discharge", "Human-body model (HBM)", "±2000", "V"],
                ["", "Charged-device model (CDM)", "±500", "V"],
            ],
            "grid",
            [2, 3, 1, 1],
        )
    b.heading(2, "Recommended Operating Conditions")
    recop = simple_table(
        b,
        "Recommended Operating Conditions",
        ["", "MIN", "NOM", "MAX", "UNIT"],
        [
            ["Input voltage, VIN", "4.5", "", "36", "V"],
            ["Output voltage, VOUT", "0.8", "", "28", "V"],
            ["Output current, IOUT", "0", "", "3", "A"],
            ["EN voltage", "0", "", "5.5", "V"],
            ["Operating junction temperature, TJ", "–40", "", "125", "°C"],
        ],
        "grid",
        [3, 1, 1, 1, 1],
    )
    if not small:
        b.heading(2, "Thermal Information")
        simple_table(
            b,
            "Thermal Information",
            ["THERMAL METRIC", "RGE (VQFN)", "UNIT"],
            [
                ["RθJA junction-to-ambient", "38.2", "°C/W"],
                ["RθJC(top) junction-to-case (top)", "29.1", "°C/W"],
                ["RθJB junction-to-board", "12.4", "°C/W"],
                ["ψJT junction-to-top", "0.6", "°C/W"],
                ["ψJB junction-to-board", "12.3", "°C/W"],
            ],
            "rules",
            [4, 1.2, 1],
        )
    b.heading(2, "Electrical Characteristics")
    b.para(["TJ = –40 °C to 125 °C, VIN = 4.5 V to 36 V (unless otherwise noted)."])
    ec_table(b, len(EC_GROUPS))
    if not small:
        b.heading(2, "Timing Requirements")
        simple_table(
            b,
            "Timing Requirements",
            ["PARAMETER", "MIN", "NOM", "MAX", "UNIT"],
            [
                ["tSU SDA setup time", "100", "", "", "ns"],
                ["tH SDA hold time", "0", "", "", "ns"],
                ["tW SCL pulse width", "600", "", "", "ns"],
                ["tD PG delay", "", "128", "", "µs"],
            ],
            "rules",
            [3, 1, 1, 1, 1],
        )
        b.figure(b.art("timing", lambda: art.timing_diagram(r("timing"), ["SCL", "SDA", "EN", "PG"])), "Timing Diagram")
        b.heading(2, "Switching Characteristics")
        simple_table(
            b,
            "Switching Characteristics",
            ["PARAMETER", "TEST CONDITIONS", "MIN", "TYP", "MAX", "UNIT"],
            [
                ["tON(min)", "VIN = 12 V", "", "90", "130", "ns"],
                ["tOFF(min)", "", "", "130", "170", "ns"],
                ["tSS", "CSS = 10 nF", "", "4.5", "", "ms"],
            ],
            "none",
            [1.5, 2, 0.6, 0.6, 0.6, 0.6],
        )
    b.heading(2, "Typical Characteristics")
    b.para(["VIN = 12 V, VOUT = 5 V, fSW = 500 kHz, TA = 25 °C (unless otherwise noted)."])
    n_pairs = b.count(6)
    plot_figs: list[FigureEl] = []
    for k in range(n_pairs):
        pair = [
            b.new_figure(b.art(f"plot{2 * k + j}", lambda k=k, j=j: art.plot(r(f"plot{2 * k + j}"), 2 * k + j)))
            for j in range(2)
        ]
        plot_figs += pair
        b.flow.append(FigureRow(pair))
    b.deferred_para("tc", ref_para("general", ["figure"], {"figure": plot_figs[0]}, 1))

    # detailed description
    b.heading(1, "Detailed Description")
    b.heading(2, "Overview")
    b.deferred_para("ov", ref_para("general", ["section", "table", "figure"]))
    b.heading(2, "Functional Block Diagram")
    b.figure(b.art("block", lambda: art.block_diagram(r("block"))), max_h=220)
    b.heading(2, "Feature Description")
    feature_titles = [
        "Fixed-Frequency Peak Current-Mode Control",
        "Enable and Adjustable UVLO",
        "Soft Start and Tracking",
        "Power Good",
        "Bootstrap Voltage",
        "Error Amplifier and Loop Compensation",
        "Frequency Selection and Synchronization",
        "Overcurrent Protection",
        "Input ESD Protection",
        "Switch-Node Ringing",
        "Reverse-Battery Protection",
        "Current Sensing",
        "External Clock",
        "Output Discharge",
    ]
    feature_art = [
        None,
        art.enable_divider,
        art.soft_start,
        art.pgood_pullup,
        None,
        art.compensation,
        art.level_shifter,
        None,
        art.esd_structure,
        art.snubber,
        art.reverse_protection,
        art.opamp_stage,
        art.crystal_osc,
        art.ldo_postregulator,
    ]
    formulas = {
        1: "VSTART = VEN(rise) × (1 + RENT / RENB)",
        2: "tSS = CSS × VREF / ISS",
        5: "fC = gm × RC / (2π × COUT × RSENSE)",
        6: "RT (kΩ) = 48000 / fSW (kHz)^1.08",
        7: "IPEAK = IOUT + ΔIL / 2",
    }
    n_feat = b.count(12, 3)
    for i in range(n_feat):
        k = i % len(feature_titles)
        b.heading(3, feature_titles[k] + ("" if i < len(feature_titles) else " (Advanced)"))
        rk = r(f"feat{i}")
        b.para([filler(rk, "general", rk.randint(4, 6))])
        if not small:
            b.para([filler(rk, "app", rk.randint(3, 5))])
        fig = None
        if feature_art[k] is not None:
            fig = b.figure(b.art(f"feat{i}", lambda k=k, i=i: feature_art[k](r(f"featart{i}"))), max_h=210)
            if rk.random() < 0.3:
                b.para(["Typical values for a 12-V input are used throughout this example. " + filler(rk, "app", 1)])
        eq = b.formula(formulas[k]) if k in formulas else None
        kinds = rk.sample(["table", "figure", "section", "equation", "page"], 2 if i % 2 else 3)
        local = {"figure": fig, "equation": eq, "page": pin_fig if rk.random() < 0.5 else None}
        b.deferred_para(f"feat{i}", ref_para("general", kinds, local, 1))
    b.heading(2, "Device Functional Modes")
    b.para(["The following table lists the operating modes and how the device enters each of them."])
    modes = simple_table(
        b,
        "Device Functional Modes",
        ["MODE", "EN", "VIN", "SWITCHING"],
        [
            ["Shutdown", "Low", "Any", "Off"],
            ["Standby", "High", "< UVLO", "Off"],
            ["Active", "High", "> UVLO", "On"],
            ["Thermal shutdown", "High", "Any", "Off"],
        ],
        "none",
        width_frac=0.8,
    )
    b.flow[-2].implicit = modes
    b.deferred_para("modes", ref_para("general", ["section"]))

    theory_of_operation(b, n_prose)

    # register map
    b.heading(1, "Register Map")
    b.heading(2, "Register Summary")
    n_regs = b.count(20, 2)
    reg_names = [
        f"{x}_{k}" if k else x
        for k in range(3)
        for x in ["CTRL1", "CTRL2", "STATUS", "FAULT", "VOUT", "FREQ", "ILIM", "PGOOD", "SS", "MASK", "ID"]
    ][:n_regs]
    summary = simple_table(
        b,
        "Register Summary",
        ["ADDRESS", "NAME", "TYPE", "RESET", "SECTION"],
        [[f"0x{a:02X}", n, "R/W", "0x00", f"{b.numbers[0]}.2.{a + 1}"] for a, n in enumerate(reg_names)],
        "grid",
    )
    b.deferred_para("regsum", ref_para("register", ["table", "section"], {"table": summary}, 2))
    b.heading(2, "Register Descriptions")
    for a, n in enumerate(reg_names):
        b.heading(3, f"{n} Register (Address = 0x{a:02X})")
        rk = r(f"reg{a}")
        b.para([f"The {n} register is at address 0x{a:02X}. " + filler(rk, "register", rk.randint(2, 4))])
        if rk.random() < 0.25:
            p = b.para([f"The following table describes the bit fields of the {n} register."])
        else:
            p = None
        t = register_table(b, rk, n, rk.choice(["grid", "rules", "none", "none"]))
        if p is not None:
            p.implicit = t
        b.deferred_para(f"reg{a}", ref_para("register", rk.sample(["table", "section", "page"], 1)))

    # application and implementation
    b.heading(1, "Application and Implementation")
    b.heading(2, "Application Information")
    b.deferred_para("appinfo", ref_para("app", ["figure", "section"]))
    n_designs = b.count(3)
    design_eqs = [
        "RFBT = RFBB × (VOUT / VREF – 1)",
        "L = (VIN – VOUT) × VOUT / (VIN × ΔIL × fSW)",
        "COUT > ΔIOUT / (fSW × ΔVOUT × K)",
        "ICIN(rms) = IOUT × √(D × (1 – D))",
        "PLOSS = IOUT² × RDS(on) + VIN × IOUT × tR × fSW",
        "TJ = TA + RθJA × PLOSS",
    ]
    for d in range(n_designs):
        vout = ["5 V", "3.3 V", "12 V", "1.8 V"][d % 4]
        b.heading(2, f"Typical Application: {vout} Output" + (f" (Design {d + 1})" if d >= 4 else ""))
        fig = b.figure(
            b.art(f"app{d}", lambda d=d: art.buck_application(r(f"app{d}"))),
            f"{vout} Output Application Circuit",
            max_h=230,
        )
        b.heading(3, "Design Requirements")
        req = simple_table(
            b,
            f"Design Parameters for the {vout} Design",
            ["PARAMETER", "VALUE"],
            [
                ["Input voltage", "12 V (6 V to 36 V)"],
                ["Output voltage", vout],
                ["Output current", "3 A"],
                ["Switching frequency", "500 kHz"],
                ["Output ripple", "< 1 % of VOUT"],
            ],
            "rules",
            [2, 2],
            width_frac=0.7,
        )
        b.deferred_para(f"req{d}", ref_para("app", ["table"], {"table": req}, 1))
        b.heading(3, "Detailed Design Procedure")
        rk = r(f"design{d}")
        b.para([filler(rk, "app", rk.randint(4, 6))])
        for j in range(2 if small else 3):
            eq = b.formula(design_eqs[(d * 3 + j) % len(design_eqs)])
            b.deferred_para(f"design{d}.{j}", ref_para("app", ["equation"], {"equation": eq}, 1))
        comp = simple_table(
            b,
            f"Recommended Components for the {vout} Design",
            ["REF", "VALUE", "PART NUMBER", "MANUFACTURER"],
            [
                ["L1", rk.choice(["4.7 µH", "6.8 µH", "10 µH"]), "XAL5050-472", "Coilcraft"],
                ["COUT", "2 × 22 µF", "GRM32ER71A226K", "Murata"],
                ["CIN", "2 × 10 µF", "GRM32ER71H106K", "Murata"],
                ["RFBT", "100 kΩ", "CRCW0402100K", "Vishay"],
            ],
            rk.choice(["none", "rules"]),
        )
        bom_table(b, rk, vout, d)
        b.deferred_para(f"comp{d}", ref_para("app", ["table", "figure"], {"table": comp, "figure": fig}, 1))
        b.heading(3, "Application Curves")
        curves = [0, 8 + d % 6]  # efficiency, then one of the time-domain plots
        pair = [
            b.new_figure(b.art(f"appcurve{d}{j}", lambda d=d, j=j, c=curves[j]: art.plot(r(f"appcurve{d}{j}"), c)))
            for j in range(2)
        ]
        b.flow.append(FigureRow(pair))
        b.para(
            [
                "Efficiency stays above 90 % from 0.5 A to full load at the nominal input voltage and drops "
                "by about two points at the highest input."
            ],
            implicit=pair[0],
        )
    b.heading(2, "Application Circuit Gallery")
    b.deferred_para("gallery", ref_para("app", ["section", "figure"]))
    n_gallery = b.count(14, 2)
    for g in range(n_gallery):
        fn = art.SCHEMATICS[g % len(art.SCHEMATICS)]
        gal_art = b.art(f"gal{g}", lambda fn=fn, g=g: fn(r(f"gal{g}")))
        fig = b.figure(gal_art, f"{gal_art.title} (Example {g + 1})", max_h=200)
        if g % 3 == 0:
            fig.caption_extra = [" (", "components as in ", Ref("table", [b.ctx.tables[-1]], "Table"), ")"]
        b.para([filler(r(f"galp{g}"), "app", r(f"galp{g}").randint(3, 5))])
        b.deferred_para(
            f"gal{g}",
            ref_para("app", r(f"galk{g}").sample(["table", "figure", "section", "equation"], 2), {"figure": fig}, 1),
        )

    # power supply, layout
    b.heading(1, "Power Supply Recommendations")
    b.deferred_para("psr", ref_para("general", ["table", "section"], {"table": recop}, 2))
    b.heading(1, "Layout")
    b.heading(2, "Layout Guidelines")
    for s in FILLER["layout"][:5]:
        b.para([s], kind="list_item")
    b.deferred_para("layout", ref_para("layout", ["figure", "section"]), kind="list_item")
    b.heading(2, "Layout Example")
    layout_fig = b.figure(b.art("layout", lambda: art.layout_example(r("layout"))), max_h=230)
    b.deferred_para("layout2", ref_para("layout", ["page"], {"page": layout_fig}, 1))
    b.heading(2, "Thermal Considerations")
    tj = b.formula("TJ = TA + PD × RθJA")
    b.deferred_para("thermal", ref_para("layout", ["equation", "table"], {"equation": tj}, 1))

    # design notes: two columns
    b.flow.append(Mode(columns=2))
    b.heading(1, "Design Notes")
    n_notes = b.count(9, 1)
    note_titles = [
        "Choosing the Inductor",
        "Output Capacitor Trade-Offs",
        "Input Filter Stability",
        "Loop Measurement",
        "Light-Load Behaviour",
        "Sequencing Several Rails",
        "EMI Considerations",
        "Thermal Derating",
        "Startup into Pre-Biased Outputs",
        "Using the Power-Good Signal",
    ]
    for n in range(n_notes):
        b.heading(2, note_titles[n % len(note_titles)])
        rk = r(f"note{n}")
        b.deferred_para(
            f"note{n}a", ref_para("app", rk.sample(["table", "figure", "section", "equation", "page"], 2), None, 2)
        )
        b.para([filler(rk, "app", rk.randint(4, 6))])
        b.para([filler(rk, "general", rk.randint(3, 5))])
        if n % 3 == 1:
            for s in rk.sample(FILLER["layout"], 2):
                b.para([s], kind="list_item")
        if n % 4 == 2:
            b.figure(b.art(f"noteplot{n}", lambda n=n: art.plot(r(f"noteplot{n}"), n)), max_h=150)
        b.deferred_para(f"note{n}b", ref_para("general", rk.sample(["table", "figure", "section"], 1), None, 1))

    # reprinted (scanned) application note: image-only pages
    b.flow.append(Mode(columns=1, ocr=True))
    b.heading(1, "Reprinted Application Note")
    n_scan = b.count(4, 1)
    for s in range(n_scan):
        b.heading(2, ["Background", "Measurement Setup", "Results", "Discussion", "Conclusions"][s % 5])
        rk = r(f"scan{s}")
        b.deferred_para(f"scan{s}a", ref_para("app", ["figure", "table"], None, 2))
        b.para([filler(rk, "app", 4)])
        b.deferred_para(f"scan{s}b", ref_para("general", ["section"], None, 3))
        if s == 0:
            simple_table(
                b,
                "Bench Results of the Reprinted Note",
                ["VIN", "VOUT", "IOUT", "EFFICIENCY"],
                [["12 V", "5 V", "1 A", "93.1 %"], ["12 V", "5 V", "3 A", "90.4 %"], ["24 V", "5 V", "3 A", "88.2 %"]],
                "grid",
                width_frac=0.7,
            )
        b.para([filler(rk, "general", 3)])

    # support, mechanical
    b.flow.append(Mode(columns=1))
    b.heading(1, "Device and Documentation Support")
    b.heading(2, "Documentation Support")
    b.deferred_para("docs", ref_para("general", ["section", "table"], None, 1))
    b.heading(2, "Glossary")
    for term in [
        "UVLO: undervoltage lockout",
        "PWM: pulse-width modulation",
        "ESR: equivalent series resistance",
        "CCM: continuous conduction mode",
    ]:
        b.para([term], kind="list_item")
    b.heading(1, "Mechanical, Packaging, and Orderable Information")
    order = simple_table(
        b,
        "Orderable Part Numbers",
        ["ORDERABLE PART", "PACKAGE", "PINS", "QTY", "TEMP RANGE", "MARKING"],
        [
            [f"{PART}RGER", "VQFN", "24", "3000", "–40 °C to 125 °C", PART],
            [f"{PART}RGET", "VQFN", "24", "250", "–40 °C to 125 °C", PART],
            [f"{PART}QRGERQ1", "VQFN", "24", "3000", "–40 °C to 125 °C", "3521Q"],
        ],
        "grid",
    )
    b.para(["The following table gives the reel and tape dimensions for each orderable device."])
    reel = simple_table(
        b,
        "Tape and Reel Information",
        ["DEVICE", "REEL DIAMETER", "REEL WIDTH", "A0", "B0", "PIN 1"],
        [
            [f"{PART}RGER", "330 mm", "12.4 mm", "4.25", "4.25", "Q2"],
            [f"{PART}RGET", "180 mm", "12.4 mm", "4.25", "4.25", "Q2"],
        ],
        "rules",
    )
    b.flow[-2].implicit = reel
    b.figure(b.art("pkg", lambda: art.package_outline(r("pkg"), n_pins)), "Package Outline", max_h=200)
    b.deferred_para("pkg", ref_para("general", ["table", "page"], {"table": order, "page": pin_fig}, 1))

    flow = b.finish()
    toc.headings = [h for h in b.ctx.sections if h.level <= 2]
    return flow, b.ctx, b.ctx.sections
