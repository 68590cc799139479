"""Synthetic schematic data: random plausible circuits drawn with exact ground truth.

This module holds only the shared vocabulary (component types, pin names and roles) so that the
detector and the readers can import it without pulling in the drawing engine. The engine lives in
`circuits` (topologies), `symbols` (symbol variants real drawings use), `render` (drawing + ground
truth) and `scan` (scan simulator).
"""

from __future__ import annotations

# Component symbol classes the detector knows, in channel order.
COMPONENT_TYPES: tuple[str, ...] = (
    "resistor",
    "capacitor",
    "capacitor_polarized",
    "inductor",
    "diode",
    "led",
    "zener",
    "npn",
    "pnp",
    "nmos",
    "pmos",
    "opamp",
    "vsource",
    "vsource_ac",
    "isource",
    "ground",
    "supply",
    "switch",
    "battery",
    "crystal",
    "potentiometer",
    "transformer",
)
# Detector box classes: the components, then text labels and junction dots.
DETECT_CLASSES: tuple[str, ...] = COMPONENT_TYPES + ("text", "junction")

# Pin roles the detector localises; a role says what a terminal does, not where it sits.
PIN_ROLES: tuple[str, ...] = (
    "generic",  # terminals of symmetric parts (R, C, L, switch, crystal, transformer, rails)
    "plus",  # + of polarised capacitors, sources, batteries; non-inverting op-amp input
    "minus",
    "anode",
    "cathode",
    "control",  # base / gate
    "high",  # collector / drain
    "low",  # emitter / source
    "bulk",
    "out",
    "wiper",
)

# Pins per type as (name, role); `optional` pins may be absent from a drawing (MOS bulk).
TYPE_PINS: dict[str, tuple[tuple[str, str], ...]] = {
    "resistor": (("1", "generic"), ("2", "generic")),
    "capacitor": (("1", "generic"), ("2", "generic")),
    "capacitor_polarized": (("+", "plus"), ("-", "minus")),
    "inductor": (("1", "generic"), ("2", "generic")),
    "diode": (("A", "anode"), ("K", "cathode")),
    "led": (("A", "anode"), ("K", "cathode")),
    "zener": (("A", "anode"), ("K", "cathode")),
    "npn": (("B", "control"), ("C", "high"), ("E", "low")),
    "pnp": (("B", "control"), ("C", "high"), ("E", "low")),
    "nmos": (("G", "control"), ("D", "high"), ("S", "low"), ("B", "bulk")),
    "pmos": (("G", "control"), ("D", "high"), ("S", "low"), ("B", "bulk")),
    "opamp": (("+", "plus"), ("-", "minus"), ("OUT", "out")),
    "vsource": (("+", "plus"), ("-", "minus")),
    "vsource_ac": (("1", "generic"), ("2", "generic")),
    "isource": (("+", "plus"), ("-", "minus")),
    "ground": (("1", "generic"),),
    "supply": (("1", "generic"),),
    "switch": (("1", "generic"), ("2", "generic")),
    "battery": (("+", "plus"), ("-", "minus")),
    "crystal": (("1", "generic"), ("2", "generic")),
    "potentiometer": (("1", "generic"), ("2", "generic"), ("W", "wiper")),
    "transformer": (("P1", "generic"), ("P2", "generic"), ("S1", "generic"), ("S2", "generic")),
}
OPTIONAL_PINS: dict[str, frozenset[str]] = {"nmos": frozenset({"B"}), "pmos": frozenset({"B"})}

# Reference designator prefixes per type (the first is what the generator writes).
REF_PREFIXES: dict[str, tuple[str, ...]] = {
    "resistor": ("R",),
    "capacitor": ("C",),
    "capacitor_polarized": ("C",),
    "inductor": ("L",),
    "diode": ("D",),
    "led": ("D", "LED"),
    "zener": ("D", "Z", "ZD"),
    "npn": ("Q", "T"),
    "pnp": ("Q", "T"),
    "nmos": ("M", "Q"),
    "pmos": ("M", "Q"),
    "opamp": ("U", "IC", "A"),
    "vsource": ("V",),
    "vsource_ac": ("V",),
    "isource": ("I",),
    "ground": ("#GND",),
    "supply": ("#PWR",),
    "switch": ("S", "SW"),
    "battery": ("B", "BT"),
    "crystal": ("Y", "X"),
    "potentiometer": ("RV", "P", "VR"),
    "transformer": ("T", "TR"),
}

# Symbols that stand for a net rather than a part: they appear in drawings, not in SPICE.
NET_SYMBOLS: frozenset[str] = frozenset({"ground", "supply"})
